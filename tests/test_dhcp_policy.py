"""The socket-free parts of the proxyDHCP: decoding, the boot-file choice and
where a reply goes."""

import random

import pytest

from dhcp_clients import dhcp, ipxe_options, mac_of, pxe_options
from heckle_appliance.dhcp import packets, policy, replies
from heckle_appliance.dhcp.server import OncePer

SERVER = "http://10.0.0.1:8080"
MAC = mac_of(1)


def options_of(options, **fields):
    return packets.parse(dhcp(MAC, options, **fields)[1]).options


def choice(options, efi_binary="ipxe.efi"):
    found = policy.choose(options_of(options), MAC, SERVER, efi_binary)
    return found and (found.boot_file, found.client)


def test_parse_gives_every_option_as_raw_bytes():
    request = packets.parse(dhcp(MAC, [(54, b"\x0a\x00\x00\x01"), *ipxe_options(7)],
                                 xid=0x1234, ciaddr="10.0.0.9", giaddr="10.0.0.254")[1])
    assert (request.xid, request.mac, request.ciaddr, request.giaddr) == (
        0x1234, MAC, "10.0.0.9", "10.0.0.254")
    assert request.message_type == packets.DISCOVER
    assert request.options[54] == b"\x0a\x00\x00\x01"
    assert request.options[93] == b"\x00\x07"
    assert request.options[77] == b"iPXE"
    assert request.options[60].startswith(b"PXEClient:Arch:00007")


def test_an_option_given_twice_is_one_long_option():
    assert options_of([(60, b"PXECl"), (60, b"ient")])[60] == b"PXEClient"


def test_random_datagrams_are_malformed_or_answerable_without_error():
    rng = random.Random(4011)
    _, good = dhcp(MAC, ipxe_options())
    def noise(length):
        return bytes(rng.getrandbits(8) for _ in range(length))

    for _ in range(3000):
        kind = rng.randrange(3)
        if kind == 0:
            datagram = noise(rng.randrange(600))
        elif kind == 1:  # a valid header and cookie, random options
            datagram = good[:240] + noise(rng.randrange(600))
        else:  # a PXE request whose options that we read hold random values
            read = [(code, noise(rng.randrange(20))) for code in (43, 60, 77, 93, 97, 175)]
            datagram = dhcp(MAC, [(60, b"PXEClient"), *rng.sample(read, rng.randrange(7))])[1]
        try:
            request = packets.parse(datagram)
        except packets.Malformed:
            continue
        found = policy.choose(request.options, request.mac, SERVER, "ipxe.efi")
        replies.destination(request, ("0.0.0.0", 68))
        if found is not None:
            replies.proxy_reply(request, packets.OFFER, "10.0.0.1",
                                policy.client_class(request.options) or "PXEClient",
                                found.boot_file)


@pytest.mark.parametrize("arch, expected", [
    (0, ("undionly.kpxe", "BIOS PXE")),
    (6, ("ipxe.efi", "UEFI PXE")),
    (7, ("ipxe.efi", "UEFI PXE")),
    (9, ("ipxe.efi", "UEFI PXE")),
    (11, None),
    (16, None),
])
def test_firmware_pxe_by_architecture(arch, expected):
    assert choice(pxe_options(arch)) == expected


def test_the_efi_binary_is_an_option():
    assert choice(pxe_options(7), "snponly.efi") == ("snponly.efi", "UEFI PXE")


def test_uefi_http_boot_gets_a_url():
    assert choice(pxe_options(16, vendor="HTTPClient")) == (
        f"{SERVER}/static/ipxe.efi", "UEFI HTTP boot")
    assert choice(pxe_options(7, vendor="HTTPClient")) is None


@pytest.mark.parametrize("user_class", [b"iPXE", b"\x04iPXE", b"\x03foo\x04iPXE"])
def test_ipxe_is_recognised_in_both_forms_of_option_77(user_class):
    options = ipxe_options(arch=7, user_class=user_class, features=False)
    assert choice(options) == (f"{SERVER}/bootconfig?mac={MAC}", "iPXE")


def test_other_user_classes_are_not_ipxe():
    assert not policy.is_ipxe({77: b"\x04gPXE"})
    assert not policy.is_ipxe({77: b"\x09iPXE"})  # length past the end: not RFC 3004
    assert policy.is_ipxe({175: b""})


def test_architecture_falls_back_to_the_vendor_class():
    assert policy.architecture({60: b"PXEClient:Arch:00007:UNDI:003016"}) == 7
    assert policy.architecture({60: b"PXEClient"}) is None
    assert policy.architecture({93: b"\x00\x09\x00\x07", 60: b"PXEClient:Arch:00000"}) == 9


def test_only_pxe_and_http_boot_classes_are_ours():
    assert policy.client_class({60: b"PXEClient:Arch:00000"}) == "PXEClient"
    assert policy.client_class({60: b"HTTPClient"}) == "HTTPClient"
    assert policy.client_class({60: b"MSFT 5.0"}) is None
    assert policy.client_class({}) is None


@pytest.mark.parametrize("fields, source, expected", [
    ({}, ("0.0.0.0", 68), ("255.255.255.255", 68)),
    ({"giaddr": "10.1.0.1", "hops": 1}, ("10.1.0.1", 67), ("10.1.0.1", 67)),
    ({"ciaddr": "10.0.0.9"}, ("10.0.0.9", 68), ("10.0.0.9", 68)),
    ({"ciaddr": "10.0.0.9"}, ("0.0.0.0", 68), ("10.0.0.9", 68)),
])
def test_reply_destination(fields, source, expected):
    request = packets.parse(dhcp(MAC, pxe_options(0), **fields)[1])
    assert replies.destination(request, source) == expected


def test_a_reply_is_padded_to_the_bootp_minimum_and_never_offers_an_address():
    request = packets.parse(dhcp(MAC, pxe_options(0))[1])
    data = replies.proxy_reply(request, packets.OFFER, "10.0.0.1", "PXEClient", "undionly.kpxe")
    assert len(data) >= packets.REPLY_LENGTH
    assert data[16:20] == bytes(4)  # yiaddr
    assert data[20:24] == bytes([10, 0, 0, 1])  # siaddr


def test_once_per_says_yes_once_per_key_and_interval_with_bounded_memory():
    now = [0.0]
    once = OncePer(interval=60.0, limit=3, clock=lambda: now[0])
    assert [once("a"), once("a"), once("b"), once("a")] == [True, False, True, False]
    now[0] = 59.9
    assert not once("a")
    now[0] = 60.0  # a minute after "a" and "b" were said
    assert once("a") and once("b")
    for key in "cdefg":
        assert once(key)
    assert len(once.last) == 3  # the oldest forgotten first
    assert once("a")  # forgotten, so said again

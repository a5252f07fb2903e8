"""proxyDHCP over real sockets: flunkymaster in one network namespace, PXE
and iPXE clients (crafted packets) in another, one veth between them."""

import os

import pytest

from dhcp_clients import GUID, dhcp, ipxe_options, mac_of, pxe_options
from dhcp_lab import BROADCAST, HTTP_PORT, Lab
from netns import needs_root

pytestmark = needs_root

PXE_VENDOR_OPTIONS = b"\x06\x01\x08\xff"  # discovery control: use the offered boot file
LEASE_OPTIONS = ("subnet_mask", "router", "lease_time", "renewal_time", "rebinding_time")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp_path_factory.mktemp("dhcp")).running() as running:
        yield running


@pytest.fixture(scope="module")
def client(lab):
    return lab.client(68)


def discover(lab, client, mac, options, **fields):
    xid, datagram = dhcp(mac, options, **fields)
    client.broadcast(datagram)
    reply, others = client.reply_to(xid)
    assert others == []
    return reply


def assert_proxy_offer(lab, reply, mac, boot_file, vendor=b"PXEClient", message_type=2):
    """What every proxy reply holds: us as server, the boot file, no address."""
    packet, options = reply.packet, reply.options
    assert packet.op == 2
    assert packet.chaddr[:6] == bytes.fromhex(mac.replace(":", ""))
    assert packet.yiaddr == "0.0.0.0"
    assert packet.siaddr == lab.server_ip
    assert options["message-type"] == message_type
    assert options["server_id"] == lab.server_ip
    assert options["vendor_class_id"] == vendor
    assert options["boot-file-name"] == boot_file.encode()
    assert packet.file.rstrip(b"\0") == boot_file.encode()
    assert not [name for name in LEASE_OPTIONS if name in options]


def assert_broadcast_offer(lab, reply):
    assert reply.source == (lab.server_ip, 67)
    assert (reply.destination, reply.port) == (BROADCAST, 68)
    assert reply.packet.giaddr == "0.0.0.0"
    assert reply.packet.flags == 0x8000


@pytest.mark.parametrize("arch", [0, 6, 7, 9])
def test_firmware_pxe_gets_the_ipxe_binary_for_its_architecture(lab, client, arch):
    mac = mac_of(0x100 + arch)
    reply = discover(lab, client, mac, pxe_options(arch))
    assert_proxy_offer(lab, reply, mac, "undionly.kpxe" if arch == 0 else "ipxe.efi")
    assert_broadcast_offer(lab, reply)
    assert reply.options["vendor_specific"] == PXE_VENDOR_OPTIONS
    assert reply.options["pxe_client_machine_identifier"] == GUID


@pytest.mark.parametrize("form", ["raw option 77", "RFC 3004 option 77", "option 175 only"])
@pytest.mark.parametrize("arch", [0, 7])
def test_ipxe_gets_its_bootconfig_url_never_the_binary_again(lab, client, form, arch):
    user_class, features = {"raw option 77": (b"iPXE", True),
                            "RFC 3004 option 77": (b"\x04iPXE", False),
                            "option 175 only": (None, True)}[form]
    mac = mac_of(0x200 + arch)
    reply = discover(lab, client, mac, ipxe_options(arch, user_class, features))
    url = f"http://{lab.server_ip}:{HTTP_PORT}/bootconfig?mac={mac}"
    assert_proxy_offer(lab, reply, mac, url)
    assert_broadcast_offer(lab, reply)


def test_an_unallocated_ipxe_is_sent_to_the_exit_bootconfig(lab, client):
    mac = mac_of(0x300)
    reply = discover(lab, client, mac, ipxe_options())
    status, script = lab.fetch(reply.options["boot-file-name"].decode())
    assert status == 200
    assert script.startswith("#!ipxe") and "exit" in script


def test_a_discover_from_a_known_node_records_its_architecture(lab, client):
    mac = mac_of(0x301)
    lab.allocate(mac)
    reply = discover(lab, client, mac, ipxe_options(arch=7))
    status, script = lab.fetch(reply.options["boot-file-name"].decode())
    assert (status, script) == (200, f"#!ipxe\necho dhcp-test for {mac}\nexit\n")
    assert lab.admin("GET", "/dump")[mac]["Arch"] == 7
    assert f"{mac} : proxyDHCP OFFER for iPXE (architecture 7)" in lab.log()


def test_replies_are_counted_by_client_type_in_metrics(lab, client):
    def replies(kind):
        text = lab.admin("GET", "/metrics", parse=bytes.decode)
        prefix = f'heckle_dhcp_replies_total{{client="{kind}",message="OFFER"}} '
        return sum(int(line[len(prefix):]) for line in text.splitlines()
                   if line.startswith(prefix))

    before = replies("iPXE")
    discover(lab, client, mac_of(0x302), ipxe_options(arch=0))
    assert replies("iPXE") == before + 1


def test_uefi_http_boot_gets_an_http_url_and_the_httpclient_class(lab, client):
    mac = mac_of(0x400)
    reply = discover(lab, client, mac, pxe_options(16, vendor="HTTPClient"))
    url = f"http://{lab.server_ip}:{HTTP_PORT}/static/ipxe.efi"
    assert_proxy_offer(lab, reply, mac, url, vendor=b"HTTPClient")
    assert_broadcast_offer(lab, reply)
    assert "vendor_specific" not in reply.options  # PXE options mean nothing to HTTP boot


def test_without_option_97_none_is_echoed(lab, client):
    mac = mac_of(0x500)
    reply = discover(lab, client, mac, pxe_options(0, guid=False))
    assert_proxy_offer(lab, reply, mac, "undionly.kpxe")
    assert "pxe_client_machine_identifier" not in reply.options


def test_an_invalid_option_97_is_not_echoed(lab, client):
    mac = mac_of(0x501)
    reply = discover(lab, client, mac, [*pxe_options(0, guid=False), (97, b"\x01" + bytes(16))])
    assert "pxe_client_machine_identifier" not in reply.options


def test_a_relayed_discover_is_answered_through_the_relay(lab):
    relay = lab.client(67)
    mac = mac_of(0x600)
    xid, datagram = dhcp(mac, pxe_options(0), giaddr=lab.client_ip, hops=1, flags=0x8000)
    relay.send(datagram, (lab.server_ip, 67))
    reply, others = relay.reply_to(xid)
    assert others == []
    assert_proxy_offer(lab, reply, mac, "undionly.kpxe")
    assert reply.source == (lab.server_ip, 67)
    assert (reply.destination, reply.port) == (lab.client_ip, 67)
    assert reply.packet.giaddr == lab.client_ip
    assert reply.packet.flags == 0x8000


@pytest.mark.parametrize("number, options, boot_file", [
    (0x700, pxe_options(0), "undionly.kpxe"),
    (0x701, pxe_options(7), "ipxe.efi"),
    (0x702, ipxe_options(0), "http://{server}:{port}/bootconfig?mac={mac}"),
], ids=["BIOS", "UEFI", "iPXE"])
def test_a_request_on_4011_gets_an_ack_unicast_from_4011(lab, client, number, options,
                                                          boot_file):
    mac = mac_of(number)
    boot_item = (43, b"\x47\x04\x80\x00\x00\x00\xff")  # sub-option 71: type 0x8000, layer 0
    xid, datagram = dhcp(mac, [*options, boot_item], message_type=3, ciaddr=lab.client_ip,
                         flags=0)
    client.send(datagram, (lab.server_ip, 4011))
    reply, others = client.reply_to(xid)
    assert others == []
    boot_file = boot_file.format(server=lab.server_ip, port=HTTP_PORT, mac=mac)
    assert_proxy_offer(lab, reply, mac, boot_file, message_type=5)
    assert reply.source == (lab.server_ip, 4011)
    assert (reply.destination, reply.port) == (lab.client_ip, 68)
    assert reply.packet.flags == 0
    assert reply.options["vendor_specific"] == b"\x06\x01\x08\x47\x04\x80\x00\x00\x00\xff"


def test_what_is_not_ours_stays_unanswered(lab, client):
    """Non-PXE DHCP, a PXE REQUEST meant for the site's server, a DISCOVER
    to 4011 and an architecture we have no binary for (ARM64 UEFI)."""
    mac = mac_of(0x800)
    unanswered = [
        (dhcp(mac, [(55, b"\x01\x03\x06")]), 67),
        (dhcp(mac, [(60, b"MSFT 5.0"), (55, b"\x01\x03\x06")]), 67),
        (dhcp(mac, pxe_options(0), message_type=3), 67),
        (dhcp(mac, pxe_options(11)), 67),
        (dhcp(mac, pxe_options(16)), 67),  # HTTP boot arch under the PXE class
        (dhcp(mac, pxe_options(0)), 4011),
    ]
    for (_, datagram), port in unanswered:
        if port == 67:
            client.broadcast(datagram)
        else:
            client.send(datagram, (lab.server_ip, port))
    # Sent after them on each port: their answers would have come first.
    xid, datagram = dhcp(mac, pxe_options(0))
    client.broadcast(datagram)
    _, others = client.reply_to(xid)
    xid, datagram = dhcp(mac, pxe_options(0), message_type=3, ciaddr=lab.client_ip)
    client.send(datagram, (lab.server_ip, 4011))
    _, others_4011 = client.reply_to(xid)
    assert others == others_4011 == []
    assert f"{mac} : no boot file for PXEClient architecture 11: not answered" in lab.log()


def test_a_burst_of_malformed_datagrams_is_dropped_and_the_server_keeps_answering(lab, client):
    mac = mac_of(0x900)
    _, good = dhcp(mac, pxe_options(0))
    reply_op = bytearray(good)
    reply_op[0] = 2
    long_hardware = bytearray(good)
    long_hardware[2] = 16
    malformed = [
        b"", b"\x01", good[:100], good[:239],  # truncated
        good[:236] + b"\x63\x82\x53\x00" + good[240:],  # wrong magic cookie
        good[:240] + b"\x35\xc8\x01",  # option length past the end
        good[:240] + b"\x35\x01\x01\x3c\x40PXEClient",  # class option cut short
        good[:240] + b"\x3c\x09PXEClient\xff",  # no message type
        bytes(reply_op), bytes(long_hardware),
        *(os.urandom(n) for n in (240, 300, 576, 1500)),
        b"\x01\x01\x06\x00" + os.urandom(232) + b"\x63\x82\x53\x63" + os.urandom(200),
    ]
    for _ in range(10):
        for datagram in malformed:
            client.send(datagram, (lab.server_ip, 67))
            client.send(datagram, (lab.server_ip, 4011))
    xid, datagram = dhcp(mac, pxe_options(0))
    client.broadcast(datagram)
    reply, others = client.reply_to(xid)
    assert others == []
    assert_proxy_offer(lab, reply, mac, "undionly.kpxe")
    assert lab.alive()
    assert "Traceback" not in lab.log()


@pytest.fixture(scope="module")
def strict_lab(tmp_path_factory):
    with Lab(tmp_path_factory.mktemp("dhcp-strict"),
             ["--known-macs-only", "--efi-binary", "snponly.efi"]).running() as running:
        yield running


def test_known_macs_only_answers_allocated_nodes_alone(strict_lab):
    client = strict_lab.client(68)
    known, stranger = mac_of(0xa00), mac_of(0xa01)
    strict_lab.allocate(known)
    _, unknown_datagram = dhcp(stranger, pxe_options(7))
    client.broadcast(unknown_datagram)
    xid, datagram = dhcp(known, pxe_options(7))
    client.broadcast(datagram)
    reply, others = client.reply_to(xid)
    assert others == []
    assert_proxy_offer(strict_lab, reply, known, "snponly.efi")
    assert strict_lab.admin("GET", "/dump")[known]["Arch"] == 7

"""proxyDHCP over real sockets: flunkymaster in one network namespace, PXE
and iPXE clients (crafted packets) in another, one veth between them."""

import os
import socket
import time

import pytest

from dhcp_clients import (GUID, boot_menu, boot_servers, dhcp, ipxe_options, mac_of,
                          pxe_options, pxe_suboptions)
from dhcp_lab import BROADCAST, HTTP_PORT, Lab
from netns import needs_root

pytestmark = needs_root

# PXE 2.1 option 43 sub-options, and the discovery control bits we set.
DISCOVERY_CONTROL, BOOT_SERVERS, BOOT_MENU, MENU_PROMPT, BOOT_ITEM = 6, 8, 9, 10, 71
NO_BROADCAST, NO_MULTICAST, USE_OFFERED_FILE = 0x01, 0x02, 0x08
BOOT_SERVER_TYPE = 0x8000  # the first vendor-use type, as dnsmasq's first pxe-service
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


def assert_pxe_offer_options(lab, reply):
    """Option 43 of a proxy offer: use the offered file (bit 3); for stacks
    that ignore bit 3, a one-item menu, no prompt, and us as its boot
    server, asked by unicast (broadcast and multicast discovery off)."""
    suboptions = pxe_suboptions(reply.options["vendor_specific"])
    assert set(suboptions) == {DISCOVERY_CONTROL, BOOT_SERVERS, BOOT_MENU, MENU_PROMPT}
    control, = suboptions[DISCOVERY_CONTROL]
    assert control == USE_OFFERED_FILE | NO_BROADCAST | NO_MULTICAST
    assert boot_servers(suboptions[BOOT_SERVERS]) == [(BOOT_SERVER_TYPE, [lab.server_ip])]
    (kind, description), = boot_menu(suboptions[BOOT_MENU])
    assert kind == BOOT_SERVER_TYPE and description
    assert suboptions[MENU_PROMPT][0] == 0  # timeout 0: first item, no prompt
    return suboptions


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
    assert_pxe_offer_options(lab, reply)
    assert reply.options["pxe_client_machine_identifier"] == GUID
    assert len(bytes(reply.packet)) <= 548  # fits the 576-byte datagram every client takes


def test_a_pxe_stack_that_ignores_bit_3_boots_through_the_menu(lab, client):
    """Menu item, then its boot server from 43.8, then a boot-server
    REQUEST to it on 4011 for that item (layer 0): the ACK names the file."""
    mac = mac_of(0x1ff)
    offer = discover(lab, client, mac, pxe_options(0))
    suboptions = assert_pxe_offer_options(lab, offer)
    (kind, _), = boot_menu(suboptions[BOOT_MENU])
    server, = dict(boot_servers(suboptions[BOOT_SERVERS]))[kind]
    item = kind.to_bytes(2, "big") + bytes(2)
    xid, datagram = dhcp(mac, [*pxe_options(0), (43, bytes([BOOT_ITEM, 4]) + item + b"\xff")],
                         message_type=3, ciaddr=lab.client_ip, flags=0)
    client.send(datagram, (server, 4011))
    ack, others = client.reply_to(xid)
    assert others == []
    assert_proxy_offer(lab, ack, mac, "undionly.kpxe", message_type=5)
    assert pxe_suboptions(ack.options["vendor_specific"])[BOOT_ITEM] == item


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
    # iPXE skips the menu (and 4011) when bit 3 is set and the offer has a file.
    assert_pxe_offer_options(lab, reply)


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


def ack_on_4011(lab, client, mac, options, boot_file):
    """A REQUEST to our port 4011 from the client's address: the ACK, checked
    to name ``boot_file`` (formatted) and to come back unicast from 4011."""
    xid, datagram = dhcp(mac, options, message_type=3, ciaddr=lab.client_ip, flags=0)
    client.send(datagram, (lab.server_ip, 4011))
    reply, others = client.reply_to(xid)
    assert others == []
    boot_file = boot_file.format(server=lab.server_ip, port=HTTP_PORT, mac=mac)
    assert_proxy_offer(lab, reply, mac, boot_file, message_type=5)
    assert reply.source == (lab.server_ip, 4011)
    assert (reply.destination, reply.port) == (lab.client_ip, 68)
    return reply


@pytest.mark.parametrize("number, options, boot_file", [
    (0x700, pxe_options(0), "undionly.kpxe"),
    (0x701, pxe_options(7), "ipxe.efi"),
    (0x702, ipxe_options(0), "http://{server}:{port}/bootconfig?mac={mac}"),
], ids=["BIOS", "UEFI", "iPXE"])
def test_a_request_on_4011_gets_an_ack_unicast_from_4011(lab, client, number, options,
                                                          boot_file):
    mac = mac_of(number)
    boot_item = (43, b"\x47\x04\x80\x00\x00\x00\xff")  # sub-option 71: type 0x8000, layer 0
    reply = ack_on_4011(lab, client, mac, [*options, boot_item], boot_file)
    assert reply.packet.flags == 0
    suboptions = pxe_suboptions(reply.options["vendor_specific"])
    control = USE_OFFERED_FILE | NO_BROADCAST | NO_MULTICAST
    assert suboptions == {DISCOVERY_CONTROL: bytes([control]),
                          BOOT_ITEM: b"\x80\x00\x00\x00"}  # the item asked for, confirmed


@pytest.fixture(scope="module")
def on_4011_lab(tmp_path_factory):
    with Lab(tmp_path_factory.mktemp("dhcp-4011"), ["--boot-file-on-4011"]).running() as running:
        yield running


@pytest.fixture(scope="module")
def on_4011_client(on_4011_lab):
    return on_4011_lab.client(68)


@pytest.mark.parametrize("number, options, kind, boot_file", [
    (0xd00, pxe_options(0), "BIOS PXE", "undionly.kpxe"),
    (0xd01, pxe_options(7), "UEFI PXE", "ipxe.efi"),
    (0xd02, ipxe_options(0), "iPXE", "http://{server}:{port}/bootconfig?mac={mac}"),
], ids=["BIOS", "UEFI", "iPXE"])
def test_with_boot_file_on_4011_the_offer_names_no_file_and_the_4011_ack_does(
        on_4011_lab, on_4011_client, number, options, kind, boot_file):
    """No file and no PXE vendor options in the offer (a BINL offer: with
    any, EDK2 looks for a menu, and iPXE boots from one rather than ask):
    the client sends a ProxyDHCP REQUEST to the server (option 54, us) on
    4011, as iPXE and EDK2 do, without a boot item; the ACK carries the
    file."""
    lab, client, mac = on_4011_lab, on_4011_client, mac_of(number)
    offer = discover(lab, client, mac, options)
    assert offer.options["message-type"] == 2
    assert offer.packet.yiaddr == "0.0.0.0"
    assert offer.options["server_id"] == offer.packet.siaddr == lab.server_ip
    assert offer.options["vendor_class_id"] == b"PXEClient"
    assert "boot-file-name" not in offer.options
    assert offer.packet.file == bytes(128)
    assert offer.options["pxe_client_machine_identifier"] == GUID
    assert_broadcast_offer(lab, offer)
    assert "vendor_specific" not in offer.options
    ack = ack_on_4011(lab, client, mac,
                      [*options, (54, socket.inet_aton(offer.options["server_id"]))], boot_file)
    boot_file = boot_file.format(server=lab.server_ip, port=HTTP_PORT, mac=mac)
    assert BOOT_MENU not in pxe_suboptions(ack.options["vendor_specific"])
    arch = 7 if number == 0xd01 else 0
    offered = (f"{mac} : proxyDHCP OFFER for {kind} (architecture {arch}): no boot file, "
               f"it is sent on request to port 4011")
    acked = f"{mac} : proxyDHCP ACK for {kind} (architecture {arch}): {boot_file}"
    log = lab.log()
    assert offered in log and acked in log.split(offered, 1)[1], log


def test_with_boot_file_on_4011_uefi_http_boot_still_gets_its_url_offered(on_4011_lab,
                                                                           on_4011_client):
    """HTTP boot has no 4011 round: its offer must name the URL."""
    mac = mac_of(0xd10)
    reply = discover(on_4011_lab, on_4011_client, mac, pxe_options(16, vendor="HTTPClient"))
    url = f"http://{on_4011_lab.server_ip}:{HTTP_PORT}/static/ipxe.efi"
    assert_proxy_offer(on_4011_lab, reply, mac, url, vendor=b"HTTPClient")
    assert "vendor_specific" not in reply.options


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
    assert "malformed" not in lab.log()  # a debug line: not at the default level, info


def test_with_log_level_debug_a_malformed_datagram_is_logged(tmp_path):
    with Lab(tmp_path, ["--log-level", "debug"]).running() as debug_lab:
        client = debug_lab.client(68)
        client.send(b"\x01" * 100, (debug_lab.server_ip, 67))
        mac = mac_of(0x901)
        discover(debug_lab, client, mac, pxe_options(0))  # handled after the bad one
        assert (f"DEBUG - dropped a malformed DHCP datagram from {debug_lab.client_ip}:68: "
                f"100 bytes, shorter than a DHCP header") in debug_lab.log()


def test_an_architecture_we_cannot_boot_is_logged_once_per_machine_not_per_retry(lab, client):
    first, second = mac_of(0x810), mac_of(0x811)
    for mac in (first, first, first, first, second, second):  # ROMs retry a DISCOVER ~4 times
        client.broadcast(dhcp(mac, pxe_options(11))[1])
    discover(lab, client, mac_of(0x812), pxe_options(0))  # handled after them
    lines = lab.log().splitlines()
    for mac in (first, second):
        said = [line for line in lines if f"{mac} : no boot file for PXEClient architecture 11"
                in line]
        assert len(said) == 1, said


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


@pytest.fixture(scope="module", params=["no default route", "default route on another interface"])
def unaddressed_lab(request, tmp_path_factory):
    """flunkymaster with --interface and no --address: alone on its link,
    or multi-homed with the default route over the other link."""
    with Lab(tmp_path_factory.mktemp("dhcp-noaddress"), address=False,
             second_link=request.param != "no default route").running() as running:
        yield running


def test_without_address_the_interface_address_is_advertised(unaddressed_lab):
    lab = unaddressed_lab
    client = lab.client(68)
    mac = mac_of(0xb00)
    reply = discover(lab, client, mac, pxe_options(0))
    assert_proxy_offer(lab, reply, mac, "undionly.kpxe")  # siaddr and option 54
    assert_pxe_offer_options(lab, reply)  # the boot server in 43.8
    reply = discover(lab, client, mac, ipxe_options(0))
    assert_proxy_offer(lab, reply, mac, f"http://{lab.server_ip}:{HTTP_PORT}/bootconfig?mac={mac}")
    assert lab.fetch(reply.options["boot-file-name"].decode())[0] == 200


@pytest.fixture(scope="module")
def multihomed_lab(tmp_path_factory):
    with Lab(tmp_path_factory.mktemp("dhcp-multihomed"), second_link=True).running() as running:
        yield running


def test_interface_ignores_requests_arriving_on_another_interface(multihomed_lab):
    """Bound to the first link (--interface): a broadcast DISCOVER, a relayed
    one and a 4011 REQUEST, all over the second link, go unanswered and
    unlogged, while the same requests over the first link are answered."""
    lab = multihomed_lab
    _, other_if, other_server_ip, other_client_ip = lab.second
    stray = {port: lab.client(port, interface=other_if) for port in (67, 68)}
    bound = {port: lab.client(port) for port in (67, 68)}
    stray_mac, mac = mac_of(0xc00), mac_of(0xc01)

    def requests(mac, server_ip, client_ip):
        return [(67, (server_ip, 67), dhcp(mac, pxe_options(7), giaddr=client_ip, hops=1)),
                (68, (server_ip, 4011), dhcp(mac, ipxe_options(0), message_type=3,
                                             ciaddr=client_ip, flags=0)),
                (68, None, dhcp(mac, pxe_options(0)))]

    def send(clients, port, address, datagram):
        if address is None:
            clients[port].broadcast(datagram)
        else:
            clients[port].send(datagram, address)

    for port, address, (_, datagram) in requests(stray_mac, other_server_ip, other_client_ip):
        send(stray, port, address, datagram)
    # The same over the bound link, sent after: on each server socket (67
    # and 4011) they queue behind the strays, so once they are answered the
    # strays were dealt with. Unicast ones first: their answers get back
    # even if the socket is not bound to the interface.
    for port, address, (xid, datagram) in requests(mac, lab.server_ip, lab.client_ip):
        send(bound, port, address, datagram)
        reply, others = bound[port].reply_to(xid)
        assert others == []
        assert reply.packet.chaddr[:6] == bytes.fromhex(mac.replace(":", ""))
        assert stray_mac not in lab.log(), "answered a request from another interface"
    assert mac in lab.log()
    deadline = time.monotonic() + 0.5  # and nothing came back over the second link
    for client in stray.values():
        client.sock.settimeout(max(deadline - time.monotonic(), 0.01))
        with pytest.raises(socket.timeout):
            while True:
                data = client.sock.recv(2048)
                assert data[:1] != b"\x02", "a reply over the interface we are not bound to"

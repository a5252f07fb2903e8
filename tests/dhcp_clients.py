"""DHCP requests as real PXE firmware and iPXE send them (see
shared/netboot-facts.md), built with scapy for the tests and the benchmark."""

import itertools

from scapy.layers.dhcp import BOOTP, DHCP

BROADCAST_FLAG = 0x8000
GUID = b"\x00" + bytes(range(1, 17))  # option 97: type 0 + a 16-byte UUID
_xids = itertools.count(0x48430000)


def next_xid():
    return next(_xids)


def mac_of(number):
    """A locally administered MAC, distinct for each number."""
    return "52:54:00:" + ":".join(f"{b:02x}" for b in number.to_bytes(3, "big"))


def pxe_options(arch, vendor="PXEClient", guid=True):
    """The options of a firmware PXE (or UEFI HTTP boot) DISCOVER."""
    options = [(60, f"{vendor}:Arch:{arch:05d}:UNDI:003016".encode()),
               (93, arch.to_bytes(2, "big")), (94, b"\x01\x03\x10"), (57, b"\x05\xc0"),
               (55, bytes([1, 3, 6, 43, 60, 66, 67, 97]))]
    if guid:
        options.append((97, GUID))
    return options


def ipxe_options(arch=0, user_class=b"iPXE", features=True):
    """A running iPXE's DISCOVER: option 77 (raw or RFC 3004) and option 175."""
    options = pxe_options(arch)
    if user_class is not None:
        options.append((77, user_class))
    if features:
        options.append((175, b"\x13\x01\x01\x11\x01\x01\xeb\x03\x01\x00\x00"))
    return options


def dhcp(mac, options, message_type=1, xid=None, giaddr="0.0.0.0", hops=0,
         ciaddr="0.0.0.0", flags=BROADCAST_FLAG):
    """A BOOTREQUEST datagram; returns (xid, bytes)."""
    xid = next_xid() if xid is None else xid
    packet = BOOTP(op=1, xid=xid, hops=hops, flags=flags, ciaddr=ciaddr, giaddr=giaddr,
                   chaddr=bytes.fromhex(mac.replace(":", ""))) / DHCP(
        options=[("message-type", message_type), *options, "end"])
    return xid, bytes(packet)


def pxe_suboptions(data):
    """Option 43 of a PXE reply decoded: {sub-option: value}. Fails on a
    length past the end, a repeated sub-option or a missing end (255)."""
    found = {}
    while data[:1] != b"\xff":
        assert len(data) >= 2 and data[1] + 2 <= len(data), f"truncated sub-option {data.hex()}"
        code, length = data[0], data[1]
        assert code not in found, f"sub-option {code} twice"
        found[code] = data[2:2 + length]
        data = data[2 + length:]
    assert data == b"\xff", f"bytes after the end: {data.hex()}"
    return found


def boot_servers(value):
    """PXE_BOOT_SERVERS (43.8) decoded: [(type, [IPv4 addresses])]."""
    entries = []
    while value:
        kind, count = int.from_bytes(value[:2], "big"), value[2]
        addresses = [".".join(map(str, value[3 + 4 * n:7 + 4 * n])) for n in range(count)]
        assert len(value) >= 3 + 4 * count
        entries.append((kind, addresses))
        value = value[3 + 4 * count:]
    return entries


def boot_menu(value):
    """PXE_BOOT_MENU (43.9) decoded: [(type, description)]."""
    items = []
    while value:
        kind, length = int.from_bytes(value[:2], "big"), value[2]
        assert len(value) >= 3 + length
        items.append((kind, value[3:3 + length]))
        value = value[3 + length:]
    return items

"""DHCP datagrams in and out, through scapy's BOOTP and DHCP layers.

Options are handed on as raw bytes keyed by option number, so nothing past
this module depends on scapy's option names or on how it types values.
"""

from dataclasses import dataclass

from scapy.layers.dhcp import BOOTP, DHCP, DHCPRevOptions

# The fixed BOOTP header (236 bytes) plus the magic cookie.
MIN_LENGTH = 240
# RFC 951's minimum BOOTP message: some PXE ROMs drop anything shorter.
REPLY_LENGTH = 300

BOOTREQUEST, BOOTREPLY = 1, 2
DISCOVER, OFFER, REQUEST, ACK = 1, 2, 3, 5
ETHERNET, ETHERNET_ADDRESS_LENGTH = 1, 6
UNSPECIFIED = "0.0.0.0"


class Malformed(ValueError):
    """Not a well-formed DHCP request from an Ethernet client."""


@dataclass(frozen=True)
class Request:
    xid: int
    flags: int
    ciaddr: str
    giaddr: str
    chaddr: bytes  # the six bytes of the client's MAC
    options: dict  # option number -> raw value

    @property
    def mac(self):
        return ":".join(f"{b:02x}" for b in self.chaddr)

    @property
    def message_type(self):
        value = self.options.get(53, b"")
        return value[0] if len(value) == 1 else None


def parse(datagram):
    """The :class:`Request` in a UDP payload; raises :class:`Malformed`."""
    if len(datagram) < MIN_LENGTH:
        raise Malformed(f"{len(datagram)} bytes, shorter than a DHCP header")
    try:
        packet = BOOTP(datagram)
    except Exception as exc:  # scapy's field decoders raise whatever they hit
        raise Malformed(f"undecodable: {exc!r}") from None
    if DHCP not in packet:
        raise Malformed("no DHCP magic cookie")
    if packet.op != BOOTREQUEST:
        raise Malformed(f"op {packet.op} is not a request")
    if packet.htype != ETHERNET or packet.hlen != ETHERNET_ADDRESS_LENGTH:
        raise Malformed(f"hardware type {packet.htype}/{packet.hlen} is not Ethernet")
    request = Request(xid=packet.xid, flags=int(packet.flags), ciaddr=packet.ciaddr,
                      giaddr=packet.giaddr, chaddr=bytes(packet.chaddr[:ETHERNET_ADDRESS_LENGTH]),
                      options=_options(packet))
    if request.message_type is None:
        raise Malformed("no valid message type (option 53)")
    return request


def _options(packet):
    options = {}
    for item in packet[DHCP].options:
        if item == "end":
            break
        if item == "pad":
            continue
        if not isinstance(item, tuple):
            # scapy keeps the undecodable rest as bytes: an option overran the packet.
            raise Malformed(f"bad option length in {bytes(item)[:8].hex()}...")
        code, value = _raw(packet, item)
        # RFC 3396: an option given more than once is one long option.
        options[code] = options.get(code, b"") + value
    return options


def _raw(packet, item):
    name, values = item[0], item[1:]
    if isinstance(name, int):
        return name, b"".join(values)
    code, field = DHCPRevOptions[name]
    if field is None:
        return code, b"".join(values)
    return code, b"".join(field.addfield(packet, b"", value) for value in values)


def encode_reply(request, server_ip, boot_file, options):
    """A BOOTREPLY to ``request`` offering no address, with ``options``
    (a list of (number, bytes)), padded to the BOOTP minimum."""
    packet = BOOTP(op=BOOTREPLY, xid=request.xid, flags=request.flags, ciaddr=request.ciaddr,
                   yiaddr=UNSPECIFIED, siaddr=server_ip, giaddr=request.giaddr,
                   chaddr=request.chaddr, file=_fixed(boot_file, 128))
    packet.add_payload(DHCP(options=[*options, "end"]))  # `/` would copy both layers
    data = bytes(packet)
    return data.ljust(REPLY_LENGTH, b"\0")


def _fixed(text, size):
    """A BOOTP fixed-size string field: too long a value is left to option 67 alone."""
    data = text.encode("ascii")
    return data if len(data) < size else b""

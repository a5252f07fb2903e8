"""The TFTP wire format.

Requests, client errors and OACKs go through tftpy's packet classes. What
tftpy gets wrong is done by hand here: ERROR packets (its encoder drops the
message and cannot send code 0), and DATA/ACK, which are on the per-block hot
path where building a tftpy object per packet would cost more than the rest
of the transfer.
"""

import logging
import struct

from tftpy.TftpPacketFactory import TftpPacketFactory
from tftpy.TftpPacketTypes import TftpPacketOACK

RRQ, WRQ, DATA, ACK, ERROR, OACK = range(1, 7)

# Error codes (RFC 1350, 2347).
NOT_DEFINED, FILE_NOT_FOUND, ACCESS_VIOLATION, DISK_FULL, ILLEGAL_OPERATION, \
    UNKNOWN_TID, FILE_EXISTS, NO_SUCH_USER, OPTION_REFUSED = range(9)

# opcode + block number, packed in place in front of each block's payload.
HEADER = struct.Struct("!HH")
ERROR_OPCODE = HEADER.pack(ERROR, 0)[:2]

_factory = TftpPacketFactory()

# tftpy logs every ERROR packet it decodes at error level; a client's ERROR is
# ordinary protocol traffic that the transfer reports itself.
logging.getLogger("tftpy").addHandler(logging.NullHandler())
logging.getLogger("tftpy").propagate = False


class Malformed(Exception):
    """A datagram that is not a valid TFTP packet; str() says why."""


def opcode(datagram):
    return int.from_bytes(datagram[:2], "big")


def parse_request(datagram):
    """An RRQ or WRQ as a tftpy packet (``filename``, lower-case ``mode``, ``options``).

    NUL padding after the last field is tolerated (some ROMs pad their
    requests); anything else tftpy cannot decode raises Malformed.
    """
    if opcode(datagram) not in (RRQ, WRQ):
        raise Malformed(f"opcode {opcode(datagram)} is not a request")
    trimmed = datagram.rstrip(b"\0") + b"\0"
    try:
        return _factory.parse(trimmed)
    except Exception as exc:  # tftpy raises struct.error, UnicodeError, TftpException...
        raise Malformed(f"bad request: {exc or type(exc).__name__}") from None


def parse_error(datagram):
    """(code, message) of a client's ERROR packet."""
    try:
        packet = _factory.parse(datagram)
    except Exception as exc:
        raise Malformed(f"bad ERROR packet: {exc or type(exc).__name__}") from None
    message = (packet.errmsg or b"").rstrip(b"\0").decode("utf-8", "replace")
    return packet.errorcode, message


def error(code, message):
    """An ERROR packet that really carries its message."""
    text = message.encode("ascii", "replace")[:400]
    return HEADER.pack(ERROR, code) + text + b"\0"


def oack(options):
    """An OACK carrying ``options`` (name -> value) in the order given."""
    packet = TftpPacketOACK()
    packet.options = {name: str(value) for name, value in options.items()}
    return packet.encode().buffer

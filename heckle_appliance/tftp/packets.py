"""The TFTP wire format.

Client errors and OACKs go through tftpy's packet classes. What tftpy gets
wrong is done by hand here: requests (it refuses a whole RRQ for one option
it cannot decode, where RFC 2347 says unknown options are ignored), ERROR
packets (its encoder drops the message and cannot send code 0), and
DATA/ACK, which are on the per-block hot path where building a tftpy object
per packet would cost more than the rest of the transfer.
"""

import logging
import struct
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Request:
    opcode: int
    filename: str
    mode: str  # lower case
    options: dict  # name as sent -> value, both str; first of repeated names wins


def _text(field, what):
    try:
        text = field.decode("ascii")
    except UnicodeDecodeError:
        raise Malformed(f"bad request: {what} is not ASCII") from None
    if not text:
        raise Malformed(f"bad request: empty {what}")
    return text


def parse_request(datagram):
    """An RRQ or WRQ as a Request; raises Malformed for a bad filename or mode.

    The filename and the mode must be NUL-terminated ASCII (a request that
    ends with the mode may lack the last NUL). After them,
    what RFC 2347 lets a server ignore is ignored rather than refused: an
    option whose name or value is not ASCII, an empty name, a name without
    its value, and unterminated bytes at the end (NUL padding included).
    """
    if opcode(datagram) not in (RRQ, WRQ):
        raise Malformed(f"opcode {opcode(datagram)} is not a request")
    fields = bytes(datagram[2:]).split(b"\0")
    if len(fields) < 2:
        raise Malformed("bad request: the filename must end with a NUL")
    if len(fields) == 2:
        fields.append(b"")  # the mode ends the packet without its NUL: let it pass
    filename = _text(fields[0], "filename")
    mode = _text(fields[1], "mode").lower()
    options = {}
    seen = set()
    # The last field is what follows the last NUL: never a complete one.
    for name, value in zip(fields[2:-1:2], fields[3:-1:2]):
        try:
            name, value = name.decode("ascii"), value.decode("ascii")
        except UnicodeDecodeError:
            continue
        if name and name.lower() not in seen:
            seen.add(name.lower())
            options[name] = value
    return Request(opcode(datagram), filename, mode, options)


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

"""Option negotiation (RFC 2347 framework, 2348 blksize, 2349 timeout/tsize, 7440 windowsize).

The OACK names only options the client asked for and we accept; a value we
cannot parse or that is out of its RFC range is ignored as if not asked.
"""

from dataclasses import dataclass

MIN_BLKSIZE, MAX_BLKSIZE = 8, 65464
# 1500-byte Ethernet MTU - 20 (IPv4) - 8 (UDP) - 4 (TFTP header): no IP fragments.
SAFE_BLKSIZE = 1468
MAX_WINDOWSIZE = 65535


@dataclass(frozen=True)
class Limits:
    max_blksize: int = SAFE_BLKSIZE
    # A window bigger than this buys nothing on a LAN and only risks
    # overflowing the client's socket buffer.
    max_windowsize: int = 64
    default_timeout: float = 1.0


@dataclass(frozen=True)
class Settings:
    blksize: int
    windowsize: int
    timeout: float


def _integer(value, low, high):
    if not (isinstance(value, str) and value.isascii() and value.isdigit()) or len(value) > 20:
        return None  # also refuses what int() would forgive: " 8", "+8", "1_0"
    number = int(value)
    return number if low <= number <= high else None


def negotiate(requested, size, limits):
    """(Settings, accepted options for the OACK) for a request's options.

    ``requested`` maps option names (any case) to their string values;
    ``size`` is the exact number of bytes that will be sent.
    """
    asked = {name.lower(): value for name, value in requested.items()}
    accepted = {}
    blksize = _integer(asked.get("blksize"), MIN_BLKSIZE, MAX_BLKSIZE)
    if blksize is not None:
        accepted["blksize"] = blksize = min(blksize, limits.max_blksize)
    if _integer(asked.get("tsize"), 0, 2**63) is not None:
        accepted["tsize"] = size
    timeout = _integer(asked.get("timeout"), 1, 255)
    if timeout is not None:
        accepted["timeout"] = timeout
    windowsize = _integer(asked.get("windowsize"), 1, MAX_WINDOWSIZE)
    if windowsize is not None:
        accepted["windowsize"] = windowsize = min(windowsize, limits.max_windowsize)
    settings = Settings(blksize=blksize or 512, windowsize=windowsize or 1,
                        timeout=float(timeout or limits.default_timeout))
    return settings, accepted

"""How nodes are named: IP addresses, hostnames and MAC addresses.

Operators name nodes however their site does (``10.0.0.5``, ``n05``,
``AA-BB-CC-DD-EE-FF``); iPXE names itself by MAC. Everything is reduced here
to one canonical spelling so that state lookups never depend on how a name
was typed.
"""

import ipaddress
import re
import socket
from dataclasses import dataclass

_HEX = re.compile(r"[0-9a-fA-F]+")


class BadNodeName(ValueError):
    """A node name that is neither an address, a MAC nor a resolvable host."""


def normalise_mac(text):
    """Return ``aa:bb:cc:dd:ee:ff`` for any common MAC spelling, else None.

    Accepts colon, dash and dot separated forms (``aa:bb:..``, ``AA-BB-..``,
    ``aabb.ccdd.eeff``) and bare 12-digit hex.
    """
    if not isinstance(text, str):
        return None
    parts = re.split(r"[:\-.]", text.strip())
    if len(parts) == 6 and all(len(p) in (1, 2) for p in parts):
        parts = [p.zfill(2) for p in parts]
    elif len(parts) == 3 and all(len(p) == 4 for p in parts):
        pass
    elif len(parts) != 1:
        return None
    digits = "".join(parts)
    if len(digits) != 12 or not _HEX.fullmatch(digits):
        return None
    digits = digits.lower()
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def normalise_ip(text):
    """Return the canonical spelling of an IPv4/IPv6 address, else None."""
    try:
        address = ipaddress.ip_address(text.strip())
    except (ValueError, AttributeError):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)


@dataclass(frozen=True)
class NodeName:
    """A node as an operator named it, reduced to an IP or a MAC."""

    kind: str  # "ip" or "mac"
    value: str
    hostname: str | None = None


def resolve(text, getaddrinfo=socket.getaddrinfo):
    """Turn an operator's node name into a :class:`NodeName`.

    MACs win over hostnames: a bare 12-hex-digit name is read as a MAC.
    Hostnames are resolved to IPv4 (as the original did); this blocks, so
    network adapters call it off the reactor thread.
    """
    if not isinstance(text, str) or not text.strip():
        raise BadNodeName(f"invalid node name {text!r}")
    text = text.strip()
    mac = normalise_mac(text)
    if mac:
        return NodeName("mac", mac)
    ip = normalise_ip(text)
    if ip:
        return NodeName("ip", ip)
    try:
        infos = getaddrinfo(text, None, socket.AF_INET)
    except (socket.gaierror, UnicodeError) as exc:
        raise BadNodeName(f"cannot resolve host {text!r}: {exc}") from None
    if not infos:
        raise BadNodeName(f"cannot resolve host {text!r}: no IPv4 address")
    return NodeName("ip", infos[0][4][0], hostname=text)

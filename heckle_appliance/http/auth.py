"""Who may use the admin side (/ctl, /status, /dump, /api).

Loopback is always trusted, as the original (which listened on localhost
only). Anyone else must present HTTP basic credentials or a bearer token
found in the credentials file. Without a file, the admin side is reachable
from loopback only.
"""

import base64
import binascii
import hmac
import ipaddress


class CredentialsError(Exception):
    pass


def read_credentials(path):
    """Parse ``name:secret`` lines ('#' comments allowed) into {name: secret}."""
    entries = {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"cannot read credentials file {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, secret = line.partition(":")
        if not sep or not name or not secret:
            raise CredentialsError(f"{path}, line {number}: expected name:secret")
        entries[name] = secret
    return entries


def is_loopback(host):
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


class AdminAuth:
    def __init__(self, credentials=None):
        self.credentials = credentials or {}

    def refusal(self, host, authorization):
        """None if a request from ``host`` with this Authorization header may
        act, else the reason it may not (said to the client)."""
        if is_loopback(host):
            return None
        if not self.credentials:
            return ("the admin side answers loopback only: this appliance has no "
                    "--credentials file")
        if not authorization:
            return "admin credentials required (HTTP basic or bearer token)"
        if self._valid(authorization):
            return None
        return "invalid admin credentials"

    def _valid(self, authorization):
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            token = value.strip().encode()
            return any(hmac.compare_digest(token, s.encode()) for s in self.credentials.values())
        if scheme == "basic":
            try:
                name, _, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            expected = self.credentials.get(name)
            return expected is not None and hmac.compare_digest(secret.encode(), expected.encode())
        return False

"""Which boot file a PXE client gets, decided from its DHCP options alone.

The chain is: firmware PXE (or UEFI HTTP boot) gets an iPXE binary; iPXE,
once running, gets the node's bootconfig URL. Recognising iPXE comes before
everything else, whatever architecture it reports, or it would be handed
itself again and loop.
"""

import re
from dataclasses import dataclass

PXE_CLIENT, HTTP_CLIENT = "PXEClient", "HTTPClient"
BIOS_BINARY = "undionly.kpxe"
EFI_BINARIES = ("ipxe.efi", "snponly.efi")

# RFC 4578 / IANA "Processor Architecture Types" (option 93).
BIOS_ARCHES = frozenset({0})
EFI_PXE_ARCHES = frozenset({6, 7, 9})  # IA32, x64 (BC), x64
EFI_HTTP_ARCHES = frozenset({15, 16})  # IA32 and x64 UEFI HTTP boot

IPXE_USER_CLASS = b"iPXE"
IPXE_ENCAPSULATED = 175  # iPXE's feature options; only iPXE sends it
_ARCH_IN_CLASS = re.compile(rb":Arch:(\d{5})")


@dataclass(frozen=True)
class BootChoice:
    boot_file: str
    client: str  # what we took the client for, for the log


def client_class(options):
    """``PXEClient`` or ``HTTPClient`` from option 60, else None (not ours to answer)."""
    vendor = options.get(60, b"")
    for name in (PXE_CLIENT, HTTP_CLIENT):
        if vendor.startswith(name.encode()):
            return name
    return None


def architecture(options):
    """The client's architecture: option 93's first entry, else the
    ``Arch:`` field of option 60 (older ROMs), else None."""
    arch = options.get(93, b"")
    if len(arch) >= 2:
        return int.from_bytes(arch[:2], "big")
    match = _ARCH_IN_CLASS.search(options.get(60, b""))
    return int(match.group(1)) if match else None


def is_ipxe(options):
    """iPXE sends option 77 as the bare bytes ``iPXE`` (not RFC 3004's
    length-prefixed list, which other builds use) and option 175."""
    if IPXE_ENCAPSULATED in options:
        return True
    user_class = options.get(77, b"")
    return user_class == IPXE_USER_CLASS or IPXE_USER_CLASS in _rfc3004_classes(user_class)


def _rfc3004_classes(data):
    classes = []
    while data:
        length = data[0]
        if length == 0 or length + 1 > len(data):
            return []  # not RFC 3004 after all
        classes.append(data[1:length + 1])
        data = data[length + 1:]
    return classes


def choose(options, mac, server_url, efi_binary):
    """The :class:`BootChoice` for a PXE or HTTP-boot client, or None when
    we have nothing it can run."""
    if is_ipxe(options):
        return BootChoice(f"{server_url}/bootconfig?mac={mac}", "iPXE")
    kind, arch = client_class(options), architecture(options)
    if kind == PXE_CLIENT and arch in BIOS_ARCHES:
        return BootChoice(BIOS_BINARY, "BIOS PXE")
    if kind == PXE_CLIENT and arch in EFI_PXE_ARCHES:
        return BootChoice(efi_binary, "UEFI PXE")
    if kind == HTTP_CLIENT and arch in EFI_HTTP_ARCHES:
        return BootChoice(f"{server_url}/static/{efi_binary}", "UEFI HTTP boot")
    return None

"""PXELINUX configuration text -> an equivalent iPXE script.

The original Heckle images wrote their bootconfig in PXELINUX syntax, read
by a gPXE-based pxelinux. Our nodes run iPXE, which does not understand that
syntax (and runs unknown text as commands), so the appliance translates a
rendered bootconfig that is not already an iPXE/gPXE script: sites keep
their images as they are.

Translated: ``DEFAULT``, ``LABEL``, ``KERNEL``/``LINUX``, ``APPEND`` (per
label, or global for labels without their own; ``APPEND -`` means none),
``INITRD`` and ``initrd=`` in ``APPEND`` (comma-separated lists too), and
``LOCALBOOT`` (-> ``exit``: iPXE leaves the netboot, the firmware tries the
next device). Keywords are case-insensitive, ``#`` lines are comments.
Anything else (``MENU``, ``TIMEOUT``, ``PROMPT``, ``IPAPPEND``, …) has no
meaning for an unattended iPXE boot and is kept as a comment, so the
operator can see what was dropped.

Each initrd becomes ``initrd URL`` and the kernel line gets
``initrd=<basename>``: UEFI Linux only finds an initrd that iPXE loaded when
the command line names it (else "VFS: Unable to mount root fs"), and BIOS
boots either way. Relative file names are resolved against ``base`` (the
appliance passes its ``/static/`` URL, where PXELINUX would have used TFTP
relative to its own directory).
"""

import posixpath
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

HEADER = "#!ipxe\n# PXELINUX configuration translated to iPXE by heckle-appliance\n"
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def is_ipxe_script(text):
    """iPXE runs a script only when it starts with one of these headers."""
    return text.lstrip().startswith(("#!ipxe", "#!gpxe"))


@dataclass
class _Entry:
    """One LABEL (or the implicit one a DEFAULT command line makes)."""
    name: str
    kernel: str = None
    append: str = None  # None: inherit the global APPEND
    initrds: list = field(default_factory=list)
    localboot: bool = False
    skipped: list = field(default_factory=list)


def to_ipxe(text, base=""):
    """The iPXE script equivalent to PXELINUX ``text``; iPXE/gPXE scripts unchanged."""
    if is_ipxe_script(text):
        return text
    default, global_append, entries, skipped = _parse(text)
    chosen = _choose(default, entries)
    if chosen is not None and chosen not in entries:
        entries.append(chosen)
    lines = [f"# skipped: {line}" for line in skipped]
    if chosen is None:
        lines += ["# no boot entry: leave the netboot", "exit"]
        return HEADER + "\n".join(lines) + "\n"
    lines.append(f"goto {_label(chosen.name)}")
    for entry in entries:
        lines += _section(entry, global_append, base)
    return HEADER + "\n".join(lines) + "\n"


def _parse(text):
    default, global_append, entries, skipped = None, None, [], []
    entry = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "DEFAULT":
            default = rest
        elif keyword == "LABEL":
            entry = _Entry(rest)
            entries.append(entry)
        elif keyword == "APPEND" and entry is None:
            global_append = rest
        elif entry is None:
            skipped.append(line)
        elif keyword in ("KERNEL", "LINUX"):
            entry.kernel = rest
        elif keyword == "APPEND":
            entry.append = rest
        elif keyword == "INITRD":
            entry.initrds += rest.split(",")
        elif keyword == "LOCALBOOT":
            entry.localboot = True
        else:
            entry.skipped.append(line)
    return default, global_append, entries, skipped


def _choose(default, entries):
    """The entry DEFAULT names; a DEFAULT naming no label is itself a kernel
    command line; with no DEFAULT, the first label."""
    if default is None:
        return entries[0] if entries else None
    for match in (lambda e: e.name == default, lambda e: e.name.lower() == default.lower()):
        for entry in entries:
            if match(entry):
                return entry
    kernel, _, append = default.partition(" ")
    return _Entry("default", kernel=kernel, append=append.strip())


def _section(entry, global_append, base):
    lines = [f":{_label(entry.name)}"] + [f"# skipped: {line}" for line in entry.skipped]
    if entry.localboot:
        return lines + ["exit"]
    if entry.kernel is None:
        return lines + [f"# label {entry.name} has no kernel: leave the netboot", "exit"]
    append = entry.append if entry.append is not None else (global_append or "")
    if append == "-":
        append = ""
    initrds = list(entry.initrds)
    words = []
    for word in append.split():
        if word.startswith("initrd="):
            initrds += word[len("initrd="):].split(",")
        else:
            words.append(word)
    initrds = [_resolve(name, base) for name in initrds if name]
    words = [f"initrd={_basename(url)}" for url in initrds] + words
    lines.append(" ".join(["kernel", _resolve(entry.kernel, base)] + words))
    lines += [f"initrd {url}" for url in initrds]
    return lines + ["boot"]


def _resolve(name, base):
    if "://" in name:
        return name
    return base + name.lstrip("/")


def _basename(url):
    return posixpath.basename(urlsplit(url).path)


def _label(name):
    return "pxelinux-" + _LABEL_UNSAFE.sub("_", name)

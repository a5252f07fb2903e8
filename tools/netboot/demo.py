"""``make demo``: one virtual node netboots and is imaged, as on a real site.

Builds the demo kernel and ramdisk into the example repository's
``static/demo/``, starts ``flunkymaster`` on a copy of that repository in a
throw-away network namespace (with the site's DHCP server beside it),
allocates a QEMU node with ``fctl`` and powers it on. fctl's live progress
is what an operator sees; a short summary follows. Needs root (namespaces,
tap) and the Debian packages the Makefile installs.
"""

import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import build
from .lab import Lab, needs
from .node import BIOS, missing

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "repository"
IMAGE = "ipxe-demo"
MAC = "52:54:00:de:30:01"


def main():
    lacking = needs() + missing(BIOS)
    if lacking:
        raise SystemExit("make demo needs: " + "; ".join(lacking))
    started = time.monotonic()
    print("== Building the node's kernel and installer ramdisk (cached in .cache/netboot/)")
    try:
        for path in build.build(EXAMPLE / "static" / "demo"):
            print(f"   {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KiB)")
    except build.BuildError as exc:
        raise SystemExit(f"make demo: {exc}") from None
    work = Path(tempfile.mkdtemp(prefix="heckle-demo."))
    repo = work / "repository"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("data.json*", "flunky.log*"))
    with Lab(work, repo).running() as lab:
        print(f"== Appliance up: {lab.url} (HTTP, TFTP, proxyDHCP on the lab's bridge);"
              f" the site's DHCP server is dnsmasq")
        print(f"== fctl -i {IMAGE} {MAC}   (node powered on as soon as it is allocated)")
        sys.stdout.flush()
        status, seconds = lab.netboot(BIOS, IMAGE, MAC, sys.stdout)
        record = lab.record(MAC) or {}
    state = "Ready" if status == 0 else "not Ready (fctl exit status %d)" % status
    print(f"\n== Summary: node {MAC} ({record.get('IP')}) {state}: netbooted, installed and "
          f"booted again in {seconds:.0f} s ({time.monotonic() - started:.0f} s in all)")
    for name, path in (("event log", repo / "flunky.log"), ("node state", repo / "data.json"),
                       ("node console", work / "serial.log")):
        print(f"   {name + ':':<14}{path}")
    return status


if __name__ == "__main__":
    sys.exit(main())

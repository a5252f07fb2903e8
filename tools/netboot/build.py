"""The netboot node's kernel and installer ramdisk, from Debian packages, cached.

Kernel: the Debian kernel that ``linux-image-amd64`` currently depends on,
fetched with ``apt-get download`` (never installed on this host). Only
``vmlinuz`` and the NIC drivers are kept: QEMU's e1000 and virtio-net are
modules in Debian's kernel, not built in.

Ramdisk: busybox-static, ``init.sh`` as ``/init``, its DHCP hook and the NIC
modules with their load order, in a newc cpio written here rather than by
``cpio``: the
``/dev/console`` node needs no mknod, and the same inputs give the same
bytes.

Everything lands in ``.cache/netboot/`` (the Makefile's, gitignored): the
first run needs the package mirror (about 70 MB, once); later runs only
rebuild the ramdisk, which takes a fraction of a second.

    python -m tools.netboot.build [DEST]   # also copies vmlinuz, initrd.gz to DEST
"""

import gzip
import io
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = ROOT / ".cache" / "netboot"
BUSYBOX = Path("/bin/busybox")
# Load order: e1000 stands alone; virtio_net needs the ones before it.
NIC_MODULES = ("e1000", "virtio_ring", "virtio", "virtio_pci_legacy_dev",
               "virtio_pci_modern_dev", "virtio_pci", "failover", "net_failover", "virtio_net")


class BuildError(Exception):
    """Something the build needs is missing; the message says what."""


def kernel_package():
    """``linux-image-6.1.0-<abi>-amd64``, the current ABI of Debian's kernel."""
    try:
        out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"apt-cache cannot tell the kernel package: {exc}") from None
    match = re.search(r"Depends: (linux-image-[\d.]+-\d+-amd64)\b", out)
    if match is None:
        raise BuildError("no linux-image-*-amd64 known to apt: run apt-get update")
    return match.group(1)


def fetch_kernel(cache=CACHE):
    """Folder holding ``vmlinuz`` and the NIC modules of the current kernel package."""
    package = kernel_package()
    folder = cache / package
    wanted = ["vmlinuz"] + [f"{name}.ko" for name in NIC_MODULES]
    if all((folder / name).is_file() for name in wanted):
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        got = subprocess.run(["apt-get", "download", package], cwd=tmp,
                             capture_output=True, text=True)
        if got.returncode != 0:
            raise BuildError(f"apt-get download {package} failed: {got.stderr.strip()}")
        deb = next(Path(tmp).glob("*.deb"))
        tree = Path(tmp) / "tree"
        tree.mkdir()
        unpack = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                                  stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(tree), "--wildcards", "./boot/vmlinuz-*",
                        *(f"*/{name}.ko" for name in NIC_MODULES)],
                       stdin=unpack.stdout, check=True)
        unpack.stdout.close()
        if unpack.wait() != 0:
            raise BuildError(f"dpkg-deb could not read {deb.name}")
        staging = Path(tmp) / "out"
        staging.mkdir()
        shutil.move(next(tree.glob("boot/vmlinuz-*")), staging / "vmlinuz")
        for name in NIC_MODULES:
            shutil.move(next(tree.rglob(f"{name}.ko")), staging / f"{name}.ko")
        shutil.rmtree(folder, ignore_errors=True)  # one from an older build, if any
        staging.rename(folder)  # all or nothing: an interrupted run leaves no half cache
    return folder


class Newc:
    """A cpio archive in the kernel's initramfs format ("newc")."""

    def __init__(self):
        self.out = io.BytesIO()
        self.inode = 0

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        self.inode += 1
        fields = (self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, *rdev, len(name) + 1, 0)
        self.out.write(b"070701" + b"".join(b"%08X" % value for value in fields))
        self.out.write(name.encode() + b"\0")
        self._pad()
        self.out.write(data)
        self._pad()

    def _pad(self):
        self.out.write(b"\0" * (-self.out.tell() % 4))

    def directory(self, name):
        self._entry(name, 0o040755)

    def file(self, name, data, mode=0o644):
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name, target):
        self._entry(name, 0o120777, target.encode())

    def char_device(self, name, major, minor):
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return self.out.getvalue()


def ramdisk(kernel):
    """The gzipped initramfs: busybox and its applets, /init, the NIC modules
    of the kernel folder ``kernel`` and ``lib/modules/order``."""
    check = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "busybox-static"],
                           capture_output=True, text=True)
    if "installed" not in check.stdout.split():
        raise BuildError("the ramdisk needs Debian's busybox-static (a static /bin/busybox)")
    applets = subprocess.run([str(BUSYBOX), "--list-full"], check=True, capture_output=True,
                             text=True).stdout.split()
    archive = Newc()
    folders = {"bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"}
    folders |= {str(Path(applet).parent) for applet in applets}
    for folder in sorted(folders, key=lambda f: (f.count("/"), f)):
        archive.directory(folder)
    archive.char_device("dev/console", 5, 1)
    archive.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    for applet in applets:
        if applet != "bin/busybox":
            archive.symlink(applet, "/bin/busybox")
    archive.file("init", (HERE / "init.sh").read_bytes(), 0o755)
    archive.file("bin/udhcpc.script", (HERE / "udhcpc.script").read_bytes(), 0o755)
    for name in NIC_MODULES:
        archive.file(f"lib/modules/{name}.ko", (kernel / f"{name}.ko").read_bytes())
    archive.file("lib/modules/order", "".join(f"{name}\n" for name in NIC_MODULES).encode())
    return gzip.compress(archive.finish(), compresslevel=6, mtime=0)


def build(dest=None, cache=CACHE):
    """(vmlinuz, initrd.gz) in the cache, copied into ``dest`` too when given."""
    kernel = fetch_kernel(cache)
    initrd = kernel / "initrd.gz"
    data = ramdisk(kernel)
    if not initrd.is_file() or initrd.read_bytes() != data:
        initrd.write_bytes(data)
    outputs = (kernel / "vmlinuz", initrd)
    if dest is not None:
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        outputs = tuple(Path(shutil.copy2(path, dest / path.name)) for path in outputs)
    return outputs


def main(argv=sys.argv[1:]):
    try:
        for path in build(*argv[:1]):
            print(f"{path} ({path.stat().st_size // 1024} KiB)")
    except BuildError as exc:
        raise SystemExit(f"netboot build: {exc}") from None


if __name__ == "__main__":
    main()

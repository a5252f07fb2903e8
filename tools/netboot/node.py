"""A virtual node: QEMU netbooting from the lab's tap with Debian's iPXE ROMs.

TCG only (no KVM here). The serial port, which carries both iPXE's console
(thanks to the ``etc/sercon-port`` fw_cfg file) and the kernel's
``console=ttyS0``, goes to a file: the record of what the firmware did.
Without ``-no-reboot``, the ramdisk's reboot after the install is a real
second netboot, as on a physical node.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

ROMS = Path("/usr/lib/ipxe/qemu")
OVMF = Path("/usr/share/OVMF")
SERCON_PORT = bytes([0xF8, 0x03])  # 0x3f8, COM1, little-endian


@dataclass(frozen=True)
class Firmware:
    name: str
    uefi: bool
    nic: str = "e1000"
    rom: str = ""  # the NIC's iPXE option ROM; "": none, the firmware's own PXE client

    def files(self):
        """Every host file this firmware needs (to say what is missing)."""
        files = [ROMS / self.rom] if self.rom else []
        if self.uefi:
            files += [OVMF / "OVMF_CODE.fd", OVMF / "OVMF_VARS.fd"]
        return files


BIOS = Firmware("BIOS", uefi=False, rom="pxe-e1000.rom")
UEFI = Firmware("UEFI", uefi=True, rom="efi-e1000.rom")
# OVMF's own PXE client (virtio-net, no option ROM), as on a machine whose
# NIC has no iPXE: it must be handed ipxe.efi over TFTP first.
UEFI_OWN_PXE = Firmware("UEFI (own PXE)", uefi=True, nic="virtio-net-pci")


def missing(firmware):
    """The QEMU binary and firmware files this host lacks (Debian packages
    qemu-system-x86, ipxe-qemu, seabios, ovmf)."""
    found = [] if shutil.which("qemu-system-x86_64") else ["qemu-system-x86_64"]
    return found + [str(path) for path in firmware.files() if not path.exists()]


def qemu_command(firmware, mac, tap, workdir):
    """The QEMU command line; writes the small files it refers to into ``workdir``."""
    workdir = Path(workdir)
    sercon = workdir / "sercon-port"
    sercon.write_bytes(SERCON_PORT)
    # -nodefaults: no CD-ROM or floppy for the firmware to try first (OVMF
    # spends over a second on an empty DVD drive before the NIC).
    command = [
        "qemu-system-x86_64", "-machine", "pc", "-accel", "tcg",
        "-m", "512", "-smp", "1", "-nodefaults", "-display", "none", "-monitor", "none",
        "-serial", f"file:{workdir / 'serial.log'}", "-boot", "n",
        "-fw_cfg", f"name=etc/sercon-port,file={sercon}",
        "-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no",
        "-device", f"{firmware.nic},netdev=net0,mac={mac},"
                   f"romfile={ROMS / firmware.rom if firmware.rom else ''}"]
    if firmware.uefi:
        variables = workdir / "OVMF_VARS.fd"  # the firmware writes its boot entries here
        shutil.copyfile(OVMF / "OVMF_VARS.fd", variables)
        command += ["-drive", f"if=pflash,format=raw,readonly=on,file={OVMF / 'OVMF_CODE.fd'}",
                    "-drive", f"if=pflash,format=raw,file={variables}"]
    return command

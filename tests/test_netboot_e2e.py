"""A real node netboots end to end against the real appliance (issue 6).

Real firmware, not a simulation: QEMU (TCG) with Debian's iPXE ROMs, under
SeaBIOS or OVMF, plugged into a bridge in a network namespace where the site's
DHCP server (dnsmasq, addresses only) and ``flunkymaster`` (one process:
proxyDHCP, TFTP, HTTP) run. The image boots Debian's kernel and a busybox
ramdisk (tools/netboot/, built once per session and cached in
.cache/netboot/), which fetches the flunky sh agent and runs the image's
install script with it; the ramdisk then reboots and the second netboot
leaves the network boot. ``fctl``, started before the node is powered on,
watches it all.

Packages: qemu-system-x86 ipxe-qemu seabios ovmf ipxe dnsmasq-base
busybox-static iproute2 (and the Debian mirror, once, for the kernel).
"""

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from conftest import ROOT, copy_example

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.netboot import build  # noqa: E402
from tools.netboot.lab import LEASES, Lab, needs  # noqa: E402
from tools.netboot.node import BIOS, UEFI, UEFI_OWN_PXE, missing  # noqa: E402

pytestmark = pytest.mark.skipif(bool(needs()), reason="a netboot lab needs " + " and ".join(needs()))

MAC = "52:54:00:77:00:01"
MESSAGE_LINE = re.compile(r"^(Info|Error): \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: Node: (\S+): (.*)$")
STATE_LINE = re.compile(r"^NODE: (\S+) TIME: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d STATUS: (\w+)$")

# Test images beside the example repository's ipxe-demo and pxelinux-demo.
TFTP_BOOTCONFIG = """#!ipxe
# $${next-server} would be the site DHCP server's (its settings come first):
# the appliance's own address is in iPXE's proxydhcp settings.
{% if Count < 1 %}\\
kernel $Server/static/demo/vmlinuz initrd=initrd.gz $kernel_args flunky=$Server
initrd tftp://$${proxydhcp/next-server}/demo/initrd.gz
boot
{% end %}\\
{% if Count >= 1 %}\\
exit
{% end %}\\
"""
FAILING_INSTALL = """#!/bin/sh
flunky -S "$Server" -i "Partitioning $rootfs on $Address"
flunky -S "$Server" -e "no disk at $rootfs"
exit 3
"""


@pytest.fixture(scope="session")
def boot_files():
    """(vmlinuz, initrd.gz): one build per session, from the cache when it can."""
    return build.build()


@pytest.fixture
def repository(tmp_path, boot_files):
    repo = copy_example(tmp_path / "repository")
    demo = repo / "static" / "demo"
    demo.mkdir()
    for path in boot_files:
        shutil.copyfile(path, demo / path.name)
    images = repo / "images"
    shutil.copytree(images / "ipxe-demo", images / "tftp-initrd")
    (images / "tftp-initrd" / "bootconfig").write_text(TFTP_BOOTCONFIG)
    shutil.copytree(images / "ipxe-demo", images / "failing-install")
    (images / "failing-install" / "install").write_text(FAILING_INSTALL)
    return repo


class Run:
    """What one netboot left behind: fctl's output and status, data.json, flunky.log."""

    def __init__(self, tmp_path, repo, firmware, image, appliance_args=()):
        absent = missing(firmware)
        assert not absent, f"missing: {', '.join(absent)} (qemu-system-x86 ipxe-qemu seabios ovmf)"
        output = tmp_path / "fctl.out"
        with Lab(tmp_path, repo, appliance_args).running() as lab, open(output, "w") as out:
            self.status, self.seconds = lab.netboot(firmware, image, MAC, out)
        print(f"\n{' '.join([firmware.name, image, *appliance_args])}: power-on to fctl's "
              f"verdict {self.seconds:.1f} s")
        self.lines = output.read_text().splitlines()
        self.record = json.loads((repo / "data.json").read_text())[MAC]
        self.log = (repo / "flunky.log").read_text()
        self.serial = (tmp_path / "serial.log").read_bytes().decode("utf-8", "replace")

    def messages(self):
        """(kind, text) of every message line fctl printed, in order."""
        found = [MESSAGE_LINE.match(line) for line in self.lines]
        assert all(m.group(2) == MAC for m in found if m)
        return [(m.group(1), m.group(3)) for m in found if m]

    def states(self):
        return [m.group(2) for m in map(STATE_LINE.match, self.lines) if m]

    def log_lines_in_order(self, *expected):
        position = 0
        for text in expected:
            found = self.log.find(text, position)
            assert found >= 0, f"{text!r} not in flunky.log after position {position}:\n{self.log}"
            position = found + len(text)


def release(boot_files):
    """The kernel release the ramdisk's ``uname -r`` reports, from the package's name."""
    return boot_files[0].parent.name.removeprefix("linux-image-")


def installed(run, image, boot_files, reply="OFFER"):
    """The checks every successful variant shares; returns the node's IP.
    ``reply``: the proxyDHCP message that gives iPXE its bootconfig URL
    (``ACK``, on 4011, with --boot-file-on-4011)."""
    ip = run.record["IP"]
    low, high = (int(a.rsplit(".", 1)[1]) for a in LEASES)
    assert low <= int(ip.rsplit(".", 1)[1]) <= high  # the site's DHCP gave it
    expected = [
        "fetched bootconfig (boot 1)",
        f"Installing {image} on {ip} for example cluster (Linux {release(boot_files)})",
        "Creating filesystems on /dev/vda1", "Syncing image", "Install finished, rebooting",
        "fetched bootconfig (boot 2)"]
    assert run.status == 0, "\n".join(run.lines)
    assert run.lines[0] == f"{MAC}: allocated to {image}"
    assert run.messages() == [("Info", text) for text in expected]
    assert run.states() == ["Building", "Ready"]
    assert re.fullmatch(r"Summary: 1 node\(s\) in \w+: 1 Ready", run.lines[-1])
    assert [m["Message"] for m in run.record["Info"]] == expected
    assert run.record["Image"] == image and run.record["Errors"] == 0
    assert run.record["Counts"]["bootconfig"] == 2 and run.record["Counts"]["install"] == 1
    run.log_lines_in_order(
        f"allocated {MAC} to image {image}",
        f"{MAC} : proxyDHCP {reply} for iPXE (architecture {run.record['Arch']}): "
        f"http://10.77.0.1:8080/bootconfig?mac={MAC}",
        f"{ip} ({MAC}) : {expected[1]}", f"{ip} ({MAC}) : Install finished, rebooting",
        f"{MAC} : proxyDHCP {reply} for iPXE")
    return ip


def test_bios_node_installs_and_is_ready(tmp_path, repository, boot_files):
    run = Run(tmp_path, repository, BIOS, "ipxe-demo")
    installed(run, "ipxe-demo", boot_files)
    assert run.record["Arch"] == 0
    assert run.record["Counts"]["/demo/vmlinuz"] == 1
    # The second boot got the local-boot branch, and iPXE handed back to SeaBIOS.
    assert f"ipxe-demo is installed on {MAC}: booting the local disk" in run.serial
    assert "No more network devices" in run.serial


def test_uefi_node_installs_and_is_ready(tmp_path, repository, boot_files):
    run = Run(tmp_path, repository, UEFI, "ipxe-demo")
    installed(run, "ipxe-demo", boot_files)
    assert run.record["Arch"] == 7  # EFI x64, as OVMF's iPXE says
    assert f"ipxe-demo is installed on {MAC}: booting the local disk" in run.serial


def test_uefi_firmware_pxe_chainloads_ipxe_over_our_tftp(tmp_path, repository, boot_files):
    """No iPXE in the NIC: OVMF's own PXE client gets ipxe.efi from our TFTP
    (both boots), and that iPXE gets the bootconfig."""
    run = Run(tmp_path, repository, UEFI_OWN_PXE, "ipxe-demo")
    ip = installed(run, "ipxe-demo", boot_files)
    size = (Path("/usr/lib/ipxe") / "ipxe.efi").stat().st_size
    one_boot = [f"{MAC} : proxyDHCP OFFER for UEFI PXE (architecture 7): ipxe.efi",
                f"tftp: sent ipxe.efi to {ip} ({size} bytes)",
                f"{MAC} : proxyDHCP OFFER for iPXE (architecture 7)"]
    run.log_lines_in_order(*one_boot * 2)
    assert "NBP file downloaded successfully" in run.serial


@pytest.mark.parametrize("firmware", [BIOS, UEFI_OWN_PXE], ids=["BIOS", "UEFI own PXE"])
def test_boot_file_on_4011_boots_through_the_pxe_boot_server_exchange(
        tmp_path, repository, boot_files, firmware):
    """With --boot-file-on-4011 the offers name no boot file, so the
    firmware (iPXE in the BIOS NIC's ROM; OVMF's own PXE client, then the
    ipxe.efi it loads) asks us on 4011, on both boots, and the ACK gives it."""
    run = Run(tmp_path, repository, firmware, "ipxe-demo", ["--boot-file-on-4011"])
    ip = installed(run, "ipxe-demo", boot_files, reply="ACK")
    arch = run.record["Arch"]

    def exchange(client, boot_file):
        return [f"{MAC} : proxyDHCP OFFER for {client} (architecture {arch}): no boot file, "
                f"it is sent on request to port 4011",
                f"{MAC} : proxyDHCP ACK for {client} (architecture {arch}): {boot_file}"]

    one_boot = exchange("iPXE", f"http://10.77.0.1:8080/bootconfig?mac={MAC}")
    if firmware is UEFI_OWN_PXE:
        assert arch == 7
        size = (Path("/usr/lib/ipxe") / "ipxe.efi").stat().st_size
        one_boot = [*exchange("UEFI PXE", "ipxe.efi"),
                    f"tftp: sent ipxe.efi to {ip} ({size} bytes)", *one_boot]
    else:
        assert arch == 0
    run.log_lines_in_order(*one_boot * 2)
    offers = re.findall(r"proxyDHCP OFFER for .*", run.log)
    assert offers and all("no boot file" in line for line in offers), offers


def test_pxelinux_bootconfig_boots_under_uefi(tmp_path, repository, boot_files):
    """The original's PXELINUX syntax, translated; UEFI because there Linux
    finds the initrd only if the translation names it on the kernel line."""
    run = Run(tmp_path, repository, UEFI, "pxelinux-demo")
    installed(run, "pxelinux-demo", boot_files)
    assert "ramdisk: install done, rebooting" in run.serial


def test_initrd_over_our_tftp(tmp_path, repository, boot_files):
    run = Run(tmp_path, repository, BIOS, "tftp-initrd")
    ip = installed(run, "tftp-initrd", boot_files)
    assert run.record["Counts"]["/demo/initrd.gz"] == 1  # counted by the TFTP side
    size = (repository / "static" / "demo" / "initrd.gz").stat().st_size
    run.log_lines_in_order(f"tftp: sent demo/initrd.gz to {ip}", f"({size} bytes)")
    assert "tftp://10.77.0.1/demo/initrd.gz... ok" in run.serial


def test_failing_install_is_reported_failed(tmp_path, repository, boot_files):
    run = Run(tmp_path, repository, BIOS, "failing-install")
    ip = run.record["IP"]
    assert run.status == 1, "\n".join(run.lines)
    assert run.messages() == [("Info", "fetched bootconfig (boot 1)"),
                              ("Info", f"Partitioning /dev/vda1 on {ip}"),
                              ("Error", "no disk at /dev/vda1")]
    assert run.states() == ["Building", "Failed"]
    assert re.fullmatch(rf"Summary: 1 node\(s\) in \w+: 1 Failed \({MAC}: 1 error message\(s\)\)",
                        run.lines[-1])
    assert run.record["Errors"] == 1 and run.record["Counts"]["bootconfig"] == 1
    run.log_lines_in_order(f"ERROR - {ip} ({MAC}) : no disk at /dev/vda1")
    assert "ramdisk: install failed (status 3), powering off" in run.serial

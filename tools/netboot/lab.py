"""A netboot network in throw-away namespaces: the site's DHCP, the appliance, a tap.

Two namespaces, made here and deleted afterwards (nothing touches the
host's interfaces):

* ``lab``: a bridge holding the appliance's address, the tap a QEMU node
  plugs into, and one end of a veth. ``flunkymaster`` runs here as one
  process (HTTP, TFTP, proxyDHCP on the bridge); so do ``fctl`` (over
  loopback, trusted without credentials) and QEMU.
* ``site``: the other end of the veth and dnsmasq as the site's DHCP server,
  handing out addresses only (no boot options), plus IPv6 router adverts
  (without them iPXE waits ~13 s for IPv6 autoconfiguration).

So the node's firmware meets what a real site has: an address from the
site's server and boot instructions from our proxyDHCP.
"""

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from .node import qemu_command

SUBNET = "10.77.0"
APPLIANCE_IP, SITE_IP = f"{SUBNET}.1", f"{SUBNET}.2"
LEASES = (f"{SUBNET}.100", f"{SUBNET}.199")
BRIDGE, TAP = "br0", "tap0"
HTTP_PORT = 8080  # the namespace is ours alone
BIN = Path(sys.executable).parent


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def stop_process(proc, timeout=10):
    """SIGTERM, then SIGKILL if it lingers; a no-op for one already gone."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for(what, ready, proc, timeout, log_path=None):
    """Poll ``ready()`` until true; fail early, with the log, if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            log = Path(log_path).read_text() if log_path and Path(log_path).exists() else ""
            raise RuntimeError(f"{what} did not start (exit {proc.poll()}):\n{log}")
        time.sleep(0.05)


class Lab:
    """The namespaces and the long-running processes in them, all cleaned up on exit.

    ``appliance_args``: more flunkymaster options (e.g. ``--boot-file-on-4011``).
    """

    def __init__(self, workdir, repository, appliance_args=()):
        self.workdir = Path(workdir)
        self.repository = Path(repository)
        self.appliance_args = list(appliance_args)
        tag = uuid.uuid4().hex[:6]
        self.ns, self.site_ns = f"hk-lab-{tag}", f"hk-site-{tag}"
        self.processes = []
        self.url = f"http://{APPLIANCE_IP}:{HTTP_PORT}"
        self.local_url = f"http://127.0.0.1:{HTTP_PORT}"

    @contextlib.contextmanager
    def running(self):
        try:
            self._network()
            self._site_dhcp()
            self._appliance()
            yield self
        finally:
            for proc in reversed(self.processes):
                stop_process(proc)
            for ns in (self.ns, self.site_ns):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def _network(self):
        ip("netns", "add", self.ns)
        ip("netns", "add", self.site_ns)
        for ns in (self.ns, self.site_ns):
            # No duplicate address detection: the site's router adverts go
            # out at once instead of after DAD's second or two.
            self.run_in(ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
                        "net.ipv6.conf.default.accept_dad=0")
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", self.ns, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", self.ns, "addr", "add", f"{APPLIANCE_IP}/24", "dev", BRIDGE)
        ip("-n", self.ns, "link", "set", BRIDGE, "up")
        ip("-n", self.ns, "tuntap", "add", "dev", TAP, "mode", "tap")
        ip("-n", self.ns, "link", "set", TAP, "master", BRIDGE, "up")
        ip("link", "add", "vlab", "netns", self.ns, "type", "veth",
           "peer", "name", "vsite", "netns", self.site_ns)
        ip("-n", self.ns, "link", "set", "vlab", "master", BRIDGE, "up")
        ip("-n", self.site_ns, "addr", "add", f"{SITE_IP}/24", "dev", "vsite")
        ip("-n", self.site_ns, "addr", "add", "fd77::2/64", "dev", "vsite")
        ip("-n", self.site_ns, "link", "set", "vsite", "up")

    def _site_dhcp(self):
        log = self.workdir / "dnsmasq.log"
        proc = self.spawn(self.site_ns, [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
            "--user=root", "--pid-file=", "--interface=vsite", "--bind-interfaces",
            "--leasefile-ro", "--no-ping", "--log-dhcp", f"--log-facility={log}",
            f"--dhcp-range={LEASES[0]},{LEASES[1]},255.255.255.0,1h",
            "--enable-ra", "--dhcp-range=fd77::,ra-only"], "dnsmasq.err")
        wait_for("dnsmasq", lambda: log.exists() and "DHCP, IP range" in log.read_text(),
                 proc, 10, self.workdir / "dnsmasq.err")

    def _appliance(self):
        proc = self.spawn(self.ns, [
            str(BIN / "flunkymaster"), "--repository", str(self.repository),
            "--address", APPLIANCE_IP, "--interface", BRIDGE, "--http-port", str(HTTP_PORT),
            "--tftp-port", "69", "--dhcp-port", "67", "--pxe-port", "4011",
            *self.appliance_args], "flunkymaster.err")
        wait_for("flunkymaster", self._appliance_listening, proc, 30,
                 self.workdir / "flunkymaster.err")

    def _appliance_listening(self):
        """Are HTTP (TCP 8080), TFTP (69) and proxyDHCP (67, 4011) all bound?"""
        sockets = self.run_in(self.ns, "ss", "-Hlntu").stdout.split("\n")
        ports = {line.split()[4].rsplit(":", 1)[1] + "/" + line.split()[0]
                 for line in sockets if line.strip()}
        return {f"{HTTP_PORT}/tcp", "69/udp", "67/udp", "4011/udp"} <= ports

    def run_in(self, ns, *args):
        return subprocess.run(["ip", "netns", "exec", ns, *args], check=True,
                              capture_output=True, text=True)

    def spawn(self, ns, command, output_name, stdout=None):
        """A process in namespace ``ns``, stopped when the lab ends; stderr
        (and stdout unless given) go to ``output_name`` in the work folder."""
        with open(self.workdir / output_name, "ab") as output:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *command],
                                    stdin=subprocess.DEVNULL, stdout=stdout or output,
                                    stderr=output)
        self.processes.append(proc)
        return proc

    def fctl(self, *args, stdout=None, output_name="fctl.err"):
        """``fctl -S <appliance> ARGS`` in the lab, as an operator on the appliance runs it."""
        return self.spawn(self.ns, [str(BIN / "fctl"), "-S", self.local_url, *args],
                          output_name, stdout)

    def log(self):
        path = self.repository / "flunky.log"
        return path.read_text() if path.exists() else ""

    def record(self, key):
        """The node's record in data.json (None until it is there)."""
        path = self.repository / "data.json"
        return json.loads(path.read_text()).get(key) if path.exists() else None

    def wait_allocated(self, key, proc, timeout=30):
        """Until ``key`` has a record on disk (allocations are written before /ctl answers)."""
        wait_for(f"allocation of {key}", lambda: self.record(key) is not None, proc, timeout,
                 self.workdir / "fctl.err")

    def netboot(self, firmware, image, mac, fctl_stdout=None, minutes=5):
        """Allocate ``mac`` to ``image`` with fctl, watching from the start as
        an operator would, power the node on, and wait for fctl's verdict.

        Returns (fctl's exit status, seconds from power-on to the verdict).
        The node is then switched off: after its last netboot nothing of it
        matters to the appliance.
        """
        # A node silent for two minutes is stuck (a boot takes seconds).
        fctl = self.fctl("-i", image, "-t", str(minutes), "--interval", "0.5",
                         "--inactivity", "120", mac, stdout=fctl_stdout)
        self.wait_allocated(mac, fctl)
        vm = self.spawn(self.ns, qemu_command(firmware, mac, TAP, self.workdir), "qemu.out")
        started = time.monotonic()
        try:
            status = fctl.wait(timeout=minutes * 60 + 30)  # fctl gives up first
        finally:
            stop_process(vm)
        return status, time.monotonic() - started


def needs():
    """What this host lacks to run a lab, as sentences; empty when it can."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces, a bridge and a tap device)")
    if not os.path.exists("/dev/net/tun"):
        missing.append("/dev/net/tun (the tap device QEMU plugs into)")
    return missing

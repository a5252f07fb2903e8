"""proxyDHCP throughput and latency: flunkymaster against dnsmasq in proxy mode.

Both run in turn in the same throw-away network namespace, on the same veth,
and get the same traffic: BIOS PXE DISCOVERs broadcast from 0.0.0.0 for N
distinct MACs, with a fixed number outstanding, each new one sent as soon
as a reply comes in. Needs root (network namespaces) and dnsmasq (Debian
dnsmasq-base). Bounded in count and in time; all traffic stays in the two
namespaces.

    python benchmarks/dhcp.py [--count N] [--window W] [--seconds S]
"""

import argparse
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The namespace and client helpers are the DHCP tests' own.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from dhcp_clients import dhcp, mac_of, pxe_options  # noqa: E402
from dhcp_lab import Lab, broadcast_frame  # noqa: E402

LOST_AFTER = 1.0  # seconds without a reply before a DISCOVER counts as lost


def measure(client, count, window, seconds):
    """Latencies (s) of the replies, the number lost, and the wall time taken."""
    requests = [dhcp(mac_of(n), pxe_options(0)) for n in range(count)]
    frames = [(xid.to_bytes(4, "big"), broadcast_frame(datagram)) for xid, datagram in requests]
    pending, latencies, lost = {}, [], 0
    sock, raw = client.sock, client.raw
    sock.setblocking(False)
    start = time.monotonic()
    deadline = start + seconds
    while (frames or pending) and time.monotonic() < deadline:
        while frames and len(pending) < window:
            xid, frame = frames.pop()
            pending[xid] = time.monotonic()
            raw.send(frame)
        select.select([sock], [], [], 0.05)
        while True:
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                break
            sent = pending.pop(data[4:8], None) if data[:1] == b"\x02" else None
            if sent is not None:
                latencies.append(time.monotonic() - sent)
        now = time.monotonic()
        for xid, sent in list(pending.items()):
            if now - sent > LOST_AFTER:
                del pending[xid]
                lost += 1
    return latencies, lost + len(pending), time.monotonic() - start


def report(name, latencies, lost, elapsed):
    if not latencies:
        print(f"{name:<40} no replies ({lost} lost)")
        return
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    print(f"{name:<40} {len(latencies):>7} {lost:>5} {len(latencies) / elapsed:>10.0f} "
          f"{cuts[49] * 1e3:>8.2f} {cuts[98] * 1e3:>8.2f}")


def run_dnsmasq(lab, workdir):
    """dnsmasq as a proxy for the lab's subnet, a PXE service for BIOS clients."""
    subnet = lab.server_ip.rsplit(".", 1)[0] + ".0"
    log_file = workdir / "dnsmasq.log"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.server_ns, "dnsmasq", "--keep-in-foreground",
         "--conf-file=/dev/null", "--port=0", "--user=root", "--pid-file=",
         f"--interface={lab.server_if}", "--bind-interfaces", "--leasefile-ro",
         f"--dhcp-range={subnet},proxy,255.255.255.0",
         "--pxe-service=x86PC,Network boot,undionly", f"--log-facility={log_file}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not (log_file.exists() and "DHCP, proxy on subnet" in log_file.read_text()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"dnsmasq did not start: {proc.communicate()[1].decode()}")
        time.sleep(0.05)
    return proc


def main():
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--count", type=int, default=5000, help="DISCOVERs per server")
    options.add_argument("--window", type=int, default=8, help="DISCOVERs in flight")
    options.add_argument("--seconds", type=float, default=30, help="time limit per server")
    args = options.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench-dhcp needs root: it creates network namespaces")
    if shutil.which("dnsmasq") is None:
        raise SystemExit("bench-dhcp needs dnsmasq (Debian package dnsmasq-base)")
    print(f"proxyDHCP: {args.count} BIOS PXE DISCOVERs from distinct MACs, broadcast over a veth\n"
          f"between two namespaces, {args.window} in flight. Each server answers with a proxy "
          f"OFFER\n(boot file undionly.kpxe) and logs it to a file. The client is Python on the "
          f"same cores:\ndnsmasq's figures are partly the client's own limits.\n")
    print(f"{'server':<40} {'replies':>7} {'lost':>5} {'replies/s':>10} {'p50 ms':>8} "
          f"{'p99 ms':>8}")
    with tempfile.TemporaryDirectory(prefix="bench-dhcp-") as tmp:
        workdir = Path(tmp)
        with Lab(workdir, ["--quiet"]).running() as lab:
            client = lab.client(68)
            report("flunkymaster (Twisted + scapy)", *measure(client, args.count, args.window,
                                                              args.seconds))
            lab.stop_server()
            dnsmasq = run_dnsmasq(lab, workdir)
            try:
                report(f"dnsmasq {dnsmasq_version()} (proxy, pxe-service)",
                       *measure(client, args.count, args.window, args.seconds))
            finally:
                dnsmasq.terminate()
                dnsmasq.wait(timeout=10)


def dnsmasq_version():
    return subprocess.run(["dnsmasq", "--version"], capture_output=True,
                          text=True).stdout.split()[2]


if __name__ == "__main__":
    main()

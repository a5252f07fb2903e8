"""TFTP throughput of the appliance against tftpd-hpa and atftpd on loopback.

Downloads one 64 MiB file from each server with the same client per column
(curl lockstep at three block sizes, atftp with windowsize 8), median of
five runs taken round the servers in turn, and prints MiB/s and our ratio
to each reference. Servers run on free high loopback ports, started and
stopped here. Server and client are
pinned to the same CPU, as for the reference figures in netboot-facts: left
to the scheduler, or on two CPUs, lockstep is bound by cross-CPU wake-up
latency (a few MiB/s for every server) and the figures say nothing about
the servers.

    python benchmarks/tftp.py [--runs N] [--size-mib N]
"""

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

FILE = "bench.bin"
COLUMNS = [  # (title, client command builder)
    ("curl bs 512", lambda port, out: curl(port, out, 512)),
    ("curl bs 1428", lambda port, out: curl(port, out, 1428)),
    ("curl bs 8192", lambda port, out: curl(port, out, 8192)),
    ("atftp ws8 @1428", lambda port, out: [
        "atftp", "--option", "blksize 1428", "--option", "windowsize 8",
        "-g", "-r", FILE, "-l", out, "127.0.0.1", str(port)]),
]
# tftpd-hpa and atftpd conflict as Debian packages: atftpd may be unpacked
# instead of installed.
ATFTPD_PLACES = ["/usr/sbin/atftpd", "/opt/atftpd/usr/sbin/atftpd"]
HELP = {
    "in.tftpd": "apt-get install -y --no-install-recommends tftpd-hpa",
    "atftpd": "apt-get download atftpd && dpkg -x atftpd_*.deb /opt/atftpd   "
              "(it conflicts with tftpd-hpa, so unpack it rather than install it)",
    "curl": "apt-get install -y --no-install-recommends curl",
    "atftp": "apt-get install -y --no-install-recommends atftp",
    "taskset": "apt-get install -y util-linux",
}
SERVER_CPU = CLIENT_CPU = "0"


def curl(port, out, blksize):
    return ["curl", "-sS", "--fail", "--tftp-blksize", str(blksize), "-o", out,
            f"tftp://127.0.0.1:{port}/{FILE}"]


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_tcp_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def find_tools():
    found = {name: shutil.which(name) for name in ("in.tftpd", "curl", "atftp", "taskset")}
    found["in.tftpd"] = found["in.tftpd"] or shutil.which("in.tftpd", path="/usr/sbin")
    found["atftpd"] = next((p for p in ATFTPD_PLACES if os.access(p, os.X_OK)), None)
    missing = [name for name, path in found.items() if path is None]
    if missing:
        print("missing tools; install them with:", file=sys.stderr)
        for name in missing:
            print(f"  {name}: {HELP[name]}", file=sys.stderr)
        sys.exit(2)
    return found


def server_commands(tools, root, flunky_repo):
    """name -> (command, port) for each server."""
    ours, hpa, atftpd = free_udp_port(), free_udp_port(), free_udp_port()
    flunkymaster = os.path.join(os.path.dirname(sys.executable), "flunkymaster")
    return {
        "heckle": ([flunkymaster, "--repository", flunky_repo, "--address", "127.0.0.1",
                    "--listen", "127.0.0.1", "--http-port", str(free_tcp_port()),
                    "--dhcp-port", "0", "--pxe-port", "0", "--quiet",
                    "--tftp-port", str(ours), "--tftp-max-blksize", "65464"], ours),
        "tftpd-hpa": ([tools["in.tftpd"], "-L", "-a", f"127.0.0.1:{hpa}", "-s", root], hpa),
        "atftpd": ([tools["atftpd"], "--daemon", "--no-fork", "--port", str(atftpd),
                    "--bind-address", "127.0.0.1", "--logfile", "/dev/null", root], atftpd),
    }


def wait_until_serving(port, proc):
    """Until a tiny request gets an answer (an ERROR for a missing file will do)."""
    deadline = time.monotonic() + 20
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                sys.exit(f"server {proc.args[0]} exited with {proc.returncode}")
            probe.sendto(b"\x00\x01-probe-\x00octet\x00", ("127.0.0.1", port))
            try:
                probe.recvfrom(1024)
                return
            except OSError:
                pass
    sys.exit(f"server {proc.args[0]} did not answer on port {port}")


def measure(command, out, size):
    """Seconds for one download; the result must be complete."""
    started = time.perf_counter()
    subprocess.run(["taskset", "-c", CLIENT_CPU, *command], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    elapsed = time.perf_counter() - started
    got = os.path.getsize(out)
    if got != size:
        raise RuntimeError(f"{command[0]} received {got} of {size} bytes")
    os.unlink(out)
    return elapsed


def start_servers(commands, stack):
    """Start every server, pinned; each waits idle while another is measured."""
    for command, port in commands.values():
        proc = subprocess.Popen(["taskset", "-c", SERVER_CPU, *command],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.callback(stop, proc)
        wait_until_serving(port, proc)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bench(commands, out, size, runs):
    """server -> column -> MiB/s (median). Runs go round the servers in turn,
    so that a slow spell of the machine falls on all of them alike."""
    times = {name: {title: [] for title, _ in COLUMNS} for name in commands}
    for run in range(runs):
        print(f"run {run + 1} of {runs} ...", file=sys.stderr, flush=True)
        for title, client in COLUMNS:
            for name, (_, port) in commands.items():
                times[name][title].append(measure(client(port, out), out, size))
    return {name: {title: size / (1 << 20) / statistics.median(seconds)
                   for title, seconds in columns.items()}
            for name, columns in times.items()}


def table(results):
    titles = [title for title, _ in COLUMNS]
    lines = ["| server | " + " | ".join(titles) + " |", "|---" * (len(titles) + 1) + "|"]
    for name, row in results.items():
        lines.append(f"| {name} MiB/s | " + " | ".join(f"{row[t]:.1f}" for t in titles) + " |")
    for reference in ("tftpd-hpa", "atftpd"):
        lines.append(f"| heckle / {reference} | " + " | ".join(
            f"{results['heckle'][t] / results[reference][t]:.2f}x" for t in titles) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=64)
    args = parser.parse_args()
    tools = find_tools()
    size = args.size_mib << 20
    # tmpfs when there is one: the clients' writes then cost no disk writeback,
    # which would otherwise land on the CPUs being measured.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="bench-tftp-", dir=shm) as work:
        # The reference servers drop privileges: the folder must be world-readable.
        root = os.path.join(work, "root")
        repo = os.path.join(work, "repository")
        for folder in (work, root, *(os.path.join(repo, d) for d in ("static", "dynamic", "images"))):
            os.makedirs(folder, exist_ok=True)
            os.chmod(folder, 0o755)
        data = os.path.join(root, FILE)
        with open(data, "wb") as handle:
            handle.write(os.urandom(size))
        os.chmod(data, 0o644)
        os.link(data, os.path.join(repo, "static", FILE))
        out = os.path.join(work, "out.bin")
        commands = server_commands(tools, root, repo)
        with contextlib.ExitStack() as stack:
            start_servers(commands, stack)
            results = bench(commands, out, size, args.runs)
    print(f"TFTP on loopback, {args.size_mib} MiB file, median of {args.runs} runs "
          f"(server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}):")
    print(table(results))


if __name__ == "__main__":
    main()

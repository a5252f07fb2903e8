#!/usr/bin/env python3
"""flunky: the node agent, as the original's.

    flunky [-S URL] -i MSG | -e MSG | -g PATH | -x PATH

``-i``/``-e`` post a progress/error message, ``-g`` prints a file of the
appliance, ``-x`` fetches one, runs it and exits with its status. Any
failure exits 255. Without ``-S`` the server is ``flunky=<url>`` of the
kernel command line. While the server cannot be reached (network still
coming up, appliance restarting) requests are retried with backoff, for a
bounded time. Every request carries ``?mac=`` so the node stays itself if
its address changes.

Standard library only, and no imports from this package: ramdisks may copy
this file alone and run it with ``python3 flunky.py``. flunky.sh beside it
is the same agent for ramdisks without Python.
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

FAILURE = 255
MAX_DELAY = 30
IFF_UP, IFF_LOOPBACK = 0x1, 0x8


class Failed(Exception):
    """The agent could not do what it was asked: exit 255."""


def server_from_cmdline(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            words = handle.read().split()
    except OSError as exc:
        raise Failed(f"no -S URL and cannot read {path}: {exc.strerror}") from None
    for word in words:
        if word.startswith("flunky="):
            return word[len("flunky="):]
    raise Failed(f"no -S URL and no flunky=<url> in {path}")


def default_route_interface(route="/proc/net/route"):
    try:
        with open(route, encoding="ascii") as handle:
            rows = [line.split() for line in handle.read().splitlines()[1:]]
    except OSError:
        return None
    for row in rows:
        if len(row) > 3 and row[1] == "00000000" and int(row[3], 16) & IFF_UP:
            return row[0]
    return None


def node_mac(net="/sys/class/net"):
    """The MAC to name this node by: $FLUNKY_MAC if set (empty: none), else
    that of the default route's interface, else of the first interface up."""
    if "FLUNKY_MAC" in os.environ:
        return os.environ["FLUNKY_MAC"] or None
    try:
        devices = sorted(os.listdir(net))
    except OSError:
        return None
    preferred = default_route_interface()
    for device in [preferred, *devices] if preferred else devices:
        try:
            with open(os.path.join(net, device, "flags"), encoding="ascii") as handle:
                flags = int(handle.read(), 16)
            with open(os.path.join(net, device, "address"), encoding="ascii") as handle:
                mac = handle.read().strip()
        except (OSError, ValueError):
            continue
        if flags & IFF_UP and not flags & IFF_LOOPBACK and mac.strip("0:"):
            return mac
    return None


class Agent:
    def __init__(self, server, mac, retry_max):
        # host:port will do, as for fctl and flunky.sh; anything but http(s) is
        # a mistake no retry can mend.
        server = server if "://" in server else "http://" + server
        if urllib.parse.urlsplit(server).scheme not in ("http", "https"):
            raise Failed(f"{server}: not an http:// or https:// URL")
        self.server = server.rstrip("/")
        self.mac = mac
        self.retry_max = retry_max

    def url(self, path):
        url = self.server + "/" + path.lstrip("/")
        if self.mac:
            url += ("&" if "?" in path else "?") + "mac=" + urllib.parse.quote(self.mac, safe=":")
        return url

    def request(self, path, body=None):
        """The answer's bytes, retrying with backoff while the server is unreachable."""
        url = self.url(path)
        data = None if body is None else json.dumps(body).encode("utf-8")
        waited, delay = 0, 1
        while True:
            try:
                request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=30) as reply:
                    return reply.read()
            except urllib.error.HTTPError as exc:
                reason = exc.read().decode("utf-8", "replace").strip() or exc.reason
                raise Failed(f"{url}: HTTP {exc.code}: {reason}") from None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
            if waited >= self.retry_max:
                raise Failed(f"cannot reach {self.server}: {reason} "
                             f"(gave up after {waited}s)")
            pause = min(delay, self.retry_max - waited)
            print(f"flunky: cannot reach {self.server} ({reason}), retrying in {pause}s",
                  file=sys.stderr, flush=True)
            time.sleep(pause)
            waited, delay = waited + pause, min(delay * 2, MAX_DELAY)

    def post(self, kind, message):
        self.request(kind, {"Message": message})
        return 0

    def get(self, path):
        sys.stdout.buffer.write(self.request(path))
        sys.stdout.flush()
        return 0

    def execute(self, path):
        content = self.request(path)
        handle, script = tempfile.mkstemp(prefix="flunky-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(content)
            os.chmod(script, 0o700)
            try:
                status = subprocess.run([script], check=False).returncode
            except OSError as exc:
                raise Failed(f"cannot run {path}: {exc.strerror}") from None
        finally:
            os.unlink(script)
        return 128 - status if status < 0 else status


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"flunky: {message}", file=sys.stderr)
        sys.exit(FAILURE)


def whole_seconds(text):
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be whole seconds, not {text!r}")
    return int(text)


def parse(argv):
    parser = Parser(prog="flunky", description="The node agent of the heckle appliance.")
    parser.add_argument("-S", "--server", metavar="URL",
                        help="the appliance (default: flunky=<url> of the kernel command line)")
    parser.add_argument("--cmdline", metavar="FILE",
                        default=os.environ.get("FLUNKY_CMDLINE", "/proc/cmdline"),
                        help="where to find flunky=<url> ($FLUNKY_CMDLINE, /proc/cmdline)")
    parser.add_argument("--retry-max", metavar="SECONDS", type=whole_seconds,
                        default=os.environ.get("FLUNKY_RETRY_MAX", "300"),
                        help="keep retrying an unreachable server this long "
                             "($FLUNKY_RETRY_MAX, default 300)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("-i", metavar="MSG", dest="info", help="post a progress message")
    what.add_argument("-e", metavar="MSG", dest="error", help="post an error message")
    what.add_argument("-g", metavar="PATH", dest="get", help="print PATH of the appliance")
    what.add_argument("-x", metavar="PATH", dest="execute",
                      help="fetch PATH, run it, exit with its status")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        agent = Agent(args.server or server_from_cmdline(args.cmdline), node_mac(),
                      args.retry_max)
        if args.info is not None:
            return agent.post("info", args.info)
        if args.error is not None:
            return agent.post("error", args.error)
        if args.get is not None:
            return agent.get(args.get)
        return agent.execute(args.execute)
    except Failed as exc:
        print(f"flunky: {exc}", file=sys.stderr)
        return FAILURE


if __name__ == "__main__":
    sys.exit(main())

"""Fixtures that start the real appliance on real sockets.

``appliance`` runs the installed ``flunkymaster`` console script as a
subprocess on a copy of the example repository, on free loopback ports.
Requests are made with http.client over TCP; a test may pick its source
address within 127.0.0.0/8 to play a different node.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "repository"
BIN = Path(sys.executable).parent


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def copy_example(dest):
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(
        "data.json*", "flunky.log*", "demo"))
    return dest


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self):
        return self.body.decode("utf-8")

    def json(self):
        return json.loads(self.body)


class Appliance:
    """A running flunkymaster and a client for it."""

    def __init__(self, repo, port, args=()):
        self.repo = Path(repo)
        self.port = port
        self.args = list(args)
        self.proc = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self, expect_ready=True):
        cmd = [str(BIN / "flunkymaster"), "--repository", str(self.repo),
               "--address", "127.0.0.1", "--listen", "127.0.0.1",
               "--http-port", str(self.port), *self.args]
        # Only HTTP unless a test asks for more: never answer DHCP on the host.
        for option in ("--tftp-port", "--dhcp-port", "--pxe-port"):
            if option not in self.args:
                cmd += [option, "0"]
        # stderr goes to a file: a pipe nobody reads would block a chatty server.
        self.stderr_path = self.repo.parent / f"flunkymaster-{self.port}.stderr"
        with open(self.stderr_path, "ab") as stderr:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
        if expect_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"flunkymaster exited {self.proc.returncode}: "
                                     f"{self.stderr_path.read_text()}")
            # An answer, not just a connect: the port is bound before the
            # start is logged, and the reactor answers only once it runs.
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/api/images")
                conn.getresponse().read()
                conn.close()
                return
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
        raise AssertionError("flunkymaster did not start listening")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def request(self, method, path, body=None, source="127.0.0.1", headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10,
                                          source_address=(source, 0))
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        result = Response(reply.status, dict(reply.getheaders()), reply.read())
        conn.close()
        return result

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def allocate(self, *addresses, image="ipxe-demo", extra=None):
        reply = self.post("/ctl", {"Addresses": list(addresses), "Image": image,
                                   "Extra": extra, "Time": int(time.time())})
        assert reply.status == 200, reply.text
        return reply.json()

    def data(self):
        return json.loads((self.repo / "data.json").read_text())

    def log(self):
        return (self.repo / "flunky.log").read_text()


@pytest.fixture
def repo(tmp_path):
    return copy_example(tmp_path / "repository")


@pytest.fixture
def appliance(repo):
    server = Appliance(repo, free_port()).start()
    yield server
    server.stop()

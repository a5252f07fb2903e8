"""heckle_appliance.reactor: what flunkymaster and ``twistd -r heckle`` run on.

A reactor is installed once per process, so each check runs in a fresh
interpreter.
"""

import hashlib
import socket
import subprocess
import sys
import textwrap

import tftpy

from conftest import BIN, free_port


def run_python(code, timeout=60):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_flunkymaster_installs_it():
    out = run_python("""
        from heckle_appliance.cli.flunkymaster import installed_reactor
        print(type(installed_reactor()).__name__)
    """)
    assert out == "HeckleReactor\n"


def test_a_failing_context_free_reader_is_dropped_and_the_reactor_goes_on():
    """Both kinds of reader raise in doRead: each gets connectionLost with
    the error, is logged, and the reactor serves the next event; only the
    other kind runs inside Twisted's logging context (its logPrefix)."""
    out = run_python("""
        import socket, sys
        from heckle_appliance.reactor import install
        reactor = install()
        from twisted.python import context, log
        errors = []
        log.addObserver(lambda event: event.get("isError") and errors.append(event))

        class Reader:
            def __init__(self, free):
                self.contextFree = free
                self.ours, self.theirs = socket.socketpair()
            def fileno(self):
                return self.ours.fileno()
            def logPrefix(self):
                return "legacy"
            def doRead(self):
                print(self.contextFree, context.get(log.ILogContext)["system"])
                raise RuntimeError("boom")
            def connectionLost(self, reason):
                print(self.contextFree, "lost:", reason.getErrorMessage())

        for free in (True, False):
            reader = Reader(free)
            reactor.addReader(reader)
            reader.theirs.send(b"x")
        reactor.callLater(0.5, reactor.stop)
        reactor.run()
        print("errors logged:", len(errors))
    """)
    lines = out.splitlines()
    assert sorted(lines[:4]) == ["False legacy", "False lost: boom", "True -", "True lost: boom"]
    assert lines[4] == "errors logged: 2"


def test_twistd_dash_r_heckle_serves_tftp(repo, tmp_path):
    payload = bytes(range(256)) * 400  # 100 blocks of 1024 bytes, and a short last one
    (repo / "static" / "blob.bin").write_bytes(payload)
    tftp_port = free_port(socket.SOCK_DGRAM)
    proc = subprocess.Popen(
        [str(BIN / "twistd"), "-n", "--pidfile=", "-r", "heckle", "heckle",
         "--repository", str(repo), "--address", "127.0.0.1", "--listen", "127.0.0.1",
         "--http-port", str(free_port()), "--tftp-port", str(tftp_port),
         "--dhcp-port", "0", "--pxe-port", "0"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = tftpy.TftpClient("127.0.0.1", tftp_port, options={"blksize": 1024})
        target = tmp_path / "blob.bin"
        for _ in range(100):  # until twistd listens
            try:
                client.download("blob.bin", str(target), timeout=1, retries=1)
                break
            except tftpy.TftpException:
                assert proc.poll() is None, proc.stdout.read()
        assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(payload).digest()
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "HeckleReactor" in output  # twistd names the reactor it runs on

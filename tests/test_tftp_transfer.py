"""One Transfer driven in-process on loopback sockets, with and without UDP GSO.

The reactor is a stand-in (the test calls doRead itself), so these tests can
make the kernel's GSO look absent or failing, which the integration tests
against a running appliance cannot.
"""

import errno
import random
import select
import socket
import struct

import pytest
from twisted.internet.task import Clock

from heckle_appliance.tftp import transfer as transfer_module
from heckle_appliance.tftp.options import Settings
from heckle_appliance.tftp.source import FileCache, Memory
from heckle_appliance.tftp.transfer import (DONE, FAILED, MAX_TRIES, STALL_LIMIT, Transfer,
                                            open_sockets)

DATA, ACK = 3, 4
RNG = random.Random(7)


class Reactor:
    def addReader(self, reader):
        pass

    def removeReader(self, reader):
        pass

    def callLater(self, delay, function, *args):
        return Timer()


class Timer:
    def active(self):
        return False


class ClockReactor(Clock):
    """Twisted's own test clock, standing in for the reactor's timers."""

    def addReader(self, reader):
        pass

    def removeReader(self, reader):
        pass


class Counting:
    """A transfer socket that counts the GSO sends going through it."""

    def __init__(self, sock):
        self._sock = sock
        self.gso_sends = 0

    def sendmsg(self, buffers, ancillary=()):
        self.gso_sends += bool(ancillary)
        return self._sock.sendmsg(buffers, ancillary)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class RefusingGso:
    """A socket whose route refuses GSO, as one over a smaller MTU does (EINVAL)."""

    def __init__(self, sock):
        self._sock = sock
        self.refused = 0

    def sendmsg(self, buffers, ancillary=()):
        if ancillary:
            self.refused += 1
            raise OSError(errno.EINVAL, "Invalid argument")
        return self._sock.sendmsg(buffers)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def download(content, blksize, windowsize, wrap=Counting, host="127.0.0.1"):
    """Drive a transfer like an RFC 7440 client: ACK the last block of each window.

    Returns (data, block numbers in the order received, outcome, transfer socket).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    client = socket.socket(family, socket.SOCK_DGRAM)
    client.bind((host, 0))
    client.settimeout(5)
    outcomes = []
    transfer = Transfer(client.getsockname(), "test", content,
                        Settings(blksize=blksize, windowsize=windowsize, timeout=1.0),
                        None, Reactor(), lambda done, outcome: outcomes.append(outcome))
    connected, strangers = open_sockets(family, host, client.getsockname())
    wrapped = wrap(connected)
    transfer.begin((wrapped, strangers))
    data, numbers = bytearray(), []
    try:
        while not outcomes:
            for _ in range(windowsize):
                datagram, addr = client.recvfrom(70000)
                opcode, number = struct.unpack("!HH", datagram[:4])
                assert opcode == DATA and len(datagram) <= 4 + blksize
                numbers.append(number)
                data += datagram[4:]
                if len(datagram) < 4 + blksize:
                    break
            client.sendto(struct.pack("!HH", ACK, numbers[-1]), addr)
            select.select([connected], [], [], 5)
            transfer.doRead()
    finally:
        client.close()
        transfer.stop()
    return bytes(data), numbers, outcomes[0], wrapped


# Windows bigger than one GSO send (64 KiB, 64 segments), ending on a short block and
# ending on an empty block.
CASES = [(1428, 64, 200 * 1428 + 77), (1428, 8, 40 * 1428), (512, 4, 3000), (8192, 8, 300000)]


@pytest.mark.parametrize("gso", [True, False], ids=["gso", "no-gso"])
@pytest.mark.parametrize("blksize, windowsize, size", CASES)
def test_windows_arrive_as_one_datagram_per_block(monkeypatch, gso, blksize, windowsize, size):
    if gso and not transfer_module.gso_supported():
        pytest.skip("this kernel has no UDP GSO")
    monkeypatch.setattr(transfer_module, "_gso", gso)
    payload = RNG.randbytes(size)
    data, numbers, outcome, sock = download(Memory(payload), blksize, windowsize)
    assert data == payload and outcome == DONE
    assert numbers == list(range(1, size // blksize + 2))
    assert bool(sock.gso_sends) == gso


def test_shared_file_windows_are_read_in_place(tmp_path):
    path = tmp_path / "kernel"
    payload = RNG.randbytes(100 * 1468 + 5)
    path.write_bytes(payload)
    cache = FileCache()
    content = cache.open(str(path))
    try:
        data, numbers, outcome, sock = download(content, 1468, 64)
    finally:
        content.release()
    assert data == payload and numbers == list(range(1, 102))
    assert sock.gso_sends or not transfer_module.gso_supported()


def test_gso_windows_over_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    payload = RNG.randbytes(70 * 1428 + 3)
    data, numbers, outcome, sock = download(Memory(payload), 1428, 16, host="::1")
    assert data == payload and outcome == DONE and numbers == list(range(1, 72))
    assert sock.gso_sends or not transfer_module.gso_supported()


def test_a_route_refusing_gso_falls_back_to_one_send_per_block(monkeypatch):
    if not transfer_module.gso_supported():
        pytest.skip("this kernel has no UDP GSO")
    payload = RNG.randbytes(30 * 1428 + 1)
    data, numbers, outcome, sock = download(Memory(payload), 1428, 8, wrap=RefusingGso)
    assert data == payload and outcome == DONE and numbers == list(range(1, 32))
    assert sock.refused == 1  # tried once, then remembered for this transfer


def test_memory_and_file_readinto_agree(tmp_path):
    payload = RNG.randbytes(5000)
    path = tmp_path / "f"
    path.write_bytes(payload)
    cache = FileCache()
    shared = cache.open(str(path))
    try:
        for content in (Memory(payload), shared):
            buffers = [bytearray(1024) for _ in range(4)]
            assert content.readinto(buffers, 4000) == 1000
            assert bytes(buffers[0][:1000]) == payload[4000:] and buffers[1] == bytearray(1024)
            assert content.readinto(buffers, 100) == 4096
            assert b"".join(buffers) == payload[100:4196]
    finally:
        shared.release()


def test_concurrent_transfers_never_share_a_port():
    # With SO_REUSEADDR set before bind(port 0), Linux may hand out a port
    # that other SO_REUSEADDR sockets hold: 1000 transfers had ~20 shared ports.
    count = 1000
    peer = ("127.0.0.1", 9)
    pairs = []
    try:
        for _ in range(count):
            pairs.append(open_sockets(socket.AF_INET, "127.0.0.1", peer))
        ports = [connected.getsockname()[1] for connected, _ in pairs]
        assert len(set(ports)) == count
        assert all(strangers.getsockname() == connected.getsockname()
                   for connected, strangers in pairs)
        # Nothing else can take a transfer's port, even with SO_REUSEADDR.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as intruder:
            intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError):
                intruder.bind(("127.0.0.1", ports[0]))
    finally:
        for pair in pairs:
            for sock in pair:
                sock.close()


@pytest.mark.parametrize("timeout, resends, ends_at", [
    (1, MAX_TRIES, 6), (5, MAX_TRIES, 30), (7, 4, STALL_LIMIT), (255, 0, STALL_LIMIT)])
def test_a_silent_client_is_given_up_within_the_stall_limit(timeout, resends, ends_at):
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.setblocking(False)
    clock, outcomes = ClockReactor(), []
    transfer = Transfer(client.getsockname(), "test", Memory(b"x" * 2000),
                        Settings(blksize=512, windowsize=1, timeout=float(timeout)),
                        None, clock, lambda done, outcome: outcomes.append(outcome))
    transfer.begin(open_sockets(socket.AF_INET, "127.0.0.1", client.getsockname()))
    try:
        while not outcomes and clock.seconds() < 2000:
            clock.advance(0.5)
        assert (outcomes, clock.seconds()) == ([FAILED], ends_at)
        received = []
        while True:
            try:
                received.append(client.recv(1000))
            except BlockingIOError:
                break
        assert received[:-1] == [received[0]] * (1 + resends)  # DATA 1, then its resends
        assert received[0][:4] == struct.pack("!HH", DATA, 1)
        assert received[-1].startswith(b"\x00\x05\x00\x00timed out")
    finally:
        transfer.stop()
        client.close()

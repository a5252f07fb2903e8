"""Shared by the TFTP tests: a repository with known files, a running
flunkymaster with TFTP on a free port, and a plain UDP socket to craft packets.

Packets are built and read here with struct, independently of the server's
codec, so that a codec bug cannot hide itself.
"""

import random
import socket
import struct

import pytest
from conftest import Appliance, copy_example, free_port

IMAGE = "tftp-test"
BOOTCONFIG = "#!ipxe\necho boot $Count of $Address\n"
RNG = random.Random(3)
FILES = {
    "small.txt": b"line one\nline two\r\nbare cr\r end\n",
    "exact512.bin": RNG.randbytes(512),
    "empty.bin": b"",
    "three.bin": RNG.randbytes(3 * 512 - 100),
    "twenty.bin": RNG.randbytes(20 * 512 - 1),
    "sub/deep.txt": b"deep\n",
    "ipxe.efi": b"ipxe.efi from static/\n",
    # Windows of 64 blocks of 1468 bytes take more than one GSO send each.
    "window.bin": RNG.randbytes(100 * 1468),
}
# What the fallback folder holds instead of the real iPXE package.
IPXE_DIR_FILES = {"undionly.kpxe": b"undionly.kpxe from the iPXE folder\n",
                  "ipxe.efi": b"ipxe.efi from the iPXE folder\n"}

RRQ, WRQ, DATA, ACK, ERROR, OACK = range(1, 7)


def make_repository(root):
    copy_example(root)
    for name, data in FILES.items():
        path = root / "static" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "static" / "escape").symlink_to("../staticVars.json")
    (root / "dynamic" / "broken.txt").write_text("value=$no_such_variable\n")
    image = root / "images" / IMAGE
    image.mkdir()
    (image / "bootconfig").write_text(BOOTCONFIG)
    (image / "status").write_text("Ready\n")
    ipxe = root.parent / "ipxe"
    ipxe.mkdir()
    for name, data in IPXE_DIR_FILES.items():
        (ipxe / name).write_bytes(data)
    return root


def start(root, *args):
    """flunkymaster serving ``root`` with TFTP on a free port (``.tftp_port``)."""
    tftp_port = free_port(socket.SOCK_DGRAM)
    server = Appliance(root, free_port(), [
        "--tftp-port", str(tftp_port), "--ipxe-dir", str(root.parent / "ipxe"), "--quiet",
        *args])
    server.tftp_port = tftp_port
    return server.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start(make_repository(tmp_path_factory.mktemp("tftp") / "repository"))
    yield running
    running.stop()


def rrq(name, mode="octet", opcode=RRQ, **options):
    """A request packet; options are sent in the order given."""
    raw = name if isinstance(name, bytes) else name.encode()
    fields = [raw, mode.encode()]
    for key, value in options.items():
        fields += [key.encode(), str(value).encode()]
    return struct.pack("!H", opcode) + b"".join(f + b"\0" for f in fields)


class Packet:
    def __init__(self, datagram, port):
        self.raw, self.port = datagram, port
        self.opcode = struct.unpack("!H", datagram[:2])[0]
        self.number = struct.unpack("!H", datagram[2:4])[0] if len(datagram) >= 4 else None
        self.payload = datagram[4:]

    @property
    def options(self):
        """An OACK's options as a dict."""
        fields = self.raw[2:].split(b"\0")[:-1]
        return {k.decode(): v.decode() for k, v in zip(fields[::2], fields[1::2])}

    @property
    def message(self):
        return self.payload.rstrip(b"\0").decode()

    def __repr__(self):
        return f"<opcode {self.opcode} #{self.number} {self.payload[:40]!r} from {self.port}>"


class Raw:
    """A TFTP client socket that sends whatever the test builds."""

    def __init__(self, server, source="127.0.0.1"):
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.sock.settimeout(10)

    def send(self, datagram, port=None):
        self.sock.sendto(datagram, ("127.0.0.1", port or self.server.tftp_port))

    def recv(self):
        datagram, addr = self.sock.recvfrom(70000)
        return Packet(datagram, addr[1])

    def ack(self, number, port):
        self.send(struct.pack("!HH", ACK, number), port)

    def request(self, name, mode="octet", **options):
        self.send(rrq(name, mode, **options))
        return self.recv()

    def download(self, name, mode="octet", **options):
        """(content, first reply) of a lockstep download driven by hand."""
        return self.fetch(rrq(name, mode, **options))

    def fetch(self, datagram):
        """(content, first reply) of the lockstep download ``datagram`` asks for."""
        self.send(datagram)
        first = reply = self.recv()
        blksize = 512
        if first.opcode == OACK:
            blksize = int(first.options.get("blksize", 512))
            self.ack(0, first.port)
            reply = self.recv()
        data = bytearray()
        while True:
            assert reply.opcode == DATA, reply
            data += reply.payload
            self.ack(reply.number, reply.port)
            if len(reply.payload) < blksize:
                return bytes(data), first
            reply = self.recv()

    def close(self):
        self.sock.close()


def first_reply(server, name, mode="octet", **options):
    """The server's first answer to a request from a fresh port; the transfer is
    then ended with an ERROR so that it cannot interfere with later requests."""
    client = Raw(server)
    try:
        reply = client.request(name, mode, **options)
        if reply.opcode != ERROR:
            client.send(struct.pack("!HH", ERROR, 0) + b"enough\0", reply.port)
        return reply
    finally:
        client.close()


@pytest.fixture
def raw(server):
    client = Raw(server)
    yield client
    client.close()


def error_of(packet):
    assert packet.opcode == ERROR, packet
    return packet.number, packet.message

"""A proxyDHCP bench: the real flunkymaster in one network namespace, raw
DHCP clients in the other, joined by a veth pair (see netns.py).

The client side is plain sockets opened inside the client namespace, so a
test sees what really went over the wire: the reply's source port, and
(through IP_PKTINFO) whether it was broadcast or unicast to us.
"""

import contextlib
import ctypes
import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from netns import linked_namespaces, sh

FLUNKYMASTER = Path(sys.executable).parent / "flunkymaster"
HTTP_PORT = 8080  # the namespace is ours alone: any port is free
IMAGE = "dhcp-test"
BROADCAST = "255.255.255.255"
IP_PKTINFO = 8  # linux/in.h; Python 3.11's socket module lacks the name
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def inside(namespace):
    """Move this thread into ``namespace`` for the block: sockets made there stay there."""
    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{namespace}") as there:
        _setns(there)
        try:
            yield
        finally:
            _setns(home)


def _setns(handle):
    if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def veth_in(namespace):
    """The name of the one veth interface in ``namespace``."""
    out = sh("ip", "-n", namespace, "-o", "link", "show", "type", "veth").stdout
    return out.split(":")[1].strip().split("@")[0]


def add_link(server_ns, client_ns, subnet):
    """Another veth pair between the two namespaces, on ``subnet``.0/24;
    returns (server_if, client_if, server_ip, client_ip). It goes when the
    namespaces are deleted."""
    tag = uuid.uuid4().hex[:6]
    server_if, client_if = f"hs2{tag}", f"hc2{tag}"
    server_ip, client_ip = f"{subnet}.1", f"{subnet}.2"
    sh("ip", "link", "add", server_if, "netns", server_ns, "type", "veth",
       "peer", "name", client_if, "netns", client_ns)
    for ns, dev, ip in ((server_ns, server_if, server_ip), (client_ns, client_if, client_ip)):
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
    return server_if, client_if, server_ip, client_ip


def make_repository(root):
    """An empty repository (made by the real ``--init``) with one valid image."""
    subprocess.run([str(FLUNKYMASTER), "--init", "--repository", str(root)], check=True,
                   capture_output=True)
    image = root / "images" / IMAGE
    image.mkdir()
    (image / "bootconfig").write_text("#!ipxe\necho $IMAGE for $MAC\nexit\n")
    (image / "status").write_text("Ready\n")
    return root


@dataclass
class Reply:
    packet: BOOTP
    source: tuple  # (ip, port) the reply came from
    destination: str  # the IP header's destination address
    port: int  # the UDP port it arrived on

    @property
    def options(self):
        """Option name (scapy's) or number -> value."""
        return {item[0]: item[1] for item in self.packet[DHCP].options
                if isinstance(item, tuple)}


class Client:
    """A UDP socket on the client side's veth, bound to ``port``, and a raw
    one to broadcast from 0.0.0.0 as firmware without an address does."""

    def __init__(self, namespace, interface, port, timeout=5.0):
        self.port = port
        self.timeout = timeout
        with inside(namespace):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        self.raw.bind((interface, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        self.sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self.sock.bind(("", port))

    def send(self, datagram, address):
        self.sock.sendto(datagram, address)

    def broadcast(self, datagram):
        self.raw.send(broadcast_frame(datagram, self.port))

    def reply_to(self, xid):
        """(the reply for ``xid``, the replies to other xids that came first).

        The server handles a socket's datagrams in order, so a request sent
        before ``xid``'s that got no reply by then never will: tests prove
        silence this way instead of by waiting.
        """
        others = []
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, ancillary, _, source = self.sock.recvmsg(2048, socket.CMSG_SPACE(12))
            except socket.timeout:
                break
            packet = BOOTP(data)
            if packet.op != 2:
                continue  # our own broadcast, looped back
            reply = Reply(packet, source, _destination(ancillary), self.port)
            if packet.xid == xid:
                return reply, others
            others.append(reply)
        raise AssertionError(f"no reply to xid {xid:#x} on port {self.port} "
                             f"(others: {[hex(r.packet.xid) for r in others]})")

    def close(self):
        self.sock.close()
        self.raw.close()


def broadcast_frame(datagram, port=68):
    """An Ethernet frame carrying a request from 0.0.0.0:``port`` to
    255.255.255.255:67, sent from the MAC in its chaddr."""
    return bytes(Ether(src=datagram[28:34].hex(":"), dst="ff:ff:ff:ff:ff:ff")
                 / IP(src="0.0.0.0", dst=BROADCAST) / UDP(sport=port, dport=67) / datagram)


def _destination(ancillary):
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            _, _, address = struct.unpack("I4s4s", data[:12])
            return socket.inet_ntoa(address)
    return None


class Lab:
    """flunkymaster as proxyDHCP in the server namespace, clients in the other.

    ``address=False`` leaves --address out (the server finds its own);
    ``second_link`` joins the namespaces a second time (``.second``: server
    and client interface and address) and routes the server's default
    route over it, while flunkymaster stays bound (--interface) to the first.
    """

    def __init__(self, tmp_path, server_args=(), address=True, second_link=False):
        self.tmp_path = tmp_path
        self.server_args = list(server_args)
        self.give_address = address
        self.second_link = second_link
        self.second = None
        self.proc = None
        self.clients = []

    @contextlib.contextmanager
    def running(self):
        with linked_namespaces() as (server_ns, client_ns, server_ip, client_ip):
            self.server_ns, self.client_ns = server_ns, client_ns
            self.server_ip, self.client_ip = server_ip, client_ip
            self.server_if, self.client_if = veth_in(server_ns), veth_in(client_ns)
            if self.second_link:
                self.second = add_link(server_ns, client_ns, "10.213.0")
                sh("ip", "-n", server_ns, "route", "add", "default", "via", self.second[3])
            self.repository = make_repository(self.tmp_path / "repository")
            self.url = f"http://{server_ip}:{HTTP_PORT}"
            try:
                self._start()
                yield self
            finally:
                for client in self.clients:
                    client.close()
                self.stop_server()

    def _start(self):
        self.stderr = open(self.tmp_path / "flunkymaster.err", "w+")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.server_ns, str(FLUNKYMASTER),
             "--repository", str(self.repository),
             *(["--address", self.server_ip] if self.give_address else []),
             "--http-port", str(HTTP_PORT), "--tftp-port", "0", "--dhcp-port", "67",
             "--pxe-port", "4011", "--interface", self.server_if, *self.server_args],
            stdout=subprocess.DEVNULL, stderr=self.stderr)
        ready = f"proxyDHCP on {self.server_if} port 4011"
        deadline = time.monotonic() + 30
        while ready not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stderr.seek(0)
                raise AssertionError(f"flunkymaster did not start: {self.stderr.read()}")
            time.sleep(0.05)

    def stop_server(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        path = self.repository / "flunky.log"
        return path.read_text() if path.exists() else ""

    def client(self, port, interface=None):
        client = Client(self.client_ns, interface or self.client_if, port)
        self.clients.append(client)
        return client

    def admin(self, method, path, body=None, parse=json.loads):
        """An admin call from loopback inside the server namespace (no credentials needed)."""
        with inside(self.server_ns):
            conn = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=10)
            conn.request(method, path, body=None if body is None else json.dumps(body))
            reply = conn.getresponse()
            data = reply.read()
            conn.close()
        assert reply.status == 200, data
        return parse(data)

    def allocate(self, mac):
        return self.admin("POST", "/ctl", {"Addresses": [mac], "Image": IMAGE})

    def fetch(self, url):
        """GET ``url`` from the client namespace, as a booted node would."""
        with inside(self.client_ns):
            conn = http.client.HTTPConnection(self.server_ip, HTTP_PORT, timeout=10)
            conn.request("GET", url.removeprefix(self.url))
            reply = conn.getresponse()
            data = reply.read()
            conn.close()
        return reply.status, data.decode()

"""The TFTP listener: parses requests and starts one Transfer per RRQ."""

import logging
import socket
import struct

from twisted.internet import udp
from twisted.internet.protocol import DatagramProtocol

from ..core.appliance import describe
from . import packets
from .options import Limits, negotiate
from .source import Refused, Source, normalise
from .transfer import DONE, PROBED, Transfer, open_sockets

log = logging.getLogger("heckle")

MODES = ("octet", "netascii")
# Each transfer holds two sockets; past this, requests are refused rather
# than letting a flood exhaust the process's descriptors. Remembered tsize
# probes (below) hold content as a transfer does and count against it too.
MAX_TRANSFERS = 1000
# Transfers one client address may run at once: a node fetches one file at
# a time, and with transfer.STALL_LIMIT a silent client holds each of its
# slots for at most a minute, so no single client can hold them all.
MAX_PER_CLIENT = 16
# How long content resolved for a tsize probe waits for the client's real
# request, so that the probe neither counts as a second fetch nor renders
# something different from what the client then downloads; at most
# MAX_PROBES are remembered (the oldest is forgotten first).
PROBE_GRACE = 10.0
MAX_PROBES = 128

# Linux numbers; Python's socket module lacks IP_PKTINFO.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
_ANCILLARY_SPACE = socket.CMSG_SPACE(20)  # in6_pktinfo; in_pktinfo is 12 bytes
# Requests read per doRead before the reactor gets its turn back.
BURST = 64


class Listener(udp.Port):
    """The request port: also reads the address each request was sent to.

    With IP_PKTINFO (IPV6_RECVPKTINFO) every datagram comes with its local
    address, so that a transfer can answer from the address the client
    asked on even when the listener is bound to all of them: a client
    ignores replies from an address it did not send to, and on a
    multi-homed host the routing table may pick another one.
    """

    def createInternetSocket(self):
        sock = super().createInternetSocket()
        try:
            if self.addressFamily == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        except OSError:  # not Linux: transfers bind to the listening address
            pass
        return sock

    def doRead(self):
        for _ in range(BURST):
            try:
                datagram, ancillary, _, addr = self.socket.recvmsg(
                    self.maxPacketSize, _ANCILLARY_SPACE)
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("tftp: cannot read a request: %s", exc.strerror)
                return
            self.protocol.datagramReceived(datagram, addr, local_address(ancillary))


def local_address(ancillary):
    """(host, IPv6 scope id) a datagram was sent to, from its IP_PKTINFO; or None."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            # struct in_pktinfo: ifindex, spec_dst (the local address; for a
            # broadcast, the receiving interface's), addr (the header's).
            return socket.inet_ntop(socket.AF_INET, data[4:8]), 0
        if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= 20:
            # struct in6_pktinfo: addr, ifindex.
            return (socket.inet_ntop(socket.AF_INET6, data[:16]),
                    struct.unpack("=I", data[16:20])[0])
    return None


def pktinfo(local):
    """Ancillary data for sendmsg that sends from ``local``, or None to let routing pick."""
    if local is None:
        return None
    host, scope = local
    if ":" not in host:
        return (socket.IPPROTO_IP, IP_PKTINFO,
                struct.pack("=I4s4s", 0, socket.inet_pton(socket.AF_INET, host), bytes(4)))
    return (socket.IPPROTO_IPV6, IPV6_PKTINFO,
            socket.inet_pton(socket.AF_INET6, host) + struct.pack("=I", scope))


class TftpServer(DatagramProtocol):
    def __init__(self, source, reactor, limits=Limits(), interface="",
                 max_transfers=MAX_TRANSFERS):
        self.source = source
        self.metrics = source.appliance.metrics
        self.reactor = reactor
        self.limits = limits
        self.interface = interface
        self.family = socket.AF_INET6 if ":" in interface else socket.AF_INET
        self.max_transfers = max_transfers
        self.active = {}  # client address (its TID) -> Transfer
        self.per_client = {}  # client IP -> number of its transfers in self.active
        self.probed = {}  # (ip, normalised filename, mode) -> (content, expiry DelayedCall)

    def stopProtocol(self):
        for transfer in list(self.active.values()):
            transfer.stop()
        for key in list(self.probed):
            self._forget(key)

    def datagramReceived(self, datagram, addr, local=None):
        """A request from ``addr``, sent to ``local`` ((host, scope id), if known)."""
        try:
            self._request(datagram, addr[:2], addr, local)
        except Exception:
            log.exception("tftp: internal error on a request from %s", addr[0])
            self._reply(packets.error(packets.NOT_DEFINED, "internal error"), addr, local)

    def _request(self, datagram, tid, addr, local):
        if packets.opcode(datagram) == packets.ERROR:
            return  # never answer an error with an error
        try:
            request = packets.parse_request(datagram)
        except packets.Malformed as exc:
            self._refuse(addr, local, packets.ILLEGAL_OPERATION, str(exc), "?")
            return
        name, mode = request.filename, request.mode
        if request.opcode == packets.WRQ:
            self._refuse(addr, local, packets.ACCESS_VIOLATION, "this server is read-only", name)
        elif self._retransmitted(tid, datagram):
            pass  # the running transfer answers it
        elif mode not in MODES:
            self._refuse(addr, local, packets.ILLEGAL_OPERATION, f"unsupported mode {mode!r}", name)
        elif self.per_client.get(tid[0], 0) >= MAX_PER_CLIENT:
            self._refuse(addr, local, packets.NOT_DEFINED,
                         f"too many transfers from {tid[0]}, try again later", name)
        elif not self._room():
            self._refuse(addr, local, packets.NOT_DEFINED, "server busy, try again later", name)
        else:
            try:
                content = self._content(tid[0], name, mode)
            except Refused as exc:
                self._refuse(addr, local, exc.code, str(exc), name)
                return
            self._start(tid, addr, local, name, mode, request.options, content, datagram)

    def _retransmitted(self, tid, datagram):
        """Whether a request from the TID of a running transfer repeats the one
        that started it; if it does not, that transfer is over.

        The transfer first reads what the client sent it before this request:
        a client that ended a tsize probe with ERROR 8 has no transfer left.
        A copy of the request is a retransmission only while the client has
        acknowledged no more than the transfer's first packet; anything else
        from that TID means the client gave up on the transfer (or finished
        it, its last ACK lost) and wants a new one, which it gets: the old
        transfer ends without a word.
        """
        transfer = self.active.get(tid)
        if transfer is None:
            return False
        transfer.doRead()
        if tid not in self.active:
            return False
        if datagram == transfer.request and not transfer.answered():
            return True
        transfer.abandon()
        return False

    def _room(self):
        """Whether a transfer may start, forgetting a remembered probe if need be."""
        if len(self.active) + len(self.probed) < self.max_transfers:
            return True
        if self.probed:
            self._forget(next(iter(self.probed)))
            return True
        return False

    def _content(self, ip, name, mode):
        remembered = self.probed.pop((ip, normalise(name), mode), None)
        if remembered is None:
            return self.source.open(ip, name, mode)
        content, expiry = remembered
        expiry.cancel()
        return content

    def _start(self, tid, addr, local, name, mode, options, content, datagram):
        settings, accepted = negotiate(options, content.size, self.limits)
        oack = packets.oack(accepted) if accepted else None
        label = f"{name} to {describe(tid[0], None)}"
        transfer = Transfer(tid, label, content, settings, oack, self.reactor,
                            lambda done, outcome: self._ended(done, name, mode, outcome),
                            request=datagram)
        host, scope = local or (self.interface, 0)
        try:
            sockets = open_sockets(self.family, host, addr, scope)
        except OSError as exc:  # e.g. out of descriptors
            content.release()
            log.error("tftp: cannot open a port for %s: %s", label, exc)
            self._reply(packets.error(packets.NOT_DEFINED, "server busy, try again later"),
                        addr, local)
            return
        self.active[tid] = transfer
        self.per_client[tid[0]] = self.per_client.get(tid[0], 0) + 1
        self.metrics.inc("heckle_tftp_transfers_total", result="started")
        transfer.begin(sockets)

    def _ended(self, transfer, name, mode, outcome):
        ip = transfer.peer[0]
        del self.active[transfer.peer]
        self.per_client[ip] -= 1
        if not self.per_client[ip]:
            del self.per_client[ip]
        if outcome == DONE:
            self.metrics.inc("heckle_tftp_transfers_total", result="completed")
            self.metrics.inc("heckle_requests_total", protocol="tftp", code="sent")
            self.metrics.inc("heckle_bytes_sent_total", transfer.content.size, protocol="tftp")
        else:
            self.metrics.inc("heckle_tftp_transfers_total", result=outcome)
        if outcome != PROBED:
            transfer.content.release()
            return
        key = (ip, normalise(name), mode)
        self._forget(key)
        if len(self.probed) >= MAX_PROBES:
            self._forget(next(iter(self.probed)))  # the oldest
        self.probed[key] = (transfer.content,
                            self.reactor.callLater(PROBE_GRACE, self._forget, key))

    def _forget(self, key):
        content, expiry = self.probed.pop(key, (None, None))
        if content is not None:
            if expiry.active():
                expiry.cancel()
            content.release()

    def _refuse(self, addr, local, code, message, name):
        log.warning("tftp: refused %s to %s: %s", name, describe(addr[0], None), message)
        self.metrics.inc("heckle_requests_total", protocol="tftp", code=f"error {code}")
        self._reply(packets.error(code, message), addr, local)

    def _reply(self, datagram, addr, local=None):
        """Answer from the listener, from the address ``addr`` sent to if known."""
        try:
            source = pktinfo(local)
            if source is None:
                self.transport.write(datagram, addr)
            else:
                self.transport.socket.sendmsg([datagram], [source], 0, addr)
        except Exception as exc:
            log.warning("tftp: cannot answer %s: %s", addr[0], exc)


def listen_tftp(reactor, appliance, port, interface="", max_blksize=Limits.max_blksize):
    """Bind the TFTP listener; returns the listening port."""
    server = TftpServer(Source(appliance), reactor,
                        Limits(max_blksize=max_blksize), interface)
    listener = Listener(port, server, interface, reactor=reactor)
    listener.startListening()
    return listener

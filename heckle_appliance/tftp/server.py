"""The TFTP listener: parses requests and starts one Transfer per RRQ."""

import logging
import socket

from twisted.internet.protocol import DatagramProtocol

from ..core.appliance import describe
from . import packets
from .options import Limits, negotiate
from .source import Refused, Source
from .transfer import DONE, PROBED, Transfer, open_sockets

log = logging.getLogger("heckle")

MODES = ("octet", "netascii")
# Each transfer holds two sockets; past this, requests are refused rather
# than letting a flood exhaust the process's descriptors.
MAX_TRANSFERS = 1000
# How long content resolved for a tsize probe waits for the client's real
# request, so that the probe neither counts as a second fetch nor renders
# something different from what the client then downloads.
PROBE_GRACE = 10.0


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
        self.probed = {}  # (ip, filename, mode) -> (content, expiry DelayedCall)

    def stopProtocol(self):
        for transfer in list(self.active.values()):
            transfer.stop()
        for key in list(self.probed):
            self._forget(key)

    def datagramReceived(self, datagram, addr):
        try:
            self._request(datagram, addr)
        except Exception:
            log.exception("tftp: internal error on a request from %s", addr[0])
            self._reply(packets.error(packets.NOT_DEFINED, "internal error"), addr)

    def _request(self, datagram, addr):
        if packets.opcode(datagram) == packets.ERROR:
            return  # never answer an error with an error
        try:
            request = packets.parse_request(datagram)
        except packets.Malformed as exc:
            self._refuse(addr, packets.ILLEGAL_OPERATION, str(exc), "?")
            return
        name, mode = request.filename, request.mode
        if request.opcode == packets.WRQ:
            self._refuse(addr, packets.ACCESS_VIOLATION, "this server is read-only", name)
        elif self._running(addr):
            pass  # the client resent its RRQ: the running transfer answers it
        elif mode not in MODES:
            self._refuse(addr, packets.ILLEGAL_OPERATION, f"unsupported mode {mode!r}", name)
        elif len(self.active) >= self.max_transfers:
            self._refuse(addr, packets.NOT_DEFINED, "server busy, try again later", name)
        else:
            try:
                content = self._content(addr[0], name, mode)
            except Refused as exc:
                self._refuse(addr, exc.code, str(exc), name)
                return
            self._start(addr, name, mode, request.options, content)

    def _running(self, addr):
        """Whether a transfer to ``addr`` is still going.

        It first reads what the client sent it before this request: a client
        that ended a tsize probe with ERROR 8 and asks again from the same
        port must get a new transfer, not be taken for a retransmission.
        """
        transfer = self.active.get(addr)
        if transfer is None:
            return False
        transfer.doRead()
        return addr in self.active

    def _content(self, ip, name, mode):
        remembered = self.probed.pop((ip, name, mode), None)
        if remembered is None:
            return self.source.open(ip, name, mode)
        content, expiry = remembered
        expiry.cancel()
        return content

    def _start(self, addr, name, mode, options, content):
        settings, accepted = negotiate(options, content.size, self.limits)
        oack = packets.oack(accepted) if accepted else None
        label = f"{name} to {describe(addr[0], None)}"
        transfer = Transfer(addr, label, content, settings, oack, self.reactor,
                            lambda done, outcome: self._ended(done, name, mode, outcome))
        try:
            sockets = open_sockets(self.family, self.interface, addr)
        except OSError as exc:  # e.g. out of descriptors
            content.release()
            log.error("tftp: cannot open a port for %s: %s", label, exc)
            self._reply(packets.error(packets.NOT_DEFINED, "server busy, try again later"), addr)
            return
        self.active[addr] = transfer
        self.metrics.inc("heckle_tftp_transfers_total", result="started")
        transfer.begin(sockets)

    def _ended(self, transfer, name, mode, outcome):
        del self.active[transfer.peer]
        if outcome == DONE:
            self.metrics.inc("heckle_tftp_transfers_total", result="completed")
            self.metrics.inc("heckle_requests_total", protocol="tftp", code="sent")
            self.metrics.inc("heckle_bytes_sent_total", transfer.content.size, protocol="tftp")
        else:
            self.metrics.inc("heckle_tftp_transfers_total", result=outcome)
        if outcome != PROBED:
            transfer.content.release()
            return
        key = (transfer.peer[0], name, mode)
        self._forget(key)
        self.probed[key] = (transfer.content,
                            self.reactor.callLater(PROBE_GRACE, self._forget, key))

    def _forget(self, key):
        content, expiry = self.probed.pop(key, (None, None))
        if content is not None:
            if expiry.active():
                expiry.cancel()
            content.release()

    def _refuse(self, addr, code, message, name):
        log.warning("tftp: refused %s to %s: %s", name, describe(addr[0], None), message)
        self.metrics.inc("heckle_requests_total", protocol="tftp", code=f"error {code}")
        self._reply(packets.error(code, message), addr)

    def _reply(self, datagram, addr):
        try:
            self.transport.write(datagram, addr)
        except Exception as exc:
            log.warning("tftp: cannot answer %s: %s", addr[0], exc)


def listen_tftp(reactor, appliance, port, interface="", max_blksize=Limits.max_blksize):
    """Bind the TFTP listener; returns the listening port."""
    server = TftpServer(Source(appliance), reactor,
                        Limits(max_blksize=max_blksize), interface)
    return reactor.listenUDP(port, server, interface=interface)

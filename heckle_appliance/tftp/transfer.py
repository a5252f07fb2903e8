"""One read transfer, from its own port (its TID), lockstep or windowed.

Blocks are numbered absolutely here (the OACK counts as block 0) and only
the wire carries them modulo 2**16, so files past 65535 blocks wrap cleanly.
Each DATA packet is a packed header plus one pread: no packet objects, no
per-block logging, and one timer per timeout period instead of one per block
(it checks whether ACKs have moved the window since it last fired). A
transfer holds no data beyond the datagram it is sending.

A window goes out in one send where the kernel does UDP GSO: its blocks
are read with one preadv into a scratch buffer shared by all transfers,
between the headers packed there, and the kernel cuts it into datagrams.

Speed comes from the socket layout. The transfer's socket is connected to
the client, so the kernel filters by TID and the hot loop uses recv/send
(no address objects per packet, cheaper syscalls); a second socket bound to
the same port gets only what the connected one does not match, i.e.
strangers, and answers them ERROR 5 (see open_sockets for how the two share
a port that nothing else can have). Both are reactor readers of
their own rather than twisted udp.Ports, whose per-datagram overhead was as
large as all of our own work; doRead answers a run of ACKs in one loop.
That loop matters: when the client shares our CPU it usually answers before
we look again, so about nine lockstep blocks in ten are sent without a trip
through the reactor (returning after each window instead cost a fifth of
the lockstep throughput).
"""

import errno
import logging
import socket
import struct

from twisted.internet.interfaces import IReadDescriptor
from zope.interface import implementer

from . import packets
from .packets import ACK, DATA, ERROR_OPCODE, HEADER

log = logging.getLogger("heckle")

MAX_TRIES = 5  # retransmissions of one window before giving up
# Seconds without progress after which a transfer is given up whatever
# timeout the client negotiated (RFC 2349 allows up to 255 s: with MAX_TRIES
# that would be 6 x 255 s, 25 minutes, of a silent client holding a slot).
STALL_LIMIT = 30.0
# Datagrams handled per doRead before the reactor gets its turn back, so a
# fast client cannot starve the other transfers.
BURST = 64
# Clients only send ACKs and ERRORs here; anything longer is illegal anyway.
MAX_DATAGRAM = 1024
# Where every transfer receives (recv_into: no bytes object per ACK); a
# datagram is dealt with before the next one is read.
_received = bytearray(MAX_DATAGRAM)

DONE, PROBED, FAILED, ABANDONED = "done", "probed", "failed", "abandoned"

pack_header = HEADER.pack
pack_header_into = HEADER.pack_into

# Linux UDP GSO (kernel 4.18+): a send carrying UDP_SEGMENT as ancillary
# data leaves as one datagram per segment of that size (the last one may be
# shorter), so a window of blocks costs one syscall. Only window sends carry
# it: OACKs and ERRORs go out as they are.
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
SOL_UDP = getattr(socket, "SOL_UDP", 17)
GSO_MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS of the oldest kernels that have GSO
# Room for one send: the IP length field caps a datagram (or a GSO super-
# datagram) at 64 KiB including the IPv4/IPv6 and UDP headers.
GSO_MAX_BYTES = 65535 - 48 - 8
_gso = None  # whether this kernel does UDP GSO, probed on first use
_gso_refusal_logged = False


def gso_supported():
    """Probe once: a kernel without UDP GSO refuses the socket option."""
    global _gso
    if _gso is None:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.setsockopt(SOL_UDP, UDP_SEGMENT, 1000)
            _gso = True
        except (OSError, AttributeError):
            _gso = False
    return _gso


# One scratch buffer for every transfer's windows: a window is built and
# sent (copied by the kernel) before the reactor runs anything else, so no
# transfer holds window-sized memory of its own.
_scratch = memoryview(bytearray(GSO_MAX_BYTES))
_layouts = {}  # (segment size, blocks per send) -> views of the data slots


def _gso_slots(segment, per_send):
    slots = _layouts.get((segment, per_send))
    if slots is None:
        if len(_layouts) >= 16:
            _layouts.clear()  # odd block sizes: running transfers keep theirs
        slots = _layouts[segment, per_send] = [
            _scratch[i * segment + 4:(i + 1) * segment] for i in range(per_send)]
    return slots


def open_sockets(family, host, peer, scope_id=0):
    """(connected socket, stranger socket) sharing one fresh port on ``host``.

    The connected socket is bound without SO_REUSEADDR, so the kernel picks
    a port nothing else holds (bound with the flag, it may pick one that
    other SO_REUSEADDR sockets hold, such as another transfer's). The flag is
    then set on both just long enough for the twin to bind the same port,
    and cleared: while it is off, no later socket can bind that port.
    ``scope_id`` is for an IPv6 link-local ``host``.
    """
    reuse = (socket.SOL_SOCKET, socket.SO_REUSEADDR)
    connected = socket.socket(family, socket.SOCK_DGRAM)
    strangers = None
    try:
        connected.setblocking(False)
        connected.bind((host, 0) if family == socket.AF_INET else (host, 0, 0, scope_id))
        connected.setsockopt(*reuse, 1)
        strangers = socket.socket(family, socket.SOCK_DGRAM)
        strangers.setblocking(False)
        strangers.setsockopt(*reuse, 1)
        strangers.bind(connected.getsockname())
        for sock in (connected, strangers):
            sock.setsockopt(*reuse, 0)
        connected.connect(peer)
    except OSError:
        for sock in (connected, strangers):
            if sock is not None:
                sock.close()
        raise
    return connected, strangers


@implementer(IReadDescriptor)
class Transfer:
    __slots__ = ("peer", "label", "content", "blksize", "window", "timeout", "last_block",
                 "acked", "sent", "tries", "stalled", "request", "_oack", "_progress_seen",
                 "_period", "_reactor", "_on_end", "_socket", "_strangers", "_send", "_read",
                 "_timer", "_gso")
    contextFree = True  # logs through the stdlib only: see heckle_appliance.reactor

    def __init__(self, peer, label, content, settings, oack, reactor, on_end, request=None):
        self.peer = peer
        self.request = request  # the datagram that asked for this transfer
        self.label = label  # "<file> to <node>", for the log
        self.content = content
        self.blksize = settings.blksize
        self.window = settings.windowsize
        self.timeout = settings.timeout
        # The last block is the first one shorter than blksize, empty if need be.
        self.last_block = content.size // self.blksize + 1
        self._oack = oack
        self.acked = -1 if oack else 0
        self.sent = 0
        self.tries = 0
        self.stalled = 0.0  # seconds the timer has seen no progress
        self._period = self.timeout  # the delay the timer was last set for
        self._progress_seen = None  # self.acked when the timer last looked
        self._reactor = reactor
        self._on_end = on_end
        self._socket = self._strangers = self._send = self._read = None
        self._timer = None
        # (blocks per send, data slots in the scratch buffer, sendmsg ancillary
        # data) while windows go out by GSO, else None.
        self._gso = None

    def begin(self, sockets):
        """Start sending; ``sockets`` come from open_sockets() for our peer."""
        self._socket, strangers = sockets
        self._strangers = Strangers(strangers, self.label)
        self._send, self._read = self._socket.send, self.content.read
        self._gso = self._gso_layout()
        self._reactor.addReader(self)
        self._reactor.addReader(self._strangers)
        self._send_window()
        if self._socket is not None:
            self._progress_seen = self.acked
            self._set_timer()

    # IReadDescriptor

    def fileno(self):
        return self._socket.fileno() if self._socket is not None else -1

    def logPrefix(self):
        return "tftp"

    def connectionLost(self, reason):
        # The reactor saw EPOLLERR: on a connected UDP socket, an ICMP error
        # such as port unreachable, i.e. the client has gone.
        self._fail("the client went away")

    def doRead(self):
        recv, received = self._socket.recv_into, _received
        # Lockstep sends its next block right here: that path runs once per
        # block, so it is kept free of method calls and attribute lookups.
        lockstep = self.window == 1
        send, read, blksize = self._send, self._read, self.blksize
        try:
            for _ in range(BURST):
                length = recv(received)
                if length < 4 or received[1] != ACK or received[0]:
                    self._unexpected(bytes(received[:length]))
                    if self._socket is None:
                        return
                    continue
                acked = self.acked
                ahead = ((received[2] << 8 | received[3]) - acked) & 0xFFFF
                if ahead == 0 or ahead > self.sent - acked:
                    # A duplicate or stale ACK (or one after the end): resending
                    # now would double every later block (Sorcerer's Apprentice);
                    # the timer alone decides.
                    continue
                self.acked = acked = acked + ahead
                if acked == self.last_block:
                    log.info("tftp: sent %s (%d bytes)", self.label, self.content.size)
                    self._end(DONE)
                    return
                if lockstep:
                    # As _send_window does for a window of one; if the socket
                    # buffer is full, the timer resends.
                    send(pack_header(DATA, (acked + 1) & 0xFFFF) + read(blksize, acked * blksize))
                    self.sent = acked + 1
                else:
                    self._send_window()
        except BlockingIOError:
            pass  # read everything there was
        except OSError as exc:  # ICMP port unreachable: the client is gone
            self._fail(f"the client went away ({exc.strerror})")
        except Exception:
            log.exception("tftp: %s: internal error", self.label)
            self._abort(packets.NOT_DEFINED, "internal error", "internal error")

    def _unexpected(self, datagram):
        if datagram[:2] == ERROR_OPCODE:
            self._client_error(datagram)
        else:
            self._abort(packets.ILLEGAL_OPERATION, "expected an ACK",
                        f"illegal packet from the client ({len(datagram)} bytes, "
                        f"opcode {packets.opcode(datagram)})")

    def _gso_layout(self):
        """What _send_segments needs, or None where windows go a block per send."""
        segment = self.blksize + 4
        per_send = min(self.window, GSO_MAX_SEGMENTS, GSO_MAX_BYTES // segment)
        if per_send < 2 or not gso_supported() or not hasattr(self.content, "readinto"):
            return None
        return (per_send, _gso_slots(segment, per_send),
                [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", segment))])

    def _send_window(self):
        """(Re)send what follows the last ACK: the OACK, or up to a window of blocks."""
        number = self.acked
        if number < 0:
            self._send_control(self._oack)
            return
        last = number + self.window
        if last > self.last_block:
            last = self.last_block
        read, send, blksize = self._read, self._send, self.blksize
        try:
            if self._gso is not None:
                number = self._send_segments(number, last)
            while number < last:
                send(pack_header(DATA, (number + 1) & 0xFFFF) + read(blksize, number * blksize))
                number += 1
        except BlockingIOError:
            pass  # socket buffer full (a big window): the rest goes when the timer fires
        except OSError as exc:
            self._fail(f"cannot send: {exc.strerror}")
            return
        self.sent = number

    def _send_segments(self, number, last):
        """Send blocks number+1..last a GSO batch at a time; returns how far it got.

        Each batch is laid out in the scratch buffer as header+block segments,
        the blocks read by one preadv straight into place. A short read (the
        file shrank under us) or a route that refuses GSO (segment over the
        MTU: EINVAL; no checksum offload: EIO) hands the rest of this
        transfer to the one-datagram-per-block path.
        """
        per_send, slots, ancillary = self._gso
        blksize, size = self.blksize, self.content.size
        segment = blksize + 4
        readinto, sendmsg = self.content.readinto, self._socket.sendmsg
        while number < last:
            count = last - number
            if count > per_send:
                count = per_send
            offset = number * blksize
            expected = size - offset
            if expected > count * blksize:
                expected = count * blksize
            for i in range(count):
                pack_header_into(_scratch, i * segment, DATA, (number + 1 + i) & 0xFFFF)
            if readinto(slots if count == per_send else slots[:count], offset) != expected:
                self._gso = None
                return number
            try:
                sendmsg([_scratch[:expected + 4 * count]], ancillary)
            except BlockingIOError:
                return number  # the per-block path finds the buffer full too
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.EIO, errno.EMSGSIZE):
                    raise
                global _gso_refusal_logged
                if not _gso_refusal_logged:
                    _gso_refusal_logged = True
                    log.info("tftp: %s: no UDP GSO on this route (%s); such windows go "
                             "one datagram per block", self.label, exc.strerror)
                self._gso = None
                return number
            number += count
        return number

    def _set_timer(self):
        # Never past STALL_LIMIT of silence, whatever the negotiated timeout.
        self._period = min(self.timeout, STALL_LIMIT - self.stalled)
        self._timer = self._reactor.callLater(self._period, self._expired)

    def _expired(self):
        """Once per timeout: resend the window if no ACK has moved it since last time.

        Looking at progress here, rather than timestamping every send, keeps
        the clock off the per-block path; a lost block is resent after one
        to two timeouts. The transfer is given up after MAX_TRIES resends or
        STALL_LIMIT (30) seconds without progress, whichever comes first;
        as silence is counted from the first tick that sees none, a silent
        client holds its transfer at most one timeout period longer, so
        never more than 2 x STALL_LIMIT (60 s), however long its timeout.
        """
        if self.acked != self._progress_seen:
            self._progress_seen = self.acked
            self.tries = 0
            self.stalled = 0.0
        else:
            self.tries += 1
            self.stalled += self._period
            if self.tries > MAX_TRIES or self.stalled >= STALL_LIMIT:
                self._abort(packets.NOT_DEFINED, "timed out",
                            f"no answer after {self.tries - 1} retransmissions in "
                            f"{self.stalled:g} s (block {self.acked + 1} of {self.last_block})")
                return
            self._send_window()
        if self._socket is not None:
            self._set_timer()

    def answered(self):
        """Whether the client has acknowledged more than our first packet.

        A copy of the request that started the transfer can still be its
        retransmission until then (sent before our first packet arrived and
        read after the ACK for it); past that, it is a new request.
        """
        return self.acked > (0 if self._oack else 1)

    def _client_error(self, datagram):
        try:
            code, message = packets.parse_error(datagram)
        except packets.Malformed as exc:
            code, message = None, str(exc)
        if code == packets.OPTION_REFUSED and self.acked < 0:
            # A client that only wanted tsize, or refused our OACK: it asks again.
            self._end(PROBED)
            return
        log.warning("tftp: %s: the client aborted at block %d (error %s: %s)",
                    self.label, self.acked + 1, code, message)
        self._end(FAILED)

    def _abort(self, code, message, cause):
        if self._socket is not None:
            log.warning("tftp: %s: %s", self.label, cause)
            self._send_control(packets.error(code, message))
            self._end(FAILED)

    def _fail(self, cause):
        if self._socket is not None:
            log.warning("tftp: %s: %s", self.label, cause)
            self._end(FAILED)

    def _send_control(self, datagram):
        """Send an OACK or ERROR; a failure here only gets logged."""
        try:
            self._socket.send(datagram)
        except OSError as exc:
            log.warning("tftp: %s: cannot send: %s", self.label, exc.strerror)

    def _end(self, outcome):
        if self._socket is None:
            return
        self.sent = self.acked  # every later ACK is now stale
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        for reader in (self, self._strangers):
            self._reactor.removeReader(reader)
        self._strangers.close()
        self._socket.close()
        self._socket = None
        self._on_end(self, outcome)

    def stop(self):
        """End the transfer without a word to the client (the service is stopping)."""
        self._end(FAILED)

    def abandon(self):
        """End the transfer without a word: its client has sent a new request.

        An ERROR from this port could be taken by the client for the answer
        to its new request, which has no TID yet.
        """
        if self._socket is not None:
            log.info("tftp: %s: the client moved on to a new request at block %d of %d",
                     self.label, self.acked + 1, self.last_block)
            self._end(ABANDONED)


@implementer(IReadDescriptor)
class Strangers:
    """The transfer port's unconnected twin: answers other TIDs with ERROR 5."""

    contextFree = True

    def __init__(self, sock, label):
        self._socket = sock
        self.label = label

    def fileno(self):
        return self._socket.fileno()

    def logPrefix(self):
        return "tftp"

    def connectionLost(self, reason):
        pass  # the transfer closes us

    def doRead(self):
        for _ in range(BURST):
            try:
                datagram, addr = self._socket.recvfrom(MAX_DATAGRAM)
                if datagram[:2] != ERROR_OPCODE:  # never answer an error with an error
                    self._socket.sendto(
                        packets.error(packets.UNKNOWN_TID, "unknown transfer ID"), addr)
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("tftp: %s: a stranger's packet: %s", self.label, exc.strerror)
                return

    def close(self):
        self._socket.close()

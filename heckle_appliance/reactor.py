"""Twisted's epoll reactor, without a per-event cost that TFTP lockstep feels.

The epoll reactor hands every ready descriptor to ``log.callWithLogger``,
which sets up a legacy logging context (the ``system`` field of whatever the
descriptor logs through twisted.python.log) around the read. A lockstep
TFTP transfer can wake the reactor once per 1.4 KB block, and then that
context is a fair share of the work per block: on loopback, a bare Twisted
responder reached 0.84x tftpd-hpa through it and 0.92x without it (our
transfers, which often answer several ACKs per wake-up, gain about 5%). Descriptors that log only through the stdlib say so with a
true ``contextFree`` attribute and are dispatched directly; every other
keeps Twisted's context.

``flunkymaster`` installs this reactor; under twistd it is ``-r heckle``.
"""

from twisted.internet import epollreactor
from twisted.python import log


class HeckleReactor(epollreactor.EPollReactor):
    def doPoll(self, timeout):
        try:
            events = self._poller.poll(-1 if timeout is None else timeout,
                                       len(self._selectables))
        except InterruptedError:
            return
        dispatch, selectables = self._doReadOrWrite, self._selectables
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            if getattr(selectable, "contextFree", False):
                try:
                    dispatch(selectable, fd, event)
                except Exception:
                    log.err(None, "unhandled error dispatching to a contextFree descriptor")
            else:
                log.callWithLogger(selectable, dispatch, selectable, fd, event)

    doIteration = doPoll


def install():
    """Install HeckleReactor as the global reactor and return it."""
    from twisted.internet.main import installReactor

    reactor = HeckleReactor()
    installReactor(reactor)
    return reactor

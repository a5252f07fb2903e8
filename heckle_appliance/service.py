"""Wires the core and the protocol adapters onto one reactor.

The same service backs the ``flunkymaster`` command and ``twistd heckle``.
Ports are bound in privilegedStartService, so twistd can bind low ports as
root before it drops privileges.
"""

import logging
import socket
from dataclasses import dataclass

from twisted.application import service
from twisted.internet import defer

from .core.appliance import Appliance
from .core.eventlog import close_event_log, open_event_log
from .core.repository import Repository
from .http.auth import read_credentials
from .http.site import make_site

log = logging.getLogger("heckle")


@dataclass
class Config:
    repository: str = "repository"
    address: str | None = None  # what nodes are told to reach us on
    listen: str = ""  # where our sockets bind; "" = every address
    http_port: int = 8080  # 0 disables
    credentials: str | None = None
    inactivity_timeout: float = 300.0
    echo_log: bool = True


def primary_address():
    """The address of the interface holding the default route (no packet is sent)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: any routable address will do
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def base_url(address, port):
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


class ApplianceService(service.Service):
    def __init__(self, config, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.reactor = reactor
        self.address = config.address or primary_address()
        self.appliance = None
        self.ports = []

    def privilegedStartService(self):
        """Start the core and bind every port; raises with a clear message on failure."""
        config = self.config
        repository = Repository(config.repository)
        repository.check()
        credentials = read_credentials(config.credentials) if config.credentials else None
        open_event_log(repository.log_path, echo=config.echo_log)
        self.appliance = Appliance(repository, base_url(self.address, config.http_port),
                                   self.reactor.callLater,
                                   inactivity_limit=config.inactivity_timeout)
        self.appliance.start()
        try:
            if config.http_port:
                self.ports.append(self.reactor.listenTCP(
                    config.http_port, make_site(self.appliance, credentials),
                    interface=config.listen))
                log.info("HTTP on %s port %d", config.listen or "all addresses", config.http_port)
        except Exception:
            self._close()
            raise
        super().privilegedStartService()

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        yield defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in self.ports])
        self.ports = []
        self._close()

    def _close(self):
        for port in self.ports:
            port.stopListening()
        self.ports = []
        if self.appliance is not None:
            self.appliance.stop()
            self.appliance = None
        close_event_log()

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
from .dhcp.server import start_proxy_dhcp
from .http.auth import read_credentials
from .http.site import make_site
from .tftp.options import SAFE_BLKSIZE
from .tftp.server import listen_tftp

log = logging.getLogger("heckle")


@dataclass
class Config:
    repository: str = "repository"
    address: str | None = None  # what nodes are told to reach us on
    listen: str = ""  # where our sockets bind; "" = every address
    http_port: int = 8080  # 0 disables
    tftp_port: int = 69  # 0 disables
    ipxe_dir: str = "/usr/lib/ipxe"  # iPXE binaries not in static/ come from here
    tftp_max_blksize: int = SAFE_BLKSIZE
    credentials: str | None = None
    inactivity_timeout: float = 300.0
    echo_log: bool = True
    dhcp_port: int = 67  # proxyDHCP; 0 disables
    pxe_port: int = 4011  # PXE boot-server requests; 0 disables
    interface: str | None = None  # bind the DHCP sockets to this interface only
    dhcp_known_only: bool = False  # answer only MACs allocated here
    efi_binary: str = "ipxe.efi"  # or snponly.efi, for UEFI clients


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
                                   inactivity_limit=config.inactivity_timeout,
                                   ipxe_dir=config.ipxe_dir)
        self.appliance.start()
        try:
            if config.http_port:
                self.ports.append(self.reactor.listenTCP(
                    config.http_port, make_site(self.appliance, credentials),
                    interface=config.listen))
                log.info("HTTP on %s port %d", config.listen or "all addresses", config.http_port)
            if config.tftp_port:
                self.ports.append(listen_tftp(
                    self.reactor, self.appliance, config.tftp_port, config.listen,
                    config.tftp_max_blksize))
                log.info("TFTP on %s port %d", config.listen or "all addresses", config.tftp_port)
            if (config.dhcp_port or config.pxe_port) and not config.http_port:
                log.warning("proxyDHCP is on but HTTP is off: iPXE will be sent a "
                            "bootconfig URL nothing serves")
            for port in start_proxy_dhcp(self.reactor, self.appliance, self.address, config):
                self.ports.append(port)
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

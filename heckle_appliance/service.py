"""Wires the core and the protocol adapters onto one reactor.

The same service backs the ``flunkymaster`` command and ``twistd heckle``.
Ports are bound in privilegedStartService, so twistd can bind low ports as
root before it drops privileges.
"""

import errno
import ipaddress
import logging
import socket
from dataclasses import dataclass

from twisted.application import service
from twisted.internet import defer
from twisted.internet.error import CannotListenError

from .core.appliance import Appliance
from .core.eventlog import close_event_log, open_event_log
from .core.checkpoint import CheckpointError
from .core.repository import Repository, RepositoryError
from .dhcp.server import interface_address, listen_proxy_dhcp, no_such_interface
from .http.auth import CredentialsError, read_credentials
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
    echo_log: object = True  # True: stderr; or a logging.Handler; False: flunky.log only
    dhcp_port: int = 67  # proxyDHCP; 0 disables
    pxe_port: int = 4011  # PXE boot-server requests; 0 disables
    interface: str | None = None  # bind the DHCP sockets to this interface only
    dhcp_known_only: bool = False  # answer only MACs allocated here
    efi_binary: str = "ipxe.efi"  # or snponly.efi, for UEFI clients
    boot_file_on_4011: bool = False  # PXE offers name no file: clients ask on 4011
    log_level: str = "info"  # flunky.log's threshold: debug, info or warning


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


def advertised_address(config):
    """What nodes are told to reach us on: --address, else the IPv4 address
    of --interface, else that of the default-route interface. Loopback is
    refused while proxyDHCP is on: nodes would be sent to boot from themselves."""
    address = config.address
    if address is None and config.interface:
        try:
            address = interface_address(config.interface)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise StartError(no_such_interface(config.interface)) from None
            raise StartError(f"cannot find the IPv4 address of interface {config.interface}: "
                             f"{exc.strerror} (--address IP gives the address nodes reach "
                             f"us on)") from None
    elif address is None:
        address = primary_address()
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = False
    if loopback and (config.dhcp_port or config.pxe_port):
        raise StartError(f"proxyDHCP would tell nodes to boot from {address}, a loopback "
                         f"address: --address IP gives the address nodes reach us on "
                         f"(or --interface IF, its address)")
    return address


def base_url(address, port):
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


class StartError(Exception):
    """The appliance cannot start; the message names the cause and the way out."""


class ApplianceService(service.Service):
    def __init__(self, config, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.reactor = reactor
        self.address = config.address  # the default is found on start: advertised_address
        self.appliance = None
        self.ports = []
        self.bound = []
        self._lock = None

    def privilegedStartService(self):
        """Bind every port, then load the state; raises StartError, whose
        message names the file, port or option at fault.

        Ports come first so that a start that cannot bind touches neither
        data.json nor the log's "started" line.
        """
        try:
            self._start()
        except (RepositoryError, CredentialsError, CheckpointError, StartError) as exc:
            self.appliance = None  # nothing was loaded: write nothing back
            self._close()
            raise StartError(str(exc)) from None
        super().privilegedStartService()

    def _start(self):
        config = self.config
        if config.boot_file_on_4011 and config.dhcp_port and not config.pxe_port:
            raise StartError("--boot-file-on-4011 sends PXE clients to port 4011 for their "
                             "boot file, but --pxe-port 0 turns that port off")
        self.address = advertised_address(config)
        repository = Repository(config.repository)
        repository.check()
        credentials = read_credentials(config.credentials) if config.credentials else None
        self._lock = repository.lock()
        self.appliance = Appliance(repository, base_url(self.address, config.http_port),
                                   self.reactor.callLater,
                                   inactivity_limit=config.inactivity_timeout,
                                   ipxe_dir=config.ipxe_dir)
        self._bind_all(credentials)
        open_event_log(repository.log_path, echo=config.echo_log,
                       level=getattr(logging, config.log_level.upper()))
        self.appliance.start()
        where = config.listen or "all addresses"
        for service_name, port in self.bound:
            log.info("%s on %s port %d", service_name,
                     config.interface or "all interfaces" if "DHCP" in service_name else where,
                     port)
        if (config.dhcp_port or config.pxe_port) and not config.http_port:
            log.warning("proxyDHCP is on but HTTP is off: iPXE will be sent a "
                        "bootconfig URL nothing serves")

    def _bind_all(self, credentials):
        config, reactor = self.config, self.reactor
        self.bound = []
        if config.http_port:
            self._bind("HTTP", "--http-port", config.http_port, lambda: reactor.listenTCP(
                config.http_port, make_site(self.appliance, credentials),
                interface=config.listen))
        if config.tftp_port:
            self._bind("TFTP", "--tftp-port", config.tftp_port, lambda: listen_tftp(
                reactor, self.appliance, config.tftp_port, config.listen,
                config.tftp_max_blksize))
        for pxe, name, option, number in ((False, "proxyDHCP", "--dhcp-port", config.dhcp_port),
                                          (True, "proxyDHCP", "--pxe-port", config.pxe_port)):
            if number:
                self._bind(name, option, number, lambda pxe=pxe: listen_proxy_dhcp(
                    reactor, self.appliance, self.address, config, pxe))

    def _bind(self, service_name, option, number, listen):
        try:
            self.ports.append(listen())
        except CannotListenError as exc:
            error = exc.socketError
            reason = getattr(error, "strerror", None) or str(error)
            if getattr(error, "errno", None) == errno.EACCES and number < 1024:
                hint = "ports below 1024 need root or CAP_NET_BIND_SERVICE"
            elif getattr(error, "errno", None) == errno.EADDRINUSE:
                hint = "another program holds it"
            elif getattr(error, "errno", None) == errno.ENODEV and self.config.interface:
                raise StartError(f"cannot listen for {service_name} on port {number}: "
                                 f"{no_such_interface(self.config.interface)}") from None
            else:
                hint = None
            hint = f"{hint}; " if hint else ""
            raise StartError(f"cannot listen for {service_name} on port {number}: {reason} "
                             f"({hint}{option} N picks another port, 0 disables "
                             f"{service_name})") from None
        self.bound.append((service_name, number))

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
        if self._lock is not None:
            self._lock.close()
            self._lock = None

"""The proxyDHCP listeners on the reactor: UDP 67 and the PXE port 4011.

Port 67 sees every DHCP broadcast on the segment; we answer PXE DISCOVERs
with an OFFER and leave everything else to the site's DHCP server. Port 4011
gets the ProxyDHCP REQUEST a client sends when the offer did not satisfy it
(or, with --boot-file-on-4011, named no boot file); it gets an ACK with the
boot file.
"""

import errno
import fcntl
import logging
import socket
import struct
import time
from collections import OrderedDict

from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol

from . import policy
from .packets import ACK, DISCOVER, OFFER, REQUEST, Malformed, parse
from .replies import destination, proxy_reply

log = logging.getLogger("heckle")

MESSAGE_NAMES = {OFFER: "OFFER", ACK: "ACK"}
SIOCGIFADDR = 0x8915  # linux/sockios.h
IFNAMSIZ = 16


def interface_address(interface):
    """The (first) IPv4 address of ``interface``, asked of the kernel;
    raises OSError: ENODEV when there is no such interface, EADDRNOTAVAIL
    when it has no IPv4 address."""
    name = interface.encode()
    if not name or len(name) >= IFNAMSIZ or b"\0" in name:
        raise OSError(errno.ENODEV, "No such device")
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifreq = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("16s16x", name))
    finally:
        probe.close()
    return socket.inet_ntoa(ifreq[20:24])  # ifr_addr: family, port, then the address


def no_such_interface(interface):
    return (f"interface {interface} does not exist (--interface IF names the interface to "
            f"answer DHCP on; `ip link` lists them)")


class OncePer:
    """Says yes to a key at most once per ``interval`` seconds, remembering
    at most ``limit`` keys (the oldest are forgotten first)."""

    def __init__(self, interval=60.0, limit=4096, clock=time.monotonic):
        self.interval, self.limit, self.clock = interval, limit, clock
        self.last = OrderedDict()  # key -> when last said yes, oldest first

    def __call__(self, key):
        now = self.clock()
        while self.last and now - next(iter(self.last.values())) >= self.interval:
            self.last.popitem(last=False)
        if key in self.last:
            return False
        self.last[key] = now
        if len(self.last) > self.limit:
            self.last.popitem(last=False)
        return True


class ProxyDHCP(DatagramProtocol):
    """Answers one kind of DHCP message (``answers``) with ``reply_type``."""

    def __init__(self, appliance, server_ip, answers, reply_type, efi_binary, known_only,
                 boot_file_on_4011=False):
        self.appliance = appliance
        self.server_ip = server_ip
        self.answers = answers
        self.reply_type = reply_type
        self.efi_binary = efi_binary
        self.known_only = known_only
        self.boot_file_on_4011 = boot_file_on_4011
        # ROMs retry a DISCOVER about four times per boot, and reboot: say
        # once a minute per machine that we have nothing for it.
        self.worth_logging = OncePer(60.0)

    def datagramReceived(self, datagram, source):
        try:
            request = parse(datagram)
        except Malformed as exc:
            log.debug("dropped a malformed DHCP datagram from %s:%d: %s", *source, exc)
            return
        client_class = policy.client_class(request.options)
        if request.message_type != self.answers or client_class is None:
            return  # ordinary DHCP: the site's server deals with it
        reply = self.reply_to(request, client_class)
        self.appliance.metrics.inc("heckle_requests_total", protocol="dhcp",
                                   code="answered" if reply else "not answered")
        if reply is not None:
            self.send(reply, destination(request, source), request.mac)

    def reply_to(self, request, client_class):
        options, mac = request.options, request.mac
        arch = policy.architecture(options)
        known = self.appliance.pxe_client_seen(mac, arch)
        if self.known_only and not known:
            log.debug("%s is not a known node: PXE request not answered", mac)
            return None
        choice = policy.choose(options, mac, self.appliance.server_url, self.efi_binary)
        if choice is None:
            level = logging.INFO if self.worth_logging((mac, client_class, arch)) else logging.DEBUG
            log.log(level, "%s : no boot file for %s architecture %s: not answered", mac,
                    client_class, arch)
            return None
        # Only an OFFER to a PXE client can leave the file to the 4011 ACK:
        # UEFI HTTP boot has no 4011 round.
        with_file = not (self.boot_file_on_4011 and self.reply_type == OFFER
                         and client_class == policy.PXE_CLIENT)
        log.info("%s : proxyDHCP %s for %s (architecture %s): %s", mac,
                 MESSAGE_NAMES[self.reply_type], choice.client, arch,
                 choice.boot_file if with_file
                 else "no boot file, it is sent on request to port 4011")
        self.appliance.metrics.inc("heckle_dhcp_replies_total", client=choice.client,
                                   message=MESSAGE_NAMES[self.reply_type])
        return proxy_reply(request, self.reply_type, self.server_ip, client_class,
                           choice.boot_file, with_file)

    def send(self, reply, address, mac):
        try:
            self.transport.write(reply, address)
        except OSError as exc:  # e.g. ENETUNREACH broadcasting without --interface
            log.warning("%s : cannot send the proxyDHCP reply to %s:%d: %s", mac, *address, exc)


def listen_proxy_dhcp(reactor, appliance, server_ip, config, pxe=False):
    """Bind the port-67 listener (DISCOVER -> OFFER), or with ``pxe`` the
    PXE boot-server one (REQUEST -> ACK, port 4011)."""
    answers, reply_type, port = ((REQUEST, ACK, config.pxe_port) if pxe
                                 else (DISCOVER, OFFER, config.dhcp_port))
    protocol = ProxyDHCP(appliance, server_ip, answers, reply_type, config.efi_binary,
                         config.dhcp_known_only, config.boot_file_on_4011)
    return listen(reactor, port, protocol, config.interface)


def listen(reactor, port, protocol, interface=None):
    """A broadcast-capable UDP port on every address, or on one interface.

    Always the wildcard address: a socket bound to a unicast address never
    sees broadcast DISCOVERs. Twisted cannot tell which interface a datagram
    came in on, so restricting to one is done with SO_BINDTODEVICE, which
    also lets broadcast replies out where there is no default route.
    """
    if interface is None:
        udp = reactor.listenUDP(port, protocol)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
            sock.bind(("", port))
            sock.setblocking(False)
            udp = reactor.adoptDatagramPort(sock.fileno(), socket.AF_INET, protocol)
        except OSError as exc:
            raise CannotListenError(interface, port, exc) from None
        finally:
            sock.close()  # the reactor holds its own duplicate of the descriptor
    udp.setBroadcastAllowed(True)
    return udp

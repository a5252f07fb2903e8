"""``flunkymaster``: run the whole appliance in the foreground."""

import argparse
import signal
import sys

from ..core.eventlog import reopen_event_log
from ..core.repository import RepositoryError, init_skeleton
from ..dhcp.policy import EFI_BINARIES
from ..service import ApplianceService, Config, StartError
from ..tftp.options import MAX_BLKSIZE, MIN_BLKSIZE, SAFE_BLKSIZE


def blksize(text):
    value = int(text)
    if not MIN_BLKSIZE <= value <= MAX_BLKSIZE:
        raise argparse.ArgumentTypeError(f"must be {MIN_BLKSIZE}..{MAX_BLKSIZE}")
    return value


LOG_LEVELS = ("debug", "info", "warning")


def parser(prog="flunkymaster"):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Network-boot appliance: serves bootconfig/install templates, static "
                    "and dynamic files to nodes, and the allocation API to fctl.")
    p.add_argument("--repository", default="repository", metavar="DIR",
                   help="repository folder (default: ./repository)")
    p.add_argument("--init", nargs="?", const="", metavar="DIR",
                   help="create an empty repository skeleton in DIR (default: --repository) "
                        "and exit")
    p.add_argument("--address", metavar="IP",
                   help="address nodes are told to reach us on (default: the IPv4 address "
                        "of --interface, else of the interface holding the default route; "
                        "never loopback while proxyDHCP is on)")
    p.add_argument("--listen", default="", metavar="IP",
                   help="address to bind (default: all addresses)")
    p.add_argument("--http-port", type=int, default=8080, metavar="N",
                   help="HTTP port (default 8080; 0 disables)")
    p.add_argument("--tftp-port", type=int, default=69, metavar="N",
                   help="TFTP port (default 69; 0 disables)")
    p.add_argument("--ipxe-dir", default="/usr/lib/ipxe", metavar="DIR",
                   help="where iPXE binaries missing from static/ are taken from "
                        "(default /usr/lib/ipxe, Debian's ipxe package)")
    p.add_argument("--tftp-max-blksize", type=blksize, default=SAFE_BLKSIZE, metavar="BYTES",
                   help=f"largest TFTP blksize granted (default {SAFE_BLKSIZE}: no IP "
                        f"fragments on a 1500-byte MTU; at most {MAX_BLKSIZE})")
    p.add_argument("--credentials", metavar="FILE",
                   help="name:secret lines allowing admin access from non-loopback "
                        "addresses (default: admin API from loopback only)")
    p.add_argument("--inactivity-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="a node silent this long before Ready is Failed (default 300)")
    p.add_argument("--dhcp-port", type=int, default=67, metavar="N",
                   help="proxyDHCP port (default 67; 0 disables)")
    p.add_argument("--pxe-port", type=int, default=4011, metavar="N",
                   help="PXE boot-server port for ProxyDHCP REQUESTs (default 4011; 0 disables)")
    p.add_argument("--interface", metavar="IF",
                   help="answer DHCP on this interface only (needed to broadcast without a "
                        "default route; default: every interface)")
    p.add_argument("--known-macs-only", action="store_true",
                   help="answer PXE requests only from MACs allocated here (default: every "
                        "PXE client; unallocated ones are told to boot from disk)")
    p.add_argument("--efi-binary", choices=EFI_BINARIES, default=EFI_BINARIES[0],
                   help="iPXE binary for UEFI clients (default %(default)s)")
    p.add_argument("--boot-file-on-4011", action="store_true",
                   help="name no boot file in PXE offers on port 67, so PXE clients ask "
                        "for it on port 4011, as from a PXE boot server (default: the "
                        "offer names it)")
    p.add_argument("--quiet", action="store_true", help="log to flunky.log only, not stderr")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                   help="least important events logged (default %(default)s; debug adds "
                        "e.g. dropped malformed DHCP datagrams)")
    return p


def config_from_args(args):
    """The service configuration an argparse result describes (also used by twistd)."""
    return Config(
        repository=args.repository, address=args.address, listen=args.listen,
        http_port=args.http_port, credentials=args.credentials,
        tftp_port=args.tftp_port, ipxe_dir=args.ipxe_dir, tftp_max_blksize=args.tftp_max_blksize,
        dhcp_port=args.dhcp_port, pxe_port=args.pxe_port, interface=args.interface,
        dhcp_known_only=args.known_macs_only, efi_binary=args.efi_binary,
        boot_file_on_4011=args.boot_file_on_4011,
        inactivity_timeout=args.inactivity_timeout, echo_log=not args.quiet,
        log_level=args.log_level)


def installed_reactor():
    """Ours (heckle_appliance.reactor), unless a reactor is installed already."""
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor
        return reactor
    from .. import reactor
    return reactor.install()


def main(argv=None, reactor=None):
    args = parser().parse_args(argv)
    if args.init is not None:
        target = args.init or args.repository
        try:
            created = init_skeleton(target)
        except RepositoryError as exc:
            print(f"flunkymaster: {exc}", file=sys.stderr)
            return 1
        print(f"created {', '.join(created)} in {target}" if created
              else f"{target} is a repository already: nothing to create")
        return 0
    if reactor is None:
        reactor = installed_reactor()
    svc = ApplianceService(config_from_args(args), reactor)
    try:
        svc.privilegedStartService()
    except StartError as exc:
        print(f"flunkymaster: {exc}", file=sys.stderr)
        return 1
    svc.startService()
    reactor.addSystemEventTrigger("before", "shutdown", svc.stopService)
    signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(reopen_event_log))
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``flunkymaster``: run the whole appliance in the foreground."""

import argparse
import sys

from ..core.repository import RepositoryError, init_skeleton
from ..http.auth import CredentialsError
from ..service import ApplianceService, Config


def parser():
    p = argparse.ArgumentParser(
        prog="flunkymaster",
        description="Network-boot appliance: serves bootconfig/install templates, static "
                    "and dynamic files to nodes, and the allocation API to fctl.")
    p.add_argument("--repository", default="repository", metavar="DIR",
                   help="repository folder (default: ./repository)")
    p.add_argument("--init", action="store_true",
                   help="create an empty repository skeleton in --repository and exit")
    p.add_argument("--address", metavar="IP",
                   help="address nodes are told to reach us on (default: this host's "
                        "primary address)")
    p.add_argument("--listen", default="", metavar="IP",
                   help="address to bind (default: all addresses)")
    p.add_argument("--http-port", type=int, default=8080, metavar="N",
                   help="HTTP port (default 8080; 0 disables)")
    p.add_argument("--credentials", metavar="FILE",
                   help="name:secret lines allowing admin access from non-loopback "
                        "addresses (default: admin API from loopback only)")
    p.add_argument("--inactivity-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="a node silent this long before Ready is Failed (default 300)")
    p.add_argument("--quiet", action="store_true", help="log to flunky.log only, not stderr")
    return p


def main(argv=None, reactor=None):
    args = parser().parse_args(argv)
    if args.init:
        init_skeleton(args.repository)
        print(f"created repository skeleton in {args.repository}")
        return 0
    if reactor is None:
        from twisted.internet import reactor
    svc = ApplianceService(Config(
        repository=args.repository, address=args.address, listen=args.listen,
        http_port=args.http_port, credentials=args.credentials,
        inactivity_timeout=args.inactivity_timeout, echo_log=not args.quiet), reactor)
    try:
        svc.privilegedStartService()
    except (RepositoryError, CredentialsError) as exc:
        print(f"flunkymaster: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # e.g. CannotListenError: say it in one line
        print(f"flunkymaster: cannot start: {exc}", file=sys.stderr)
        return 1
    svc.startService()
    reactor.addSystemEventTrigger("before", "shutdown", svc.stopService)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

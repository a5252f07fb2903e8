"""twistd dropin: ``twistd heckle`` runs the appliance with flunkymaster's options,
and ``twistd -r heckle`` picks the reactor flunkymaster runs on.

This folder must have no __init__.py: Twisted's own twisted/plugins package
picks dropins up from every twisted/plugins folder on sys.path.
"""

import logging

from twisted.application.reactors import Reactor
from twisted.application.service import IServiceMaker
from twisted.logger import Logger, LogLevel
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer

PROG = "twistd heckle"


class Options(usage.Options):
    """Delegates to flunkymaster's argparse parser, so both take the same options."""

    def parseOptions(self, options=None):
        from heckle_appliance.cli.flunkymaster import parser

        self.args = parser(PROG).parse_args(options)

    def __str__(self):
        from heckle_appliance.cli.flunkymaster import parser

        return parser(PROG).format_help()


class TwistdLog(logging.Handler):
    """Appliance events into twistd's log at their own level (via stderr
    every line would be tagged as an error)."""

    LEVELS = {logging.DEBUG: LogLevel.debug, logging.INFO: LogLevel.info,
              logging.WARNING: LogLevel.warn, logging.ERROR: LogLevel.error,
              logging.CRITICAL: LogLevel.critical}

    def __init__(self):
        super().__init__()
        self.log = Logger(namespace="heckle")

    def emit(self, record):
        self.log.emit(self.LEVELS.get(record.levelno, LogLevel.info), "{event}",
                      event=record.getMessage())


def one_line_errors(service):
    """Make start-up failures a single line, as flunkymaster gives them."""
    from heckle_appliance.service import StartError

    start = service.privilegedStartService

    def privileged_start():
        try:
            start()
        except StartError as exc:
            raise SystemExit(f"{PROG}: {exc}") from None

    service.privilegedStartService = privileged_start
    return service


@implementer(IServiceMaker, IPlugin)
class HeckleServiceMaker:
    tapname = "heckle"
    description = "heckle-appliance network-boot server (HTTP, TFTP, proxyDHCP)"
    options = Options

    def makeService(self, options):
        from heckle_appliance.cli.flunkymaster import config_from_args
        from heckle_appliance.service import ApplianceService

        if options.args.init is not None:
            raise SystemExit(f"{PROG}: --init is flunkymaster's: flunkymaster --init "
                             f"{options.args.init or options.args.repository}")
        config = config_from_args(options.args)
        if config.echo_log:
            config.echo_log = TwistdLog()
        return one_line_errors(ApplianceService(config))


heckle = HeckleServiceMaker()
heckle_reactor = Reactor("heckle", "heckle_appliance.reactor",
                         "epoll, with TFTP transfers dispatched without a logging context")

"""twistd dropin: ``twistd heckle`` runs the appliance with flunkymaster's options.

This folder must have no __init__.py: Twisted's own twisted/plugins package
picks dropins up from every twisted/plugins folder on sys.path.
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


class Options(usage.Options):
    """Delegates to flunkymaster's argparse parser, so both take the same options."""

    def parseOptions(self, options=None):
        from heckle_appliance.cli.flunkymaster import parser

        try:
            self.args = parser().parse_args(options)
        except SystemExit as exit_:
            if exit_.code:
                raise usage.UsageError("invalid options (see twistd heckle --help)")
            raise

    def __str__(self):
        from heckle_appliance.cli.flunkymaster import parser

        return parser().format_help()


@implementer(IServiceMaker, IPlugin)
class HeckleServiceMaker:
    tapname = "heckle"
    description = "heckle-appliance network-boot server (HTTP, TFTP, proxyDHCP)"
    options = Options

    def makeService(self, options):
        from heckle_appliance.cli.flunkymaster import config_from_args
        from heckle_appliance.core.repository import Repository, RepositoryError
        from heckle_appliance.service import ApplianceService

        if options.args.init:
            raise SystemExit("twistd heckle: use flunkymaster --init to create a repository")
        try:  # one clear line rather than twistd's traceback
            Repository(options.args.repository).check()
        except RepositoryError as exc:
            raise SystemExit(f"twistd heckle: {exc}") from None
        return ApplianceService(config_from_args(options.args))


heckle = HeckleServiceMaker()

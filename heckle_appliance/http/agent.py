"""GET /flunky.sh: the sh node agent, at a fixed URL so that any initramfs
with busybox can fetch it at boot (``wget -O flunky.sh $server/flunky.sh``).
Node side, so no authentication: it holds no secret."""

from importlib import resources

from .request import PlainResource, plain


class AgentScript(PlainResource):
    def __init__(self):
        super().__init__()
        # Read once: the packaged file only changes with the package.
        self.text = resources.files("heckle_appliance.agent").joinpath("flunky.sh").read_text()

    def render_GET(self, request):
        return plain(request, 200, self.text, b"text/x-shellscript; charset=utf-8")

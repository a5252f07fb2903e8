"""The node side: what booting machines fetch and post. No auth, as the
original; a node only ever reads or writes its own record, chosen by its
source address or its ``mac`` query parameter."""

from twisted.web import static

from ..core.appliance import NotAllocated, RenderFailed
from ..core.repository import Forbidden, NotFound
from ..core.state import ERROR, INFO
from .request import HTTPError, PlainResource, client_ip, client_mac, field, plain, read_json

SCRIPT = b"text/plain; charset=utf-8"


def _core_errors(call):
    """Run ``call()``, turning core exceptions into HTTPError."""
    try:
        return call()
    except NotAllocated as exc:
        raise HTTPError(404, str(exc)) from None
    except NotFound as exc:
        raise HTTPError(404, f"Not Found: {exc}") from None
    except Forbidden as exc:
        raise HTTPError(403, f"Forbidden: {exc}") from None
    except RenderFailed as exc:
        raise HTTPError(500, f"render error: {exc}") from None


class NodeResource(PlainResource):
    def __init__(self, appliance):
        super().__init__()
        self.appliance = appliance



class ImageFile(NodeResource):
    """/bootconfig and /install: the node's image's template, rendered."""

    head_is_get = False

    def __init__(self, appliance, which):
        super().__init__(appliance)
        self.which = which

    def render_GET(self, request):
        ip, mac = client_ip(request), client_mac(request)
        text = _core_errors(lambda: getattr(self.appliance, self.which)(ip, mac))
        return plain(request, 200, text, SCRIPT)


class FolderFile(NodeResource):
    """A file of static/ or dynamic/, named by the rest of the path."""

    def check(self, request):
        """Subpaths are the point here; the core confines them."""

    def relpath(self, request):
        try:
            return "/".join(seg.decode("utf-8") for seg in request.postpath)
        except UnicodeDecodeError:
            raise HTTPError(404, "Not Found: path is not UTF-8") from None


class Dynamic(FolderFile):
    head_is_get = False

    def render_GET(self, request):
        ip, mac, relpath = client_ip(request), client_mac(request), self.relpath(request)
        text = _core_errors(lambda: self.appliance.dynamic(ip, mac, relpath))
        return plain(request, 200, text, SCRIPT)


class Static(FolderFile):
    """Files served as they are, streamed, with Range support."""

    def render_GET(self, request, count=True):
        ip, mac, relpath = client_ip(request), client_mac(request), self.relpath(request)
        path = _core_errors(lambda: self.appliance.static(ip, mac, relpath, count))
        served = static.File(path, defaultType="application/octet-stream")
        # Kernels and initrds named *.gz are payload, not a transfer encoding.
        served.contentEncodings = {}
        return served.render(request)

    def render_HEAD(self, request):
        """Size and type, without counting a fetch."""
        return self.render_GET(request, count=False)


class Message(NodeResource):
    """POST /info and /error: ``{"Message": text}`` from the node about itself."""

    def __init__(self, appliance, kind):
        super().__init__(appliance)
        self.kind = kind

    def render_POST(self, request):
        text = field(read_json(request), "Message", (str,))
        ip, mac = client_ip(request), client_mac(request)
        _core_errors(lambda: self.appliance.post(ip, mac, self.kind, text))
        return plain(request, 200, "")


def node_resources(appliance):
    return {
        b"bootconfig": ImageFile(appliance, "bootconfig"),
        b"install": ImageFile(appliance, "install"),
        b"static": Static(appliance),
        b"dynamic": Dynamic(appliance),
        b"info": Message(appliance, INFO),
        b"error": Message(appliance, ERROR),
    }

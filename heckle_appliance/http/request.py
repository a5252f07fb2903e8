"""Request plumbing shared by the node and admin resources."""

import json
import logging

from twisted.web import resource, server

from ..core import strictjson
from ..core.identity import normalise_ip, normalise_mac

log = logging.getLogger("heckle")

MAX_BODY = 1024 * 1024


class HTTPError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class BoundedRequest(server.Request):
    """A request that stops buffering its body past MAX_BODY.

    twisted.web would otherwise spool any size to disk before we see it.
    """

    body_too_large = False
    _received = 0

    def gotLength(self, length):
        if length is not None and length > MAX_BODY:
            self.body_too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data):
        self._received += len(data)
        if self._received > MAX_BODY:
            self.body_too_large = True
        if not self.body_too_large:
            super().handleContentChunk(data)


def client_ip(request):
    return normalise_ip(request.getClientAddress().host) or request.getClientAddress().host


def client_mac(request):
    """The ``mac`` query parameter (iPXE's ``${net0/mac}``), normalised, or None."""
    values = request.args.get(b"mac")
    if not values or not values[0].strip():
        return None
    text = values[0].decode("utf-8", "replace")
    mac = normalise_mac(text)
    if mac is None:
        raise HTTPError(400, f"invalid mac {text!r}")
    return mac


def plain(request, code, text, content_type=b"text/plain; charset=utf-8"):
    request.setResponseCode(code)
    request.setHeader(b"content-type", content_type)
    body = text.encode("utf-8")
    request.setHeader(b"content-length", str(len(body)).encode())
    return body


def refuse(request, error):
    """Answer an HTTPError in plain text and log the refusal."""
    log.warning("refused %s %s from %s: %d %s", request.method.decode(),
                request.uri.decode("utf-8", "replace"), client_ip(request), error.code, error)
    return plain(request, error.code, f"{error}\n")


def json_reply(request, value, code=200):
    return plain(request, code, strictjson.dumps(value, sort_keys=True) + "\n",
                 b"application/json")


def read_json(request, empty_is_object=False):
    """The request body as a JSON object, or HTTPError 400/413 saying why not."""
    if request.body_too_large:
        raise HTTPError(413, f"request body exceeds {MAX_BODY} bytes")
    raw = request.content.read() if request.content is not None else b""
    if empty_is_object and not raw.strip():
        return {}
    try:
        body = strictjson.loads(raw)
    except UnicodeDecodeError:
        raise HTTPError(400, "body is not UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise HTTPError(400, f"malformed JSON body: {exc.msg} at line {exc.lineno}, "
                             f"column {exc.colno}") from None
    except ValueError as exc:  # NaN, Infinity, 1e400
        raise HTTPError(400, f"malformed JSON body: {exc}") from None
    except RecursionError:
        raise HTTPError(400, "malformed JSON body: nested too deeply") from None
    if not isinstance(body, dict):
        raise HTTPError(400, f"body must be a JSON object, not {type(body).__name__}")
    return body


def field(body, name, kinds, required=True, default=None):
    """``body[name]`` checked against ``kinds``; HTTPError 400 names the field."""
    if name not in body or body[name] is None:
        if required:
            raise HTTPError(400, f"missing field {name!r}")
        return default
    value = body[name]
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        wanted = " or ".join(k.__name__ for k in kinds)
        raise HTTPError(400, f"field {name!r} must be {wanted}, not {type(value).__name__}")
    return value


class PlainResource(resource.Resource):
    """A leaf whose every refusal is one line of plain text, 405 included
    (twisted.web would answer an unknown method with an HTML page, and HEAD
    on a POST-only resource with a 500)."""

    isLeaf = True
    # HEAD is answered by render_GET (twisted.web drops the body), except
    # where a GET is a node's counted fetch: a probe must not use up a boot.
    head_is_get = True

    def check(self, request):
        """Raise HTTPError to refuse the request before any method runs.

        By default a leaf has no children: ``/bootconfig/x`` is not found.
        """
        if request.postpath not in ([], [b""]):
            raise HTTPError(404, "Not Found")

    def render(self, request):
        try:
            self.check(request)
            method = request.method.decode("ascii", "replace")
            handler = getattr(self, f"render_{method}", None)
            if method == "HEAD" and type(self).render_HEAD is resource.Resource.render_HEAD:
                # Resource's own render_HEAD calls render_GET whatever it does.
                handler = getattr(self, "render_GET", None) if self.head_is_get else None
            if handler is None:
                allowed = sorted(name[len("render_"):] for name in dir(self)
                                 if name.startswith("render_") and name != "render_HEAD")
                request.setHeader(b"allow", ", ".join(allowed).encode())
                raise HTTPError(405, f"{method} is not allowed here; use {' or '.join(allowed)}")
            return handler(request)
        except HTTPError as error:
            return refuse(request, error)
        except Exception:
            # twisted.web's own answer would be an HTML page with the traceback.
            log.exception("internal error answering %s %s", request.method.decode(),
                          request.uri.decode("utf-8", "replace"))
            return plain(request, 500, "internal error (the traceback is in flunky.log)\n")


class NotFound(PlainResource):
    def check(self, request):
        raise HTTPError(404, "Not Found")


class Folder(resource.Resource):
    """A resource holding children, whose unknown children answer a plain 404
    (rather than twisted.web's HTML page) like every other error here."""

    def getChild(self, path, request):
        return NotFound()

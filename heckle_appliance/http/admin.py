"""The admin side: allocation and monitoring, as the original's /ctl,
/status and /dump, plus /api for tools. Guarded by :mod:`.auth`."""

import logging

from twisted.internet import threads
from twisted.web import server

from ..core.appliance import InvalidImage, UnknownImage
from ..core.checkpoint import CheckpointError
from ..core.identity import BadNodeName, resolve
from .request import Folder, HTTPError, PlainResource, client_ip, field, json_reply, read_json, refuse

log = logging.getLogger("heckle")


class AdminResource(PlainResource):
    def __init__(self, appliance, auth):
        super().__init__()
        self.appliance = appliance
        self.auth = auth

    def check(self, request):
        header = request.getHeader(b"authorization")
        refusal = self.auth.refusal(client_ip(request), header.decode("latin-1") if header else None)
        if refusal:
            request.setHeader(b"www-authenticate", b'Basic realm="heckle"')
            raise HTTPError(401, refusal)
        super().check(request)

    def later(self, request, work):
        """Finish ``request`` with the Deferred ``work`` (JSON value or HTTPError)."""
        gone = []
        request.notifyFinish().addErrback(gone.append)

        def done(value):
            body = json_reply(request, value)
            if not gone:
                request.write(body)
                request.finish()

        def failed(failure):
            if failure.check(HTTPError):
                error = failure.value
            elif failure.check(CheckpointError):
                error = HTTPError(503, f"{failure.value}; nothing was changed")
            else:
                log.error("admin request %s failed: %s", request.uri.decode("utf-8", "replace"),
                          failure.getTraceback())
                error = HTTPError(500, f"internal error: {failure.getErrorMessage()}")
            body = refuse(request, error)
            if not gone:
                request.write(body)
                request.finish()

        work.addCallback(done)
        work.addErrback(failed)
        return server.NOT_DONE_YET


def _names(body, required):
    addresses = field(body, "Addresses", (list,), required=required, default=[])
    if required and not addresses:
        raise HTTPError(400, "field 'Addresses' is empty")
    for entry in addresses:
        if not isinstance(entry, str):
            raise HTTPError(400, f"'Addresses' entries must be strings, not {entry!r}")
    return addresses


def _resolve_all(addresses):
    """Resolve names off the reactor thread (hostnames mean DNS)."""
    def work():
        try:
            return [(given, resolve(given)) for given in addresses]
        except BadNodeName as exc:
            raise HTTPError(400, str(exc)) from None
    return threads.deferToThread(work)


class Ctl(AdminResource):
    """POST /ctl: (re)allocate nodes to an image; on disk before the reply."""

    def render_POST(self, request):
        body = read_json(request)
        addresses = _names(body, required=True)
        image = field(body, "Image", (str,))
        extra = field(body, "Extra", (dict,), required=False)
        field(body, "Time", (int, float), required=False)
        try:
            self.appliance.check_image(image)
        except UnknownImage as exc:
            raise HTTPError(404, str(exc)) from None
        except InvalidImage as exc:
            raise HTTPError(409, str(exc)) from None

        def allocate(names):
            try:
                nodes = self.appliance.allocate([n for _, n in names], image, extra)
            except (UnknownImage, InvalidImage) as exc:  # removed meanwhile
                raise HTTPError(409, str(exc)) from None
            return {"Image": image,
                    "Allocated": {given: node.key for (given, _), node in zip(names, nodes)}}

        return self.later(request, _resolve_all(addresses).addCallback(allocate))


class Status(AdminResource):
    """POST /status: state and new messages per node (all nodes if none named)."""

    def render_POST(self, request):
        body = read_json(request, empty_is_object=True)
        addresses = _names(body, required=False)
        since = field(body, "Time", (int, float), required=False, default=0)
        if not addresses:
            nodes = self.appliance.nodes.nodes
            return json_reply(request, {key: self.appliance.view(node, since)
                                        for key, node in nodes.items()})
        return self.later(request, _resolve_all(addresses).addCallback(
            lambda names: self.appliance.status(names, since)))


class Release(AdminResource):
    """POST /release: forget nodes' allocations, so their next netboot leaves
    for the local disk. Answers which record each name released (null: none)."""

    def render_POST(self, request):
        addresses = _names(read_json(request), required=True)

        def release(names):
            answer = {}
            for given, name in names:
                released = self.appliance.release([name])
                answer[given] = released[0].key if released else None
            return {"Released": answer}

        return self.later(request, _resolve_all(addresses).addCallback(release))


class Dump(AdminResource):
    def render_GET(self, request):
        return json_reply(request, self.appliance.nodes.to_json())


class Nodes(AdminResource):
    def render_GET(self, request):
        return json_reply(request, [dict(self.appliance.view(node), Key=key)
                                    for key, node in self.appliance.nodes.nodes.items()])


class Images(AdminResource):
    def render_GET(self, request):
        return json_reply(request, {
            image.name: {"Valid": image.valid, "Problem": image.problem}
            for image in self.appliance.repository.images()})


def admin_resources(appliance, auth):
    api = Folder()
    api.putChild(b"nodes", Nodes(appliance, auth))
    api.putChild(b"images", Images(appliance, auth))
    return {
        b"ctl": Ctl(appliance, auth),
        b"status": Status(appliance, auth),
        b"release": Release(appliance, auth),
        b"dump": Dump(appliance, auth),
        b"api": api,
    }



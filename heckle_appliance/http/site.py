"""The HTTP site: node and admin resources under one root."""

from twisted.web import server

from .admin import admin_resources
from .agent import AgentScript
from .auth import AdminAuth
from .node import node_resources
from .page import MetricsPage, StatusPage
from .request import BoundedRequest, Folder


class CountingSite(server.Site):
    """A Site whose access log feeds the appliance's metrics."""

    requestFactory = BoundedRequest
    displayTracebacks = False

    def __init__(self, root, metrics):
        super().__init__(root)
        self.metrics = metrics

    def log(self, request):
        self.metrics.inc("heckle_requests_total", protocol="http", code=str(request.code))
        self.metrics.inc("heckle_bytes_sent_total", request.sentLength, protocol="http")


def make_site(appliance, credentials=None):
    auth = AdminAuth(credentials)
    root = Folder()
    children = {**node_resources(appliance), **admin_resources(appliance, auth),
                b"": StatusPage(appliance, auth), b"metrics": MetricsPage(appliance, auth),
                b"flunky.sh": AgentScript()}
    for name, child in children.items():
        root.putChild(name, child)
    return CountingSite(root, appliance.metrics)

"""The HTTP site: node and admin resources under one root."""

from twisted.web import resource, server

from .admin import admin_resources
from .auth import AdminAuth
from .node import node_resources
from .request import BoundedRequest


def make_site(appliance, credentials=None):
    root = resource.Resource()
    for name, child in {**node_resources(appliance),
                        **admin_resources(appliance, AdminAuth(credentials))}.items():
        root.putChild(name, child)
    site = server.Site(root)
    site.requestFactory = BoundedRequest
    site.displayTracebacks = False
    return site

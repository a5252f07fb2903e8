"""GET / (admin): a status page for people, and GET /metrics for Prometheus.

The page is built with genshi.builder, which escapes every value, so node
messages cannot inject markup. It refreshes itself every few seconds.
"""

import time

from genshi.builder import tag

from .admin import AdminResource
from .request import plain

REFRESH_SECONDS = 5
STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border-bottom: 1px solid #ccc; padding: .3em .8em; text-align: left;
         vertical-align: top; }
.Ready { color: #17702a; font-weight: bold; }
.Failed { color: #b00020; font-weight: bold; }
.Error { color: #b00020; }
.invalid { color: #b00020; }
"""
RECENT_MESSAGES = 3


def _ago(seconds):
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _node_row(key, view, now):
    messages = tag.ul([tag.li(m["Message"], class_=m["MsgType"])
                       for m in view["Info"][-RECENT_MESSAGES:]])
    return tag.tr(
        tag.td(key, class_="node"), tag.td(view["Image"]),
        tag.td(view["State"], class_=view["State"]),
        tag.td(view["MAC"] or "", tag.br(), view["IP"] or ""),
        tag.td(_ago(now - view["LastActivity"])),
        tag.td(len(view["Info"])), tag.td(messages))


def status_page(appliance, now=None):
    now = time.time() if now is None else now
    nodes = sorted(appliance.nodes.nodes.items())
    images = appliance.repository.images()
    node_table = tag.table(
        tag.tr([tag.th(h) for h in ("Node", "Image", "State", "MAC / IP", "Last activity",
                                    "Messages", "Latest")]),
        [_node_row(key, appliance.view(node), now) for key, node in nodes],
        id="nodes")
    image_table = tag.table(
        tag.tr(tag.th("Image"), tag.th("Valid")),
        [tag.tr(tag.td(i.name), tag.td("yes") if i.valid
                else tag.td(f"no: {i.problem}", class_="invalid")) for i in images],
        id="images")
    page = tag.html(
        tag.head(tag.meta(charset="utf-8"),
                 tag.meta(**{"http-equiv": "refresh", "content": str(REFRESH_SECONDS)}),
                 tag.title("heckle appliance"), tag.style(STYLE)),
        tag.body(tag.h1("heckle appliance"),
                 tag.p(f"{len(nodes)} node(s), serving {appliance.server_url}"),
                 tag.h2("Nodes"),
                 node_table if nodes else tag.p("No node is allocated."),
                 tag.h2("Images"), image_table))
    return "<!DOCTYPE html>\n" + page.generate().render("html", encoding=None)


class StatusPage(AdminResource):
    def render_GET(self, request):
        return plain(request, 200, status_page(self.appliance), b"text/html; charset=utf-8")


class MetricsPage(AdminResource):
    def render_GET(self, request):
        return plain(request, 200, self.appliance.metrics_text(),
                     b"text/plain; version=0.0.4; charset=utf-8")

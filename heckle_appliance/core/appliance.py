"""The appliance's core: every operation the protocol adapters need.

HTTP, TFTP and DHCP call this and nothing else of the core. It knows no
sockets: adapters pass in who is asking (source IP, and MAC when the
request carries one) and get back data or one of the exceptions below,
which they translate into their protocol's error.
"""

import contextlib
import logging
import os
import time

from .checkpoint import Checkpointer, CheckpointError, load
from .metrics import Metrics
from .pxelinux import to_ipxe
from .repository import Forbidden, NotFound, Repository
from .state import ERROR, INFO, NodeTable
from .templates import TemplateCache, TemplateError

log = logging.getLogger("heckle")

# What an unallocated node is told: leave the network boot, try the next
# boot device (normally the local disk).
EXIT_SCRIPT = "#!ipxe\n# not allocated on this appliance: boot from the next device\nexit\n"

READY, FAILED, UNALLOCATED = "Ready", "Failed", "Unallocated"

# Served from static/ when the operator put them there, else from the
# system's iPXE package, so a stock repository can netboot.
IPXE_BINARIES = ("undionly.kpxe", "ipxe.efi", "snponly.efi")


class NotAllocated(Exception):
    """The requesting node has no allocation."""


class UnknownImage(Exception):
    pass


class InvalidImage(Exception):
    pass


class RenderFailed(Exception):
    """A template could not be rendered; str() names file, line and cause."""


def count_key(folder, relpath):
    """The original's Counts key for static/ and dynamic/ files: ``/<path>``."""
    return "/" + "/".join(Repository.clean(folder, relpath))


def describe(ip, mac):
    """How a requester is named in logs and errors."""
    if ip and mac:
        return f"{ip} ({mac})"
    return ip or mac or "unknown node"


class Appliance:
    def __init__(self, repository, server_url, call_later, clock=time.time,
                 inactivity_limit=300.0, checkpoint_delay=0.5, ipxe_dir="/usr/lib/ipxe"):
        self.repository = repository if isinstance(repository, Repository) else Repository(repository)
        self.server_url = server_url
        self.inactivity_limit = inactivity_limit
        self.ipxe_dir = ipxe_dir
        self._clock = clock
        self.templates = TemplateCache()
        self.nodes = NodeTable(clock, self._changed)
        self.checkpoint = Checkpointer(self.repository.data_path, self.nodes.to_json,
                                       call_later, checkpoint_delay)
        self.metrics = Metrics()
        self._status_problems = {}  # node key -> the status error last logged

    # -- life cycle -----------------------------------------------------------

    def start(self):
        """Check the repository, reload data.json and write it back at once.

        Raises RepositoryError before touching anything if the repository
        cannot be used.
        """
        self.repository.check()
        load(self.repository.data_path, self.nodes.load_json)
        self.checkpoint.flush()
        missing = self.missing_ipxe_binaries()
        if missing:
            log.warning("iPXE binaries found neither in static/ nor in %s: %s",
                        self.ipxe_dir, ", ".join(missing))
        for image in self.repository.images():
            if not image.valid:
                log.error("image %s is invalid (%s): it cannot be allocated", image.name,
                          image.problem)
        log.info("started on %s serving %s with %d node(s)", self.repository.root,
                 self.server_url, len(self.nodes.nodes))

    def stop(self):
        self.checkpoint.flush()
        log.info("stopped; %d node(s) saved to %s", len(self.nodes.nodes),
                 self.repository.data_path)

    def _changed(self, urgent):
        if urgent:
            self.checkpoint.flush()
        else:
            self.checkpoint.mark_dirty()

    # -- node side ------------------------------------------------------------

    def bootconfig(self, ip, mac=None):
        """The node's rendered bootconfig, or EXIT_SCRIPT if it is not allocated.

        A bootconfig in PXELINUX syntax (the original's images) is served as
        the equivalent iPXE script: our nodes run iPXE, and sites should not
        have to rewrite their images.
        """
        node = self.nodes.find(ip, mac)
        if node is None:
            log.warning("%s is not allocated: sent it the exit bootconfig", describe(ip, mac))
            return EXIT_SCRIPT
        text = to_ipxe(self._render_image_file(node, ip, "bootconfig"),
                       base=f"{self.server_url}/static/")
        self._note(node, describe(ip, mac), INFO,
                   f"fetched bootconfig (boot {node.counts['bootconfig']})")
        return text

    def install(self, ip, mac=None):
        return self._render_image_file(self._require(ip, mac, "install"), ip, "install")

    def dynamic(self, ip, mac, relpath):
        """A file of dynamic/ rendered for the node."""
        node = self._require(ip, mac, f"dynamic/{relpath}")
        path = self.repository.confine("dynamic", relpath)
        return self._render(node, ip, path, count_key("dynamic", relpath))

    def static(self, ip, mac, relpath, count=True):
        """Path of a file of static/ (or an iPXE binary). Anyone may fetch
        (unallocated nodes need the iPXE binary too); allocated nodes have
        the fetch counted, if ``count``."""
        try:
            path = self.repository.confine("static", relpath)
        except NotFound:
            path = os.path.join(self.ipxe_dir, relpath)
            if relpath not in IPXE_BINARIES or not os.path.isfile(path):
                raise
        node = self.nodes.find(ip, mac) if count else None
        if node is not None:
            self.nodes.count_fetch(node, count_key("static", relpath))
        return path

    def missing_ipxe_binaries(self):
        missing = []
        for name in IPXE_BINARIES:
            try:
                self.repository.confine("static", name)
            except (NotFound, Forbidden):
                if not os.path.isfile(os.path.join(self.ipxe_dir, name)):
                    missing.append(name)
        return missing

    def post(self, ip, mac, kind, text):
        """A progress (Info) or Error message from a node about itself."""
        node = self._require(ip, mac, f"post an {kind} message")
        self._note(node, describe(ip, mac), kind, text)

    def _note(self, node, who, kind, text):
        """A message on the node's record and the same line in flunky.log."""
        self.nodes.add_message(node, kind, text)
        (log.error if kind == ERROR else log.info)("%s : %s", who, text)

    def _require(self, ip, mac, what):
        node = self.nodes.find(ip, mac)
        if node is None:
            log.warning("refused %s: %s is not allocated", what, describe(ip, mac))
            raise NotAllocated(f"{describe(ip, mac)} is not allocated to any image")
        return node

    def _render_image_file(self, node, ip, which):
        try:
            path = self.repository.image_file(node.image, which)
        except NotFound as exc:
            log.warning("refused %s for %s: %s", which, describe(ip, node.mac), exc)
            raise
        return self._render(node, ip, path, which)

    def _render(self, node, ip, path, key):
        count = node.counts.get(key, 0)
        text = self.render_for(node, path, key, count, ip)
        self.nodes.count_fetch(node, key)
        return text

    def render_for(self, node, path, key, count, ip=None, record=True):
        """Render one template with the node's variables; errors become RenderFailed.

        When ``record`` (a node's own fetch, not an operator's status poll,
        which state_of reports), a failure is counted, logged and posted as
        an Error on the node.
        """
        shown = self.repository.relative(path)
        try:
            return self.templates.render(path, self.variables(node, key, count, ip),
                                         display_path=shown)
        except FileNotFoundError:
            raise NotFound(shown) from None
        except TemplateError as exc:
            if record:
                self.metrics.inc("heckle_render_errors_total")
                self._note(node, describe(ip or node.ip, node.mac), ERROR, f"render error: {exc}")
            raise RenderFailed(str(exc)) from None

    def variables(self, node, path, count, ip=None):
        values = self.repository.static_vars()
        if not str(values.get("BUILDSERVER") or "").strip():
            values["BUILDSERVER"] = self.server_url
        values.update(
            Address=ip or node.ip, MAC=node.mac, Hostname=node.hostname,
            IMAGE=node.image, Image=node.image, Path=path, Count=count,
            Counts=dict(node.counts), Errors=node.errors, Extra=node.extra or {},
            Server=self.server_url)
        return values

    def pxe_client_seen(self, mac, arch):
        """Note on its node, if any, the architecture a PXE request from ``mac``
        reported; returns whether ``mac`` belongs to an allocated node."""
        node = self.nodes.find(mac=mac)
        if node is None:
            return False
        if arch is not None and node.arch != arch:
            node.arch = arch
            self._changed(False)
            log.info("%s : PXE firmware reports architecture %d", describe(node.ip, mac), arch)
        return True

    # -- admin side -----------------------------------------------------------

    def check_image(self, name):
        image = self.repository.image(name)
        if image is None:
            known = ", ".join(i.name for i in self.repository.images()) or "none"
            raise UnknownImage(f"unknown image {name!r} (images: {known})")
        if not image.valid:
            raise InvalidImage(f"image {name!r} is invalid: {image.problem}")
        return image

    @contextlib.contextmanager
    def _saved_or_undone(self):
        """An urgent change is on disk when this ends, or undone and
        CheckpointError raised: never acknowledged yet lost at a restart."""
        before = dict(self.nodes.nodes)  # changes replace Node objects, never edit them
        try:
            yield
        except CheckpointError:
            self.nodes.nodes = before
            raise

    def allocate(self, names, image, extra=None):
        """Give each :class:`NodeName` a fresh record for ``image``; on disk on return."""
        self.check_image(image)
        with self._saved_or_undone():
            nodes = self.nodes.allocate(names, image, extra)
        for node in nodes:
            label = f"{node.key} ({node.hostname})" if node.hostname else node.key
            log.info("allocated %s to image %s", label, image)
        return nodes

    def release(self, names):
        with self._saved_or_undone():
            released = [n for n in map(self.nodes.release, names) if n is not None]
        for node in released:
            log.info("released %s (was %s)", node.key, node.image)
        return released

    def state_of(self, node):
        """(rendered status, State) for a node.

        State is what the image's status template says, except Failed when the
        node posted an Error or went silent longer than the inactivity limit
        without the template saying Ready.
        """
        try:
            path = self.repository.image_file(node.image, "status")
            status = self.render_for(node, path, "status", node.counts.get("status", 0),
                                     record=False).strip()
        except (NotFound, RenderFailed) as exc:
            # Polled every few seconds: say it once per node and problem.
            problem = f"status unavailable: {exc}"
            if self._status_problems.get(node.key) != problem:
                self._status_problems[node.key] = problem
                self.metrics.inc("heckle_render_errors_total")
                log.error("%s : %s", describe(node.ip, node.mac), problem)
            return problem, FAILED
        self._status_problems.pop(node.key, None)
        if status == READY:
            return status, READY
        if node.errors:
            return status, FAILED
        if self._clock() - node.activity > self.inactivity_limit:
            return status, FAILED
        return status, status

    def status(self, names, since=0.0):
        """The original's /status answer, keyed by the names as given.

        ``Cursor`` is the Time of the newest message returned (or ``since``):
        polling with it as the next ``Time`` yields each message exactly once.
        """
        answer = {}
        for given, name in names:
            node = self.nodes.get(name)
            if node is None:
                answer[given] = {"Status": "", "State": UNALLOCATED, "LastActivity": None,
                                 "Info": [], "Cursor": since}
                continue
            answer[given] = self.view(node, since)
        return answer

    def view(self, node, since=0.0):
        status, state = self.state_of(node)
        new = [m for m in node.info if m["Time"] > since]
        return {"Status": status, "State": state, "LastActivity": node.activity,
                "Info": new, "Cursor": new[-1]["Time"] if new else since,
                "Image": node.image, "IP": node.ip, "MAC": node.mac,
                "Hostname": node.hostname, "Errors": node.errors,
                "Allocated": node.allocated}

    def metrics_text(self):
        """/metrics: the counters plus what is measured at scrape time."""
        metrics = self.metrics
        metrics.set("heckle_checkpoint_writes_total", self.checkpoint.writes)
        metrics.set("heckle_checkpoint_seconds_total", self.checkpoint.total_duration)
        metrics.set("heckle_checkpoint_last_seconds", self.checkpoint.last_duration)
        metrics.clear("heckle_nodes")  # a state no node is in any more must go
        states = {}
        for node in self.nodes.nodes.values():
            state = self.state_of(node)[1]
            states[state] = states.get(state, 0) + 1
        for state in set(states) | {READY, FAILED}:
            metrics.set("heckle_nodes", states.get(state, 0), state=state)
        return metrics.exposition()

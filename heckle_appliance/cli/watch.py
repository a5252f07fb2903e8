"""Watching nodes until each is Ready or Failed, as the original fctl did.

Each node keeps its own cursor, the newest message Time it has shown, and
polls ask ``/status`` for messages after the oldest of those cursors: the
server's message times are unique and increasing, so every message is
shown exactly once and in order, however the polls fall.
"""

import os
import shutil
import time
import unicodedata

READY, FAILED, TIMEOUT = "Ready", "Failed", "Timeout"


def wall_date(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def duration(seconds):
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Node:
    """What the watch knows of one node."""

    def __init__(self, name, now):
        self.name = name
        self.cursor = 0
        self.state = None  # the server's State, or our verdict once finished
        self.status = ""
        self.messages = 0
        self.latest = ""
        self.allocated = None
        self.activity = None
        self.quiet_since = now  # our monotonic clock: last sign of life
        self.outcome = None  # READY, FAILED or TIMEOUT once finished
        self.reason = None
        self.ended = None  # wall clock when finished, to freeze the elapsed time

    def elapsed(self):
        """Since allocation (the server's clock) until finished (ours)."""
        if self.allocated is None:
            return 0
        return (self.ended or time.time()) - self.allocated

    def as_json(self):
        return {"State": self.outcome or self.state, "Status": self.status,
                "Messages": self.messages, "Latest": self.latest, "Reason": self.reason}


class Watch:
    """The nodes being watched and what each poll taught us about them.

    ``absorb`` and ``expire`` return events, ``("message", node, msg)`` and
    ``("state", node, when)``, for a display to show.
    """

    def __init__(self, names, inactivity, now):
        self.inactivity = inactivity
        self.nodes = {name: Node(name, now) for name in names}

    def pending(self):
        return [node for node in self.nodes.values() if node.outcome is None]

    def request(self):
        """The next /status body; with no nodes named yet it asks for every node."""
        body = {"Time": min((node.cursor for node in self.pending()), default=0)}
        if self.nodes:
            body["Addresses"] = [node.name for node in self.pending()]
        return body

    def absorb(self, answer, now):
        events = []
        for name, entry in answer.items():
            node = self.nodes.setdefault(name, Node(name, now))
            if node.outcome is None:
                events += self._update(node, entry, now)
        return events

    def _update(self, node, entry, now):
        events = []
        for message in entry.get("Info", []):
            if message["Time"] > node.cursor:
                node.cursor = message["Time"]
                node.messages += 1
                node.latest = message["Message"]
                events.append(("message", node, message))
        node.status = entry.get("Status", "")
        if events or entry.get("LastActivity") != node.activity:
            node.quiet_since = now
        node.activity = entry.get("LastActivity")
        node.allocated = entry.get("Allocated", node.allocated)
        state = entry.get("State", "")
        if state == READY:
            self._finish(node, READY)
        elif state == FAILED:
            self._finish(node, FAILED, self._failure(entry))
        elif node.status == "Cancel":
            self._finish(node, FAILED, "cancelled")
        elif state == "Unallocated":
            self._finish(node, FAILED, "not allocated")
        elif now - node.quiet_since > self.inactivity:
            self._finish(node, FAILED, f"no activity for {self.inactivity:g}s")
        if node.state != (node.outcome or state):
            node.state = node.outcome or state
            events.append(("state", node, time.time()))
        return events

    @staticmethod
    def _failure(entry):
        """Why the server said Failed. Its State is Failed on an Error message,
        on silence beyond its --inactivity-timeout (a limit fctl is not told),
        or because the status template rendered Failed: the rendered Status,
        sent apart, tells the last two apart without knowing the limit."""
        errors = entry.get("Errors") or 0
        status = entry.get("Status", "")
        if errors:
            return f"{errors} error message(s)"
        if status.startswith("status unavailable"):
            return status
        if status == FAILED:
            return "status template says Failed"
        return "no activity (server's limit)"

    def expire(self):
        """The watch's time is up: every unfinished node timed out."""
        events = []
        for node in self.pending():
            self._finish(node, TIMEOUT, "still " + (node.state or "unknown"))
            node.state = TIMEOUT
            events.append(("state", node, time.time()))
        return events

    @staticmethod
    def _finish(node, outcome, reason=None):
        node.outcome, node.reason, node.ended = outcome, reason, time.time()

    def succeeded(self):
        return all(node.outcome == READY for node in self.nodes.values())

    def summary(self, elapsed):
        counts = {}
        for node in self.nodes.values():
            counts.setdefault(node.outcome, []).append(node)
        parts = []
        for outcome in (READY, FAILED, TIMEOUT):
            nodes = counts.get(outcome, [])
            if nodes:
                reasons = ", ".join(f"{n.name}: {n.reason}" for n in nodes if n.reason)
                parts.append(f"{len(nodes)} {outcome}" + (f" ({reasons})" if reasons else ""))
        return (f"Summary: {len(self.nodes)} node(s) in {duration(elapsed)}: "
                + (", ".join(parts) or "nothing to watch"))

    def as_json(self, elapsed):
        return {"Result": READY if self.succeeded() else FAILED, "Elapsed": round(elapsed, 1),
                "Nodes": {name: node.as_json() for name, node in self.nodes.items()}}


def message_line(node, message):
    return (f"{message.get('MsgType', 'Info')}: {wall_date(message['Time'])}: "
            f"Node: {node.name}: {message['Message']}")


# Text from nodes must not move a terminal's cursor: control characters are
# shown escaped, as flunky.log has them.
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(32), *range(127, 160))}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def printable(text):
    return text.translate(_CONTROL)


def clip(text, cells):
    """``text`` cut to fit ``cells`` terminal columns (wide characters take two)."""
    used = 0
    for index, char in enumerate(text):
        width = (0 if unicodedata.combining(char)
                 else 2 if unicodedata.east_asian_width(char) in "WF" else 1)
        if used + width > cells:
            return text[:index]
        used += width
    return text


class LogDisplay:
    """Appended lines in the original fctl's formats, for logs and pipes."""

    def __init__(self, out):
        self.out = out

    def show(self, watch, events):
        for kind, node, data in events:
            if kind == "message":
                self.out.write(message_line(node, data) + "\n")
            else:
                self.out.write(f"NODE: {node.name} TIME: {wall_date(data)} STATUS: {node.state}\n")
        self.out.flush()


class LiveDisplay:
    """One line per node, redrawn in place below the messages.

    Each redraw moves the cursor up to the node lines (ANSI cursor-up),
    blanks them, prints the new messages in LogDisplay's format
    (they scroll up like any output, each once and in order) and draws the
    node lines again under them. The cursor cannot go above the top of the
    screen, so while the watch runs the node lines never take more than the
    terminal's rows but one: if there are more nodes, the failed and the
    unfinished come first and one line counts the rest. The last redraw has
    every node, to stay in the scrollback.
    """

    def __init__(self, out):
        self.out = out
        self.drawn = 0

    def size(self):
        """(columns, rows) of the terminal written to; 80 x 24 if it does not say."""
        fallback = shutil.get_terminal_size()
        try:
            size = os.get_terminal_size(self.out.fileno())
        except (AttributeError, ValueError, OSError):
            return fallback
        return size.columns or fallback.columns, size.lines or fallback.lines

    def show(self, watch, events):
        columns, rows = self.size()
        text = ""
        if self.drawn:
            # Blank the old node lines first, one by one (a message may wrap over
            # several; erasing the whole screen instead would make tmux push it
            # into the scrollback), and come back up.
            up = f"\x1b[{self.drawn}A"
            text = up + "\r\x1b[2K\x1b[1B" * self.drawn + up
        for kind, node, data in events:
            if kind == "message":
                text += printable(message_line(node, data)) + "\n"
        lines = [clip(line, columns - 1) for line in self.block(watch, rows - 1)]
        text += "".join(f"\r\x1b[2K{line}\n" for line in lines)
        self.out.write(text)
        self.out.flush()
        self.drawn = len(lines)

    def block(self, watch, room):
        """The node lines: all of them if they fit in ``room`` rows or the watch
        is over, else the most telling ones and a count of the others."""
        nodes = list(watch.nodes.values())
        name_width = max((len(node.name) for node in nodes), default=0)
        if len(nodes) > max(room, 1) and watch.pending():
            order = {FAILED: 0, TIMEOUT: 0, None: 1, READY: 2}
            nodes.sort(key=lambda node: order[node.outcome])  # stable: keeps the given order
            shown, hidden = nodes[:max(room - 1, 0)], nodes[max(room - 1, 0):]
            states = {}
            for node in hidden:
                states[node.state or "..."] = states.get(node.state or "...", 0) + 1
            more = ", ".join(f"{count} {state}" for state, count in states.items())
            return [self._line(node, name_width) for node in shown] + [
                f"({len(hidden)} more: {more})"]
        return [self._line(node, name_width) for node in nodes]

    @staticmethod
    def _line(node, name_width):
        latest = printable(" ".join(node.latest.split()))
        return (f"{node.name:<{name_width}}  {node.state or '...':<9} "
                f"{duration(node.elapsed()):>7}  {node.messages:>3} msg  {latest}")


def run(client, names, display, interval, inactivity, timeout,
        clock=time.monotonic, sleep=time.sleep):
    """Poll until every node is finished or ``timeout`` seconds pass; the Watch."""
    started = clock()
    watch = Watch(names, inactivity, started)
    while True:
        answer = client.post("/status", watch.request())
        now = clock()
        events = watch.absorb(answer, now)
        if now - started >= timeout and watch.pending():
            events += watch.expire()
        display.show(watch, events)
        if not watch.pending():
            return watch, clock() - started
        sleep(max(0.0, min(interval, started + timeout - clock())))

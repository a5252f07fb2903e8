"""The one in-memory record of every node, shared by HTTP, TFTP and DHCP.

Records keep the original flunkymaster's fields (``Allocated``, ``Activity``,
``Counts``, ``Errors``, ``Info``, ``Image``, ``Extra``) so data.json and
``/dump`` stay wire-compatible, plus what we learn of the node (``IP``,
``MAC``, ``Hostname``). A record is keyed by the name it was allocated under
(an IP or a MAC) and is also found by the other once a request shows both.
"""

import time
from dataclasses import dataclass, field

INFO = "Info"
ERROR = "Error"


@dataclass
class Node:
    key: str
    image: str
    allocated: float
    activity: float
    counts: dict = field(default_factory=lambda: {"bootconfig": 0})
    errors: int = 0
    info: list = field(default_factory=list)
    extra: dict | None = None
    ip: str | None = None
    mac: str | None = None
    hostname: str | None = None
    arch: int | None = None  # RFC 4578 architecture its PXE firmware reported

    def to_json(self):
        return {
            "Allocated": self.allocated, "Activity": self.activity,
            "Counts": self.counts, "Errors": self.errors, "Info": self.info,
            "Image": self.image, "Extra": self.extra,
            "IP": self.ip, "MAC": self.mac, "Hostname": self.hostname,
            "Arch": self.arch,
        }

    @classmethod
    def from_json(cls, key, record):
        """Rebuild a record; raises ValueError (naming record and field) if malformed."""
        if not isinstance(record, dict):
            raise ValueError(f"record {key!r} is not an object")
        try:
            return cls._from_record(key, record)
        except KeyError as exc:
            raise ValueError(f"record {key!r} lacks field {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"record {key!r}: {exc}") from None

    @classmethod
    def _from_record(cls, key, record):
        node = cls(
            key=key, image=str(record["Image"]),
            allocated=float(record["Allocated"]),
            activity=float(record.get("Activity", record["Allocated"])),
            counts={str(k): int(v) for k, v in dict(record.get("Counts") or {}).items()},
            errors=int(record.get("Errors", 0)),
            info=_messages(record.get("Info") or []),
            extra=record.get("Extra"), ip=record.get("IP"),
            mac=record.get("MAC"), hostname=record.get("Hostname"),
            arch=record.get("Arch"),
        )
        if node.extra is not None and not isinstance(node.extra, dict):
            raise ValueError("Extra is not an object")
        if not isinstance(record["Image"], str):
            raise ValueError("Image is not a string")
        return node


def _messages(info):
    """A record's Info list, checked: /status and fctl rely on every field."""
    if not isinstance(info, list):
        raise ValueError("Info is not a list")
    for number, message in enumerate(info, 1):
        if not isinstance(message, dict):
            raise ValueError(f"message {number} is not an object")
        stamp = message.get("Time")
        if not isinstance(stamp, (int, float)) or isinstance(stamp, bool):
            raise ValueError(f"message {number} has no numeric Time")
        if not isinstance(message.get("Message"), str):
            raise ValueError(f"message {number} has no Message text")
        if message.get("MsgType") not in (INFO, ERROR):
            raise ValueError(f"message {number} has MsgType {message.get('MsgType')!r}, "
                             f"not {INFO} or {ERROR}")
    return [dict(m) for m in info]


class NodeTable:
    """All node records, with lookup by IP or MAC.

    ``on_change(urgent)`` is called after every mutation; urgent changes
    (allocations) must reach disk before they are acknowledged, the rest may
    be coalesced.
    """

    def __init__(self, clock=time.time, on_change=lambda urgent: None):
        self.nodes = {}
        self._clock = clock
        self._on_change = on_change
        self._last_message_time = 0.0

    # -- loading and saving -------------------------------------------------

    def to_json(self):
        return {key: node.to_json() for key, node in self.nodes.items()}

    def load_json(self, data):
        if not isinstance(data, dict):
            raise ValueError("top level is not an object")
        nodes = {key: Node.from_json(key, record) for key, record in data.items()}
        self.nodes = nodes
        times = [m.get("Time", 0) for n in nodes.values() for m in n.info]
        self._last_message_time = max(times, default=0.0)
        return self

    # -- lookup ---------------------------------------------------------------

    def find(self, ip=None, mac=None):
        """The record for a node seen at ``ip`` claiming ``mac`` (either may be None).

        A MAC is the stronger identity (iPXE sends it and it survives an
        address change), so it is tried first. Whatever a match teaches us
        (a MAC for an IP-keyed node, the current IP of a MAC-keyed node) is
        remembered, so the node is findable by either afterwards. A node
        allocated by IP is that IP: the MAC it showed names it only from
        there, so another machine claiming that MAC cannot touch its record.
        """
        node = None
        if mac:
            node = self.nodes.get(mac)
            if node is None:
                learnt = self._by_field("mac", mac)
                if learnt is not None and ip in (None, learnt.key):
                    node = learnt
        if node is None and ip:
            node = self.nodes.get(ip)
            if node is None:
                node = self._by_field("ip", ip)
            if node is not None and mac and node.key == node.mac and node.mac != mac:
                # Allocated by MAC and this request names another: a different
                # machine has inherited that address.
                node = None
        if node is not None:
            self._learn(node, ip, mac)
        return node

    def _by_field(self, name, value):
        for node in self.nodes.values():
            if getattr(node, name) == value:
                return node
        return None

    def _learn(self, node, ip, mac):
        changed = False
        if ip and node.ip != ip:
            for other in self.nodes.values():
                if other is not node and other.ip == ip and other.key != ip:
                    other.ip = None
            node.ip, changed = ip, True
        if (mac and node.mac != mac and node.key != node.mac
                and self._by_field("mac", mac) is None):
            # (A MAC some other record holds stays with it.)
            node.mac, changed = mac, True
        if changed:
            self._on_change(False)

    def get(self, name):
        """The record for an operator's :class:`NodeName`, or None."""
        return self.nodes.get(name.value) or self._by_field(name.kind, name.value)

    # -- mutation -------------------------------------------------------------

    def allocate(self, names, image, extra=None):
        """(Re)allocate each name to ``image`` with a fresh record, as the original."""
        now = self._clock()
        allocated = []
        for name in names:
            old = self.get(name)
            if old is not None and old.key != name.value:
                del self.nodes[old.key]
            node = Node(key=name.value, image=image, allocated=now, activity=now,
                        extra=extra, hostname=name.hostname)
            setattr(node, name.kind, name.value)
            if old is not None:
                # Keep what we learnt of the machine, not its history.
                node.ip = node.ip or old.ip
                node.mac = node.mac or old.mac
                node.hostname = node.hostname or old.hostname
                node.arch = old.arch
            self.nodes[name.value] = node
            allocated.append(node)
        self._on_change(True)
        return allocated

    def release(self, name):
        node = self.get(name)
        if node is None:
            return None
        del self.nodes[node.key]
        self._on_change(True)
        return node

    def count_fetch(self, node, path):
        """Count one fetch of ``path``; returns the count before it."""
        before = node.counts.get(path, 0)
        node.counts[path] = before + 1
        node.activity = self._clock()
        self._on_change(False)
        return before

    def add_message(self, node, kind, text):
        """Append an Info or Error message; returns it.

        Message times are strictly increasing across all nodes (microsecond
        steps), so a client polling with the last Time it saw never misses
        nor repeats one, even within one second.
        """
        now = self._clock()
        stamp = round(max(now, self._last_message_time + 1e-6), 6)
        self._last_message_time = stamp
        message = {"Time": stamp, "Message": text, "MsgType": kind}
        node.info.append(message)
        node.activity = now
        if kind == ERROR:
            node.errors += 1
        self._on_change(False)
        return message

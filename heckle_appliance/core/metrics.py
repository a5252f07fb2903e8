"""Counters every adapter feeds, exposed in the Prometheus text format.

Kept in the core so that HTTP, TFTP and DHCP count into one place and the
/metrics page needs no knowledge of any of them.
"""

from collections import defaultdict

# name -> (type, help). Declared up front so an idle appliance still
# exposes every series a dashboard expects.
SERIES = {
    "heckle_requests_total": ("counter", "Requests served, by protocol and outcome."),
    "heckle_bytes_sent_total": ("counter", "Payload bytes sent, by protocol."),
    "heckle_tftp_transfers_total": ("counter", "TFTP transfers, by result "
                                               "(started, completed, failed, probed: "
                                               "ended by the client after a tsize probe)."),
    "heckle_dhcp_replies_total": ("counter", "proxyDHCP replies, by client type."),
    "heckle_render_errors_total": ("counter", "Template renders that failed."),
    "heckle_checkpoint_writes_total": ("counter", "data.json writes."),
    "heckle_checkpoint_seconds_total": ("counter", "Time spent writing data.json."),
    "heckle_checkpoint_last_seconds": ("gauge", "Duration of the last data.json write."),
    "heckle_nodes": ("gauge", "Allocated nodes, by state."),
}


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    def __init__(self):
        self._values = defaultdict(float)  # (name, sorted label items) -> value

    def inc(self, name, amount=1, **labels):
        if name not in SERIES:
            raise KeyError(f"undeclared metric {name}")
        self._values[name, tuple(sorted(labels.items()))] += amount

    def set(self, name, value, **labels):
        self._values[name, tuple(sorted(labels.items()))] = value

    def clear(self, name):
        """Drop every sample of ``name``: a gauge whose label sets come and go."""
        for key in [key for key in self._values if key[0] == name]:
            del self._values[key]

    def value(self, name, **labels):
        return self._values.get((name, tuple(sorted(labels.items()))), 0)

    def exposition(self):
        """The Prometheus text format (version 0.0.4)."""
        lines = []
        for name, (kind, help_text) in SERIES.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            samples = sorted((labels, value) for (n, labels), value in self._values.items()
                             if n == name)
            if not samples and kind == "counter" and name != "heckle_requests_total":
                samples = [((), 0)]
            for labels, value in samples:
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                number = int(value) if float(value).is_integer() else repr(float(value))
                lines.append(f"{name}{{{label_text}}} {number}" if label_text
                             else f"{name} {number}")
        return "\n".join(lines) + "\n"

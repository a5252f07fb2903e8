"""Throw-away network namespaces for tests that need non-loopback addresses.

Two namespaces joined by a veth pair; nothing touches the host's own
interfaces, and everything is deleted afterwards.
"""

import contextlib
import os
import subprocess
import uuid

import pytest

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="network namespaces need root (CI runs as root)")


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


@contextlib.contextmanager
def linked_namespaces(subnet="10.203.0"):
    """Yield (server_ns, client_ns, server_ip, client_ip) joined by a veth pair."""
    tag = uuid.uuid4().hex[:6]
    server, client = f"hk-s-{tag}", f"hk-c-{tag}"
    try:
        sh("ip", "netns", "add", server)
        sh("ip", "netns", "add", client)
        sh("ip", "link", "add", f"hs{tag}", "netns", server, "type", "veth",
           "peer", "name", f"hc{tag}", "netns", client)
        for ns, dev, ip in ((server, f"hs{tag}", f"{subnet}.1"), (client, f"hc{tag}", f"{subnet}.2")):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield server, client, f"{subnet}.1", f"{subnet}.2"
    finally:
        for ns in (server, client):
            sh("ip", "netns", "del", ns, check=False)


def in_ns(ns, *args, **kw):
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True,
                          timeout=60, **kw)

"""What flunkymaster says, and whether it starts, when the proxyDHCP has no
usable address or interface. Each run is in a network namespace of its own
(no default route there), so nothing answers DHCP on the host."""

import subprocess
import time

import pytest

from dhcp_lab import FLUNKYMASTER, add_link, make_repository
from netns import linked_namespaces, needs_root, sh

pytestmark = needs_root


@pytest.fixture
def namespace():
    """(server namespace, its veth, its address); no default route."""
    with linked_namespaces(subnet="10.214.0") as (server_ns, client_ns, server_ip, _):
        yield server_ns, client_ns, server_ip


def run(namespace, tmp_path, *args, wait=15):
    """flunkymaster's exit code and stderr lines; None if it is still
    running after ``wait`` seconds (then it is stopped)."""
    repository = make_repository(tmp_path / "repository")
    stderr_path = tmp_path / "stderr"
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(["ip", "netns", "exec", namespace, str(FLUNKYMASTER),
                                 "--repository", str(repository), "--tftp-port", "0", *args],
                                stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + wait
    while proc.poll() is None and time.monotonic() < deadline:
        if "started" in _log(repository):
            break
        time.sleep(0.05)
    code = proc.poll()
    if code is None:
        proc.terminate()
        proc.wait(timeout=10)
    return code, stderr_path.read_text().splitlines(), _log(repository)


def _log(repository):
    path = repository / "flunky.log"
    return path.read_text() if path.exists() else ""


def test_proxydhcp_refuses_to_advertise_loopback(namespace, tmp_path):
    """No --address, no --interface, no default route: the address found is
    127.0.0.1, which would send nodes to boot from themselves."""
    code, stderr, log = run(namespace[0], tmp_path)
    assert code == 1
    assert len(stderr) == 1, stderr
    assert stderr[0].startswith("flunkymaster: proxyDHCP would tell nodes to boot from "
                                "127.0.0.1, a loopback address")
    assert "--address IP" in stderr[0]
    assert "started" not in log


@pytest.mark.parametrize("args", [["--address", "127.0.0.1"], ["--interface", "lo"]])
def test_a_loopback_address_or_interface_is_refused_too(namespace, tmp_path, args):
    code, stderr, _ = run(namespace[0], tmp_path, *args)
    assert code == 1
    assert stderr == ["flunkymaster: proxyDHCP would tell nodes to boot from 127.0.0.1, a "
                      "loopback address: --address IP gives the address nodes reach us on "
                      "(or --interface IF, its address)"]


def test_loopback_is_fine_with_proxydhcp_off(namespace, tmp_path):
    code, stderr, log = run(namespace[0], tmp_path, "--dhcp-port", "0", "--pxe-port", "0")
    assert code is None, stderr  # still running: it started
    assert "serving http://127.0.0.1:8080" in log


def test_an_interface_without_ipv4_address_needs_address(namespace, tmp_path):
    server_ns, client_ns, _ = namespace
    bare, _, bare_ip, _ = add_link(server_ns, client_ns, "10.215.0")
    sh("ip", "-n", server_ns, "addr", "del", f"{bare_ip}/24", "dev", bare)
    code, stderr, _ = run(server_ns, tmp_path, "--interface", bare)
    assert code == 1
    assert stderr == [f"flunkymaster: cannot find the IPv4 address of interface {bare}: Cannot "
                      f"assign requested address (--address IP gives the address nodes reach "
                      f"us on)"]


@pytest.mark.parametrize("address", [True, False], ids=["with --address", "without --address"])
def test_an_interface_that_does_not_exist_is_named(namespace, tmp_path, address):
    server_ns, _, server_ip = namespace
    args = ["--interface", "nosuch0", *(["--address", server_ip] if address else [])]
    code, stderr, _ = run(server_ns, tmp_path, *args)
    assert code == 1
    assert len(stderr) == 1, stderr
    line = stderr[0]
    assert line.endswith("interface nosuch0 does not exist (--interface IF names the interface "
                         "to answer DHCP on; `ip link` lists them)")
    assert "picks another port" not in line


def test_boot_file_on_4011_needs_the_pxe_port(namespace, tmp_path):
    """Offers that send PXE clients to 4011 for their file, with 4011 off."""
    code, stderr, log = run(namespace[0], tmp_path, "--address", namespace[2],
                            "--boot-file-on-4011", "--pxe-port", "0")
    assert code == 1
    assert stderr == ["flunkymaster: --boot-file-on-4011 sends PXE clients to port 4011 for "
                      "their boot file, but --pxe-port 0 turns that port off"]
    assert "started" not in log

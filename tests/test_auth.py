"""Admin auth: loopback is trusted, anyone else needs credentials."""

import subprocess
import time

import pytest

from conftest import BIN
from netns import in_ns, linked_namespaces, needs_root

pytestmark = needs_root

PORT = 8080


@pytest.fixture
def remote(repo, tmp_path):
    """flunkymaster in one namespace, a client in another, over a veth pair."""
    creds = tmp_path / "credentials"
    creds.write_text("# operators\nadmin:s3cret\nci:token-123\n")
    with linked_namespaces() as (server_ns, client_ns, server_ip, client_ip):
        proc = subprocess.Popen(
            ["ip", "netns", "exec", server_ns, str(BIN / "flunkymaster"), "--repository",
             str(repo), "--address", server_ip, "--http-port", str(PORT),
             "--credentials", str(creds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            url = f"http://{server_ip}:{PORT}"
            for _ in range(200):
                if in_ns(client_ns, "curl", "-s", "-o", "/dev/null", url + "/dump").returncode == 0:
                    break
                time.sleep(0.05)

            def curl(*args, ns=client_ns):
                result = in_ns(ns, "curl", "-s", "-w", "\n%{http_code}", *args)
                body, _, code = result.stdout.rpartition("\n")
                return int(code), body

            yield url, curl, server_ns, client_ip
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_admin_from_another_host_needs_credentials(remote):
    url, curl, _, _ = remote
    code, body = curl(url + "/dump")
    assert code == 401 and "admin credentials required" in body
    assert curl("-u", "admin:wrong", url + "/dump") == (401, "invalid admin credentials\n")
    for page in ("/", "/metrics", "/api/nodes", "/api/images"):
        assert curl(url + page)[0] == 401
        assert curl("-u", "admin:s3cret", url + page)[0] == 200
    assert curl("-u", "admin:s3cret", url + "/dump") == (200, "{}\n")
    assert curl("-H", "Authorization: Bearer token-123", url + "/dump")[0] == 200
    assert curl("-H", "Authorization: Bearer nope", url + "/dump")[0] == 401
    ctl = ["-H", "Content-Type: application/json", "-d",
           '{"Addresses": ["10.203.0.2"], "Image": "ipxe-demo"}', url + "/ctl"]
    assert curl(*ctl)[0] == 401
    assert curl("-u", "admin:s3cret", *ctl)[0] == 200


def test_node_side_needs_no_credentials_and_loopback_is_trusted(remote):
    url, curl, server_ns, client_ip = remote
    local = f"http://127.0.0.1:{PORT}"
    code, _ = curl("-H", "Content-Type: application/json", "-d",
                   f'{{"Addresses": ["{client_ip}"], "Image": "ipxe-demo"}}', local + "/ctl",
                   ns=server_ns)
    assert code == 200
    code, body = curl(url + "/bootconfig")
    assert code == 200 and "kernel" in body
    assert curl("-d", '{"Message": "hi"}', url + "/info")[0] == 200


def test_without_a_credentials_file_the_refusal_says_so(repo):
    with linked_namespaces(subnet="10.204.0") as (server_ns, client_ns, server_ip, _):
        proc = subprocess.Popen(
            ["ip", "netns", "exec", server_ns, str(BIN / "flunkymaster"), "--repository",
             str(repo), "--address", server_ip, "--http-port", str(PORT), "--tftp-port", "0",
             "--dhcp-port", "0", "--pxe-port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://{server_ip}:{PORT}/dump"
            for _ in range(200):
                result = in_ns(client_ns, "curl", "-s", "-u", "a:b", url)
                if result.returncode == 0:
                    break
                time.sleep(0.05)
            assert "no --credentials file" in result.stdout
        finally:
            proc.terminate()
            proc.wait(timeout=10)

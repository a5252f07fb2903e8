"""Nothing outside static/ and dynamic/ is ever served."""

import socket

import pytest

SECRET = "top secret outside the folder"


@pytest.fixture
def trap(appliance, repo):
    (repo / "secret.txt").write_text(SECRET)
    (repo.parent / "outside.txt").write_text(SECRET)
    (repo / "static" / "escape").symlink_to(repo.parent / "outside.txt")
    (repo / "static" / "escape_dir").symlink_to(repo.parent)
    (repo / "dynamic" / "escape").symlink_to(repo / "secret.txt")
    (repo / "static" / "inside").symlink_to(repo / "static" / "hello.txt")
    appliance.allocate("127.0.0.1")
    return appliance


def raw_get(port, target):
    """Send the request line exactly as written (http.client would normalise nothing,
    but this makes the bytes on the wire explicit)."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET " + target + b" HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("folder", [b"static", b"dynamic"])
@pytest.mark.parametrize("path", [
    b"/../secret.txt", b"/%2e%2e/secret.txt", b"/%2E%2E%2Fsecret.txt", b"/..%2fsecret.txt",
    b"/sub/../../secret.txt", b"/%2fetc%2fpasswd", b"/..%5csecret.txt", b"/%00", b"//etc/passwd",
    b"/escape", b"/escape_dir/outside.txt", b"/../../../../../../etc/passwd",
])
def test_traversal_never_serves_outside(trap, folder, path):
    status, body = raw_get(trap.port, b"/" + folder + path)
    assert status in (403, 404), (status, body)
    assert SECRET.encode() not in body and b"root:" not in body


def test_symlink_inside_the_folder_is_followed(trap):
    assert trap.get("/static/inside").text.startswith("Served as-is")


def test_refusals_are_logged(trap):
    raw_get(trap.port, b"/static/%2e%2e/secret.txt")
    assert "refused GET /static/%2e%2e/secret.txt from 127.0.0.1: 403" in trap.log()

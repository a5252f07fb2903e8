"""Real, independent TFTP clients download from the appliance; the bytes must match."""

import hashlib
import subprocess

import pytest
import tftpy
from tftp_helpers import FILES, IMAGE, make_repository, server, start  # noqa: F401 (fixture)


def run(cmd):
    subprocess.run(cmd, check=True, timeout=120, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def curl(server, name, dest, blksize=None, source="127.0.0.1"):
    options = ["--tftp-blksize", str(blksize)] if blksize else []
    run(["curl", "-sS", "--fail", "--max-time", "100", "--interface", source, "-o", str(dest),
         *options, f"tftp://127.0.0.1:{server.tftp_port}/{name}"])


def atftp(server, name, dest, blksize=1428, windowsize=8):
    run(["atftp", "--option", f"blksize {blksize}", "--option", f"windowsize {windowsize}",
         "-g", "-r", name, "-l", str(dest), "127.0.0.1", str(server.tftp_port)])


def tftp_hpa(server, name, dest, mode="octet"):
    # tftp-hpa exits 0 even after an ERROR: the content comparison is the check.
    run(["tftp", "-m", mode, "127.0.0.1", str(server.tftp_port), "-c", "get", name, str(dest)])


def tftpy_client(server, name, dest, blksize=512, source=""):
    client = tftpy.TftpClient("127.0.0.1", server.tftp_port, options={"blksize": blksize},
                              localip=source)
    client.download(name, str(dest))


CLIENTS = {
    "curl-512": lambda server, name, dest: curl(server, name, dest, 512),
    "curl-1428": lambda server, name, dest: curl(server, name, dest, 1428),
    "atftp-windowsize-8": atftp,
    "atftp-1468-windowsize-64": lambda server, name, dest: atftp(server, name, dest, 1468, 64),
    "tftp-hpa": tftp_hpa,
    "tftpy": tftpy_client,
}


def received(dest):
    # curl creates no output file for an empty download.
    return dest.read_bytes() if dest.exists() else b""


def sha(data):
    return hashlib.sha256(data).hexdigest()


# curl always asks tsize and rejects the true answer for an empty file ("invalid
# tsize", from tftpd-hpa too): the other clients cover that file.
DOWNLOADS = [(client, name) for client in CLIENTS
             for name in ("small.txt", "exact512.bin", "empty.bin", "twenty.bin", "sub/deep.txt",
                          "window.bin")
             if not (client.startswith("curl") and name == "empty.bin")]


@pytest.mark.parametrize("client, name", DOWNLOADS)
def test_client_downloads_intact(server, tmp_path, client, name):
    dest = tmp_path / "got"
    CLIENTS[client](server, name, dest)
    assert sha(received(dest)) == sha(FILES[name])


ROLLOVER = {  # at blksize 512 (tftp-hpa asks no options: 512)
    "curl-512": CLIENTS["curl-512"],
    "atftp-512-windowsize-8": lambda server, name, dest: atftp(server, name, dest, 512, 8),
    "tftp-hpa": tftp_hpa,
    "tftpy-512": tftpy_client,
}


@pytest.fixture(scope="module")
def rollover(server):
    data = bytes(range(256)) * (65536 * 2) + b"!"  # 65536 blocks of 512 and one byte
    (server.repo / "static" / "rollover.bin").write_bytes(data)
    return data


@pytest.mark.parametrize("client", ROLLOVER)
def test_block_numbers_roll_over_past_65535(server, rollover, tmp_path, client):
    dest = tmp_path / "got"
    ROLLOVER[client](server, "rollover.bin", dest)
    assert received(dest) == rollover


def test_netascii_is_converted_and_read_back_by_tftp_hpa(server, tmp_path):
    dest = tmp_path / "got"
    tftp_hpa(server, "small.txt", dest, mode="netascii")
    assert received(dest) == FILES["small.txt"]


@pytest.fixture(scope="module")
def node_server(tmp_path_factory):
    """An appliance on which 127.0.0.1 is an allocated node: not every client
    can pick its source address, and dynamic files are rendered per node."""
    running = start(make_repository(tmp_path_factory.mktemp("tftp-node") / "repository"))
    running.allocate("127.0.0.1", image=IMAGE)
    yield running
    running.stop()


@pytest.mark.parametrize("client", CLIENTS)
def test_rendered_dynamic_file_is_what_http_serves_and_counts_alike(node_server, tmp_path,
                                                                     client):
    node = "127.0.0.1"
    counts = node_server.get("/dump").json()[node]["Counts"].get("/node.env", 0)
    dest = tmp_path / "got"
    CLIENTS[client](node_server, "dynamic/node.env", dest)
    over_http = node_server.get("/dynamic/node.env", source=node)
    assert over_http.status == 200
    assert received(dest) == over_http.body
    assert b"NODE_ADDRESS=127.0.0.1\n" in over_http.body
    assert node_server.get("/dump").json()[node]["Counts"]["/node.env"] == counts + 2


def test_bootconfig_over_tftp_is_rendered_per_fetch(server, tmp_path):
    node = "127.0.0.3"
    server.allocate(node, image=IMAGE)
    texts = []
    for attempt in range(2):
        dest = tmp_path / f"got{attempt}"
        tftpy_client(server, "bootconfig", dest, source=node)
        texts.append(received(dest).decode())
    assert texts == [f"#!ipxe\necho boot {n} of {node}\n" for n in (0, 1)]


def test_transfers_are_counted_in_metrics(server, tmp_path):
    def sample(name, **labels):
        text = server.get("/metrics").text
        wanted = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "} "
        return sum(float(line[len(wanted):]) for line in text.splitlines()
                   if line.startswith(wanted))

    started = sample("heckle_tftp_transfers_total", result="started")
    completed = sample("heckle_tftp_transfers_total", result="completed")
    sent = sample("heckle_bytes_sent_total", protocol="tftp")
    curl(server, "small.txt", tmp_path / "got")
    assert sample("heckle_tftp_transfers_total", result="started") == started + 1
    assert sample("heckle_tftp_transfers_total", result="completed") == completed + 1
    assert sample("heckle_bytes_sent_total", protocol="tftp") == sent + len(FILES["small.txt"])
    with pytest.raises(subprocess.CalledProcessError):
        curl(server, "no-such-file", tmp_path / "none")
    assert sample("heckle_requests_total", protocol="tftp", code="error 1") >= 1


def test_static_fetch_counts_like_http(server, tmp_path):
    node = "127.0.0.4"
    server.allocate(node, image=IMAGE)
    curl(server, "small.txt", tmp_path / "got", source=node)
    assert server.get("/dump").json()[node]["Counts"]["/small.txt"] == 1
    assert server.get("/static/small.txt", source=node).body == FILES["small.txt"]
    assert server.get("/dump").json()[node]["Counts"]["/small.txt"] == 2


def test_ipxe_binaries_come_from_static_then_the_ipxe_folder(server, tmp_path):
    from tftp_helpers import IPXE_DIR_FILES
    curl(server, "undionly.kpxe", tmp_path / "undionly")
    curl(server, "ipxe.efi", tmp_path / "ipxe")
    assert received(tmp_path / "undionly") == IPXE_DIR_FILES["undionly.kpxe"]
    assert received(tmp_path / "ipxe") == FILES["ipxe.efi"]
    with pytest.raises(subprocess.CalledProcessError):
        curl(server, "snponly.efi", tmp_path / "snponly")
    assert "iPXE binaries found neither in static/ nor in" in server.log()
    assert ": snponly.efi\n" in server.log()
    # HTTP (UEFI HTTP boot) finds them the same way, and only them.
    assert server.get("/static/undionly.kpxe").body == IPXE_DIR_FILES["undionly.kpxe"]
    assert server.get("/static/snponly.efi").status == 404

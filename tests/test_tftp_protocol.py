"""Crafted packets from a plain UDP socket: negotiation, the state machine and
everything a broken or hostile client may send.

Where a test shows that the server did *not* send something, it relies on
loopback UDP keeping order: the unwanted packet would have been queued before
the one the test receives next.
"""

import os
import random
import socket
import struct

import pytest
from tftp_helpers import (ACK, DATA, ERROR, FILES, IMAGE, OACK, WRQ, Packet, Raw, error_of,
                          first_reply, make_repository, raw, rrq, server, start)  # noqa: F401

from heckle_appliance.tftp.server import MAX_PER_CLIENT, MAX_PROBES


def test_no_options_gets_data_1_at_once(raw):
    first = raw.request("three.bin")
    assert (first.opcode, first.number, first.payload) == (DATA, 1, FILES["three.bin"][:512])
    assert first.port != raw.server.tftp_port  # each transfer has its own TID


def test_oack_carries_only_what_was_asked_and_accepted(server):
    reply = first_reply(server, "three.bin", tsize=0)
    assert (reply.opcode, reply.options) == (OACK, {"tsize": str(len(FILES["three.bin"]))})
    reply = first_reply(server, "three.bin", blksize=1024, frobnicate=1, timeout=3, windowsize=2)
    assert reply.options == {"blksize": "1024", "timeout": "3", "windowsize": "2"}


def test_blksize_is_capped_never_raised_and_invalid_values_ignored(server):
    assert first_reply(server, "three.bin", blksize=9000).options == {"blksize": "1468"}
    assert first_reply(server, "three.bin", blksize=8).options == {"blksize": "8"}
    for bad in (65536, 65465, 7, 0, "abc", "-1", " 512", "1" * 5000):
        reply = first_reply(server, "three.bin", blksize=bad)
        assert (reply.opcode, reply.number, len(reply.payload)) == (DATA, 1, 512), bad


def test_out_of_range_timeout_and_windowsize_are_ignored(server):
    assert first_reply(server, "three.bin", timeout=0, windowsize=0, tsize=0).options == {
        "tsize": str(len(FILES["three.bin"]))}
    assert first_reply(server, "three.bin", timeout=256, windowsize=70000).opcode == DATA


def test_option_names_are_case_insensitive(raw):
    data, first = raw.download("twenty.bin", BLKSIZE=1000, TSize=0)
    assert first.options == {"blksize": "1000", "tsize": str(len(FILES["twenty.bin"]))}
    assert data == FILES["twenty.bin"]


def test_tsize_of_a_rendered_file_is_its_real_size(server):
    node = "127.0.0.20"
    server.allocate(node, image=IMAGE)
    client = Raw(server, source=node)
    data, first = client.download("dynamic/node.env", tsize=0)
    assert int(first.options["tsize"]) == len(data) > 0
    assert data == server.get("/dynamic/node.env", source=node).body


def test_tsize_probe_then_error_8_then_the_real_request_counts_once(server):
    node = "127.0.0.21"
    server.allocate(node, image=IMAGE)
    client = Raw(server, source=node)
    probe = client.request("bootconfig", tsize=0)
    assert probe.opcode == OACK
    client.send(struct.pack("!HH", ERROR, 8) + b"tsize probe\0", probe.port)
    data, first = client.download("bootconfig", tsize=0, blksize=1400)
    assert data == f"#!ipxe\necho boot 0 of {node}\n".encode()
    assert int(first.options["tsize"]) == int(probe.options["tsize"]) == len(data)
    record = server.get("/dump").json()[node]
    assert record["Counts"]["bootconfig"] == 1
    assert record["Errors"] == 0
    assert f"bootconfig to {node}: " not in server.log()  # no warning about the probe


def test_tsize_probe_is_remembered_under_the_normalised_name(server):
    node = "127.0.0.25"
    server.allocate(node, image=IMAGE)
    client = Raw(server, source=node)
    probe = client.request("/bootconfig", tsize=0)
    client.send(struct.pack("!HH", ERROR, 8) + b"tsize probe\0", probe.port)
    data, first = client.download("\\bootconfig", tsize=0)
    assert data == f"#!ipxe\necho boot 0 of {node}\n".encode()
    assert server.get("/dump").json()[node]["Counts"]["bootconfig"] == 1  # rendered once
    client.close()


def open_files_under(server, folder):
    fds = f"/proc/{server.proc.pid}/fd"
    targets = (os.path.realpath(os.path.join(fds, fd)) for fd in os.listdir(fds))
    return sum(target.startswith(str(folder) + os.sep) for target in targets)


def test_remembered_probes_are_capped(server):
    folder = server.repo / "static" / "probes"
    folder.mkdir()
    for n in range(MAX_PROBES + 72):
        (folder / f"{n}.bin").write_bytes(b"x" * n)
    client = Raw(server, source="127.0.0.26")
    for n in range(MAX_PROBES + 72):
        probe = client.request(f"probes/{n}.bin", tsize=0)
        assert probe.options == {"tsize": str(n)}
        client.send(struct.pack("!HH", ERROR, 8) + b"tsize probe\0", probe.port)
    # A request from the same TID makes the server read the last ERROR 8 first.
    assert client.download("small.txt")[0] == FILES["small.txt"]
    assert open_files_under(server, os.path.realpath(folder)) == MAX_PROBES
    client.close()


def test_one_client_address_runs_a_bounded_number_of_transfers(server):
    clients = [Raw(server, source="127.0.0.27") for _ in range(MAX_PER_CLIENT + 1)]
    firsts = [client.request("three.bin") for client in clients]
    assert [first.opcode for first in firsts] == [DATA] * MAX_PER_CLIENT + [ERROR]
    assert "too many transfers from 127.0.0.27" in firsts[-1].message
    other = Raw(server, source="127.0.0.28")
    assert other.download("small.txt")[0] == FILES["small.txt"]
    for client, first in zip(clients, firsts):
        if first.opcode == DATA:
            client.send(struct.pack("!HH", ERROR, 0) + b"enough\0", first.port)
        client.close()
    other.close()


def test_windowsize_sends_a_window_and_resumes_after_a_partial_ack(raw):
    oack = raw.request("twenty.bin", windowsize=4)
    assert oack.options == {"windowsize": "4"}
    raw.ack(0, oack.port)
    assert [raw.recv().number for _ in range(4)] == [1, 2, 3, 4]
    raw.ack(2, oack.port)  # the client lost block 3: resend from there
    assert [raw.recv().number for _ in range(4)] == [3, 4, 5, 6]


def test_big_windows_arrive_one_block_per_datagram(raw):
    oack = raw.request("window.bin", blksize=1468, windowsize=64)
    assert oack.options == {"blksize": "1468", "windowsize": "64"}
    raw.ack(0, oack.port)
    first = [raw.recv() for _ in range(64)]
    raw.ack(64, oack.port)
    rest = [raw.recv() for _ in range(37)]  # 100 full blocks, then an empty one
    assert [p.number for p in first + rest] == list(range(1, 102))
    assert b"".join(p.payload for p in first + rest) == FILES["window.bin"]
    assert [len(p.payload) for p in rest[-2:]] == [1468, 0]
    raw.ack(101, oack.port)


def test_duplicate_acks_neither_resend_nor_break_the_transfer(raw):
    first = raw.request("three.bin")
    raw.ack(1, first.port)
    assert raw.recv().number == 2
    raw.ack(1, first.port)  # duplicate: answering it would double every later block
    raw.ack(1, first.port)
    raw.ack(2, first.port)
    third = raw.recv()
    assert (third.opcode, third.number) == (DATA, 3)
    assert third.payload == FILES["three.bin"][1024:]


def test_duplicate_request_does_not_start_a_second_transfer(raw):
    raw.send(rrq("three.bin"))
    raw.send(rrq("three.bin"))
    first = raw.recv()
    raw.ack(1, first.port)
    second = raw.recv()
    assert (second.opcode, second.number, second.port) == (DATA, 2, first.port)


def test_a_new_request_from_the_tid_of_a_running_transfer_replaces_it(raw, server):
    first = raw.request("three.bin")
    raw.ack(1, first.port)
    assert raw.recv().number == 2
    raw.send(rrq("small.txt"))  # the client gave up on three.bin and asks for another file
    new = raw.recv()
    assert (new.opcode, new.number, new.payload) == (DATA, 1, FILES["small.txt"])
    assert new.port != first.port
    raw.ack(1, new.port)
    assert ("three.bin to 127.0.0.1: the client moved on to a new request at block 2 of 3"
            in server.log())


def test_the_same_request_once_the_client_has_acked_starts_over(raw):
    first = raw.request("twenty.bin")
    for block in (1, 2):
        raw.ack(block, first.port)
        assert raw.recv().number == block + 1
    again = raw.request("twenty.bin")  # e.g. a PXE ROM restarting its download
    assert (again.opcode, again.number, again.payload) == (DATA, 1, FILES["twenty.bin"][:512])
    assert again.port != first.port


def test_a_retransmitted_request_after_the_first_ack_is_still_a_retransmission(raw):
    # Sent before the client got DATA 1, read by the server after the ACK of it.
    first = raw.request("three.bin")
    raw.ack(1, first.port)
    raw.send(rrq("three.bin"))
    second = raw.recv()
    assert (second.number, second.port) == (2, first.port)
    raw.ack(2, first.port)
    third = raw.recv()
    assert (third.number, third.port, third.payload) == (3, first.port, FILES["three.bin"][1024:])


def test_unanswered_block_is_sent_again(raw):
    oack = raw.request("three.bin", timeout=1)
    raw.ack(0, oack.port)
    first = raw.recv()
    again = raw.recv()
    assert (again.opcode, again.number, again.port, again.payload) == (
        DATA, 1, first.port, first.payload)


def test_wrong_tid_gets_error_5_and_the_transfer_goes_on(raw, server):
    first = raw.request("three.bin")
    stranger = Raw(server)
    stranger.ack(1, first.port)
    assert error_of(stranger.recv())[0] == 5
    stranger.close()
    raw.ack(1, first.port)
    assert raw.recv().number == 2


def test_write_request_is_refused(raw):
    raw.send(rrq("new.bin", opcode=WRQ))
    code, message = error_of(raw.recv())
    assert code == 2 and "read-only" in message


@pytest.mark.parametrize("datagram", [
    b"", b"\x00", b"\x00\x01", b"\x00\x09abc\x00octet\x00", b"\x00\x03\x00\x01data",
    b"\x00\x04\x00\x01", b"\x00\x06blksize\x00512\x00", b"\x00\x01noterminator",
    b"\x00\x01caf\xc3\xa9\x00octet\x00", b"\x00\x01file\x00\x00",
    b"\x00\x01small.txt\x00oct\xe9t\x00", b"\x00\x01\x00octet\x00",
])
def test_malformed_requests_get_error_4_and_the_server_goes_on(raw, datagram):
    raw.send(datagram)
    code, message = error_of(raw.recv())
    assert code == 4 and message
    data, _ = raw.download("small.txt")
    assert data == FILES["small.txt"]


# RFC 2347: a server ignores options it does not know; nothing after the mode
# can spoil a request whose filename and mode are good.
@pytest.mark.parametrize("tail, options", [
    (b"x-vendor\x00caf\xc3\xa9\x00", None),  # an unknown option with a non-ASCII value
    (b"x-vendor\x00caf\xc3\xa9\x00tsize\x000\x00", {"tsize": "32"}),
    (b"\xc3\xa9\x001\x00blksize\x00100\x00", {"blksize": "100"}),  # a non-ASCII name
    (b"tsize\x000\x00\xff\xfe junk", {"tsize": "32"}),  # unterminated junk after the options
    (b"garbage", None), (b"blksize\x00", None), (b"blksize\x00\x00512\x00", None),
    (b"\x00tsize\x000\x00", None),  # an empty name: the pairs after it are off by one
    (b"blksize\x00100\x00BLKSIZE\x00200\x00", {"blksize": "100"}),  # the first one counts
])
def test_unknown_undecodable_or_junk_options_are_ignored(raw, tail, options):
    data, first = raw.fetch(rrq("small.txt") + tail)
    assert data == FILES["small.txt"]
    if options is None:
        assert first.opcode == DATA
    else:
        assert (first.opcode, first.options) == (OACK, options)


def test_error_packet_to_the_listener_is_not_answered(raw):
    raw.send(struct.pack("!HH", ERROR, 0) + b"hello\0")
    raw.send(rrq("small.txt"))
    assert raw.recv().opcode == DATA  # no ERROR queued before it


@pytest.mark.parametrize("datagram", [b"\x00\x04\x00", b"\x00\x03\x00\x01xx", b"\x00\x07"])
def test_illegal_packet_on_a_transfer_ends_it_with_error_4(raw, datagram):
    first = raw.request("three.bin")
    raw.send(datagram, first.port)
    assert error_of(raw.recv())[0] == 4


def test_padding_after_the_request_is_tolerated(raw):
    raw.send(rrq("small.txt") + b"\0\0\0")
    assert raw.recv().payload == FILES["small.txt"]


def test_a_request_ending_with_its_mode_may_lack_the_last_nul(raw):
    assert raw.fetch(rrq("small.txt")[:-1])[0] == FILES["small.txt"]


@pytest.mark.parametrize("mode", ["OCTET", "Octet", "octet"])
def test_mode_is_case_insensitive(raw, mode):
    data, _ = raw.download("exact512.bin", mode=mode)
    assert data == FILES["exact512.bin"]


def test_netascii_is_converted(raw):
    data, _ = raw.download("small.txt", mode="NetAscii")
    assert data == b"line one\r\nline two\r\0\r\nbare cr\r\0 end\r\n"


def test_unknown_mode_is_refused(raw):
    raw.send(rrq("small.txt", mode="mail"))
    code, message = error_of(raw.recv())
    assert code == 4 and "mode" in message


@pytest.mark.parametrize("name", [
    "/small.txt", "//small.txt", "static/small.txt", "\\small.txt", "sub\\deep.txt",
    "/static/sub/deep.txt", "./small.txt"])
def test_filename_spellings(raw, name):
    expected = FILES["sub/deep.txt" if "deep" in name else "small.txt"]
    assert raw.download(name)[0] == expected


@pytest.mark.parametrize("name", [
    "../staticVars.json", "/../staticVars.json", "static/../staticVars.json",
    "..\\staticVars.json", "sub/../../staticVars.json", "dynamic/../staticVars.json",
    "static/sub/../../data.json", "escape", "/etc/passwd/../../../etc/passwd",
])
def test_paths_leaving_the_served_folders_are_refused(server, name):
    server.allocate("127.0.0.22", image=IMAGE)
    client = Raw(server, source="127.0.0.22")
    code, message = error_of(client.request(name))
    assert code == 2, message
    client.close()


def test_missing_file_is_error_1_and_logged_with_the_node(raw, server):
    code, message = error_of(raw.request("no/such/file"))
    assert code == 1 and "no/such/file" in message
    assert "tftp: refused no/such/file to 127.0.0.1: not found" in server.log()


def test_unallocated_node_cannot_fetch_dynamic_files(server):
    client = Raw(server, source="127.0.0.23")
    code, message = error_of(client.request("dynamic/node.env"))
    assert code == 2 and "not allocated" in message
    client.close()


def test_render_error_is_reported_to_client_and_log(server):
    server.allocate("127.0.0.24", image=IMAGE)
    client = Raw(server, source="127.0.0.24")
    code, message = error_of(client.request("dynamic/broken.txt"))
    assert code == 0 and "render error" in message and "broken.txt" in message
    assert "127.0.0.24 : render error" in server.log()
    client.close()


def test_boot_storm_shares_one_descriptor_and_every_client_gets_the_file(server):
    clients = [Raw(server, source=f"127.0.1.{n}") for n in range(1, 201)]
    firsts = [client.request("twenty.bin") for client in clients]
    assert len({first.port for first in firsts}) == len(firsts)  # a port (TID) each
    path = os.path.realpath(server.repo / "static" / "twenty.bin")
    fds = f"/proc/{server.proc.pid}/fd"
    opened = [fd for fd in os.listdir(fds) if os.path.realpath(os.path.join(fds, fd)) == path]
    assert len(opened) == 1
    received = [bytearray(first.payload) for first in firsts]
    for block in range(1, 20):
        for client, first in zip(clients, firsts):
            client.ack(block, first.port)
        for client, data in zip(clients, received):
            packet = client.recv()
            assert packet.number == block + 1
            data += packet.payload
    for client, first in zip(clients, firsts):
        client.ack(20, first.port)
        client.close()
    assert all(bytes(data) == FILES["twenty.bin"] for data in received)


def test_retransmissions_are_bounded_then_the_transfer_ends(raw, server):
    first = raw.request("three.bin")
    copies = [raw.recv() for _ in range(5)]
    assert all((c.opcode, c.number, c.port) == (DATA, 1, first.port) for c in copies)
    code, message = error_of(raw.recv())
    assert code == 0 and "timed out" in message
    assert "tftp: three.bin to 127.0.0.1: no answer after 5 retransmissions" in server.log()


def test_random_datagrams_crash_nothing(server):
    rng = random.Random(7)
    fuzzer = Raw(server)
    fuzzer.sock.setblocking(False)
    victim = Raw(server)
    transfer = victim.request("twenty.bin")
    for _ in range(30):
        for _ in range(100):
            datagram = bytes([0, rng.randrange(8)]) + rng.randbytes(rng.randrange(40))
            fuzzer.send(datagram, rng.choice([server.tftp_port, transfer.port]))
        # Wait until the listener has got through the batch, so that the
        # kernel does not drop our last request for a full socket buffer.
        first_reply(server, "small.txt")
    fuzzer.close()
    victim.close()
    assert Raw(server).download("twenty.bin")[0] == FILES["twenty.bin"]
    assert "internal error" not in server.log()


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture(scope="module", params=["", "::"], ids=["ipv4-any", "dual-stack-any"])
def all_addresses(request, tmp_path_factory):
    """The appliance listening on every address (--listen '' or '::')."""
    if request.param == "::" and not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    root = make_repository(tmp_path_factory.mktemp("tftp-any") / "repository")
    running = start(root, "--listen", request.param)
    yield running
    running.stop()


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "127.0.0.3", "::1"])
def test_listening_on_every_address_answers_from_the_address_asked(all_addresses, address):
    if ":" in address and "::" not in all_addresses.args:
        pytest.skip("not applicable: an IPv4-only listener is not reachable on ::1")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as client:
        client.bind(("::1" if ":" in address else "127.0.0.1", 0))
        client.settimeout(10)
        client.sendto(rrq("three.bin"), (address, all_addresses.tftp_port))
        received = bytearray()
        while True:
            datagram, source = client.recvfrom(1000)
            assert source[0] == address
            packet = Packet(datagram, source[1])
            assert packet.opcode == DATA
            received += packet.payload
            client.sendto(struct.pack("!HH", ACK, packet.number), source)
            if len(packet.payload) < 512:
                break
        assert received == FILES["three.bin"]
        client.sendto(rrq("no-such-file"), (address, all_addresses.tftp_port))
        datagram, source = client.recvfrom(1000)
        assert source[:2] == (address, all_addresses.tftp_port)  # the listener's ERROR too
        assert error_of(Packet(datagram, source[1]))[0] == 1

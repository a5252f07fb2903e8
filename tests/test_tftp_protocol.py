"""Crafted packets from a plain UDP socket: negotiation, the state machine and
everything a broken or hostile client may send.

Where a test shows that the server did *not* send something, it relies on
loopback UDP keeping order: the unwanted packet would have been queued before
the one the test receives next.
"""

import os
import random
import struct

import pytest
from tftp_helpers import (DATA, ERROR, FILES, IMAGE, OACK, WRQ, Raw, error_of,
                          first_reply, raw, rrq, server)  # noqa: F401


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
    b"\x00\x01file\x00octet\x00blksize\x00", b"\x00\x01file\x00octet\x00blksize\x00\x00512\x00",
    b"\x00\x01file\x00octet\x00garbage",
    b"\x00\x01caf\xc3\xa9\x00octet\x00", b"\x00\x01file\x00\x00",
])
def test_malformed_requests_get_error_4_and_the_server_goes_on(raw, datagram):
    raw.send(datagram)
    code, message = error_of(raw.recv())
    assert code == 4 and message
    data, _ = raw.download("small.txt")
    assert data == FILES["small.txt"]


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

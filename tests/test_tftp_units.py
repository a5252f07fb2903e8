"""The socket-free parts of the TFTP adapter: negotiation, codec, shared files."""

import os
import random
import tracemalloc

import pytest
from conftest import copy_example

from heckle_appliance.core.appliance import Appliance
from heckle_appliance.tftp import packets
from heckle_appliance.tftp.options import Limits, negotiate
from heckle_appliance.tftp.source import FileCache, Memory, Netascii, Source, to_netascii


def test_no_options_means_lockstep_512_and_no_oack():
    settings, accepted = negotiate({}, 1000, Limits())
    assert (settings.blksize, settings.windowsize, settings.timeout, accepted) == (512, 1, 1.0, {})


def test_accepted_options_are_capped_and_echoed_in_request_order():
    settings, accepted = negotiate(
        {"WindowSize": "500", "blksize": "9000", "tsize": "0", "timeout": "7", "foo": "1"},
        12345, Limits(max_blksize=1468, max_windowsize=64))
    assert accepted == {"blksize": 1468, "tsize": 12345, "timeout": 7, "windowsize": 64}
    assert (settings.blksize, settings.windowsize, settings.timeout) == (1468, 64, 7.0)


@pytest.mark.parametrize("name, value", [
    ("blksize", "7"), ("blksize", "65465"), ("blksize", "1_000"), ("blksize", "+512"),
    ("timeout", "0"), ("timeout", "256"), ("windowsize", "0"), ("tsize", "-1"),
    ("tsize", "9" * 30)])
def test_invalid_values_are_ignored(name, value):
    assert negotiate({name: value}, 10, Limits())[1] == {}


def test_error_packet_carries_its_message_even_for_code_0():
    assert packets.error(0, "render error: x") == b"\x00\x05\x00\x00render error: x\x00"


def test_request_parsing_tolerates_padding_and_refuses_the_undecodable():
    request = packets.parse_request(b"\x00\x01a/b\x00OCTET\x00BlkSize\x001024\x00\x00\x00")
    assert (request.filename, request.mode, request.options) == ("a/b", "octet",
                                                                 {"BlkSize": "1024"})
    with pytest.raises(packets.Malformed):
        packets.parse_request(b"\x00\x01\xff\xfe\x00octet\x00")


def test_oack_encoding():
    assert packets.oack({"blksize": 1428, "tsize": 5}) == b"\x00\x06blksize\x001428\x00tsize\x005\x00"


def test_netascii_conversion():
    assert to_netascii(b"a\nb\r\nc\r") == b"a\r\nb\r\0\r\nc\r\0"


def test_netascii_blocks_match_the_whole_conversion_at_any_offset(tmp_path):
    rng = random.Random(5)
    for size in (0, 1, 4095, 4096, 4097, 3 * 4096 + 17, 200000):
        data = bytes(rng.choice(b"ab\r\n") for _ in range(size))
        whole = to_netascii(data)
        path = tmp_path / f"text{size}"
        path.write_bytes(data)
        shared = FileCache().open(str(path))
        for content in (Netascii(Memory(data)), Netascii(shared)):
            assert content.size == len(whole)
            for _ in range(200):
                offset, length = rng.randrange(len(whole) + 2), rng.choice([1, 8, 512, 1468])
                assert bytes(content.read(length, offset)) == whole[offset:offset + length]
            content.release()


def test_netascii_transfers_hold_no_copy_of_the_file(tmp_path):
    repo = copy_example(tmp_path / "repository")
    (repo / "static" / "newlines.txt").write_bytes(b"\n" * (1 << 20))
    source = Source(Appliance(str(repo), "http://127.0.0.1", lambda *args, **kw: None))
    opened = [source.open("127.0.0.1", "newlines.txt", "netascii")]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        opened += [source.open("127.0.0.1", "newlines.txt", "netascii") for _ in range(50)]
        blocks = [bytes(content.read(1428, 1428 * 700)) for content in opened]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        for content in opened:
            content.release()
    assert opened[-1].size == 2 << 20
    assert blocks == [b"\r\n" * 714] * len(opened)
    # Each used to hold its own 2 MiB converted copy: 100 MiB here.
    assert held < 50 * 16 * 1024


def test_file_cache_shares_one_descriptor_per_version(tmp_path):
    path = tmp_path / "kernel"
    path.write_bytes(b"old contents")
    cache = FileCache()
    first, second = cache.open(str(path)), cache.open(str(path))
    assert first is second and first.read(3, 4) == b"con"
    replacement = tmp_path / "kernel.new"
    replacement.write_bytes(b"new")
    os.replace(replacement, path)  # how operators should update a file being served
    third = cache.open(str(path))
    assert third is not first and third.read(10, 0) == b"new"
    assert first.read(3, 0) == b"old"  # running transfers finish on their version
    for content in (first, second, third):
        content.release()
    with pytest.raises(OSError):
        os.fstat(first.fd)

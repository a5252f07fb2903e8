"""The socket-free parts of the TFTP adapter: negotiation, codec, shared files."""

import os

import pytest

from heckle_appliance.tftp import packets
from heckle_appliance.tftp.options import Limits, negotiate
from heckle_appliance.tftp.source import FileCache, to_netascii


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

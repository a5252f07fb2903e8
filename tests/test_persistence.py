"""data.json: reload on restart, atomic writes, corrupt files moved aside."""

import json
import os
import shutil
import signal
import threading
import time

import pytest

from conftest import Appliance, free_port


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_data_json_created_on_first_start(appliance):
    assert appliance.data() == {}


def test_data_json_keeps_the_umasks_mode_then_the_operators(appliance, repo):
    umask = os.umask(0o022)
    os.umask(umask)
    assert (repo / "data.json").stat().st_mode & 0o777 == 0o666 & ~umask
    os.chmod(repo / "data.json", 0o640)
    appliance.allocate("127.0.0.1")
    assert (repo / "data.json").stat().st_mode & 0o777 == 0o640


def test_restart_reloads_everything(appliance):
    appliance.allocate("127.0.0.1", "52:54:00:00:00:01", extra={"k": "v"})
    appliance.get("/bootconfig")
    appliance.post("/info", {"Message": "half way"})
    before = appliance.get("/dump").json()
    assert appliance.stop() == 0
    assert "stopped; 2 node(s) saved" in appliance.log()
    appliance.start()
    assert appliance.get("/dump").json() == before
    # The boot-once counter survived: the next bootconfig is the local-boot one.
    assert "exit" in appliance.get("/bootconfig").text


def test_messages_reach_disk_without_a_stop(appliance):
    appliance.allocate("127.0.0.1")
    appliance.post("/info", {"Message": "coalesced"})
    assert wait_for(lambda: appliance.data()["127.0.0.1"]["Info"][-1:] and
                    appliance.data()["127.0.0.1"]["Info"][-1]["Message"] == "coalesced")


def test_corrupt_data_json_is_moved_aside_not_overwritten(repo):
    (repo / "data.json").write_text('{"127.0.0.1": {"Image": ')
    server = Appliance(repo, free_port()).start()
    try:
        aside = [p for p in os.listdir(repo) if p.startswith("data.json.corrupt-")]
        assert len(aside) == 1
        assert (repo / aside[0]).read_text() == '{"127.0.0.1": {"Image": '
        assert f"moved it to {repo / aside[0]}" in server.log()
        assert " - ERROR - " in server.log()
        assert server.data() == {}
    finally:
        server.stop()


@pytest.mark.parametrize("record, problem", [
    ({"Image": "a"}, "record '127.0.0.1' lacks field 'Allocated'"),
    ({"Image": 5, "Allocated": 1}, "record '127.0.0.1': Image is not a string"),
    ({"Image": "a", "Allocated": "soon"}, "record '127.0.0.1': could not convert string"),
    # Messages are read by /status and fctl: a bad one would break them later.
    ({"Image": "a", "Allocated": 1, "Info": [{"Time": "abc"}]},
     "record '127.0.0.1': message 1 has no numeric Time"),
    ({"Image": "a", "Allocated": 1, "Info": [{"Time": 1, "MsgType": "Info"}]},
     "record '127.0.0.1': message 1 has no Message text"),
    ({"Image": "a", "Allocated": 1, "Info": [{"Time": 1, "Message": "m", "MsgType": "Debug"}]},
     "record '127.0.0.1': message 1 has MsgType 'Debug', not Info or Error"),
    ({"Image": "a", "Allocated": 1, "Info": "none"}, "record '127.0.0.1': Info is not a list"),
    ({"Image": "a", "Allocated": 1, "Extra": {"x": float("nan")}}, "NaN is not a JSON number"),
])
def test_malformed_record_is_also_moved_aside_and_named(repo, record, problem):
    (repo / "data.json").write_text(json.dumps({"127.0.0.1": record}))
    server = Appliance(repo, free_port()).start()
    try:
        assert any(p.startswith("data.json.corrupt-") for p in os.listdir(repo))
        assert problem in server.log()
    finally:
        server.stop()


def test_unreadable_data_json_stops_the_start_and_says_why(repo):
    """Not corrupt but unreadable (here a folder): starting empty would hide
    the mistake, and nothing may be written over it."""
    (repo / "data.json").mkdir()
    server = Appliance(repo, free_port())
    server.start(expect_ready=False)
    assert server.proc.wait(timeout=20) == 1
    stderr = server.stderr_path.read_text()
    assert stderr.strip().splitlines() == [
        f"flunkymaster: cannot read {repo / 'data.json'}: Is a directory"]
    assert (repo / "data.json").is_dir()
    assert not [p for p in os.listdir(repo) if p.startswith("data.json.")]


def test_a_second_corrupt_file_in_the_same_second_keeps_the_first(repo):
    for text in ("first {", "second {"):
        (repo / "data.json").write_text(text)
        server = Appliance(repo, free_port()).start()
        server.stop()
    aside = sorted(p for p in os.listdir(repo) if p.startswith("data.json.corrupt-"))
    assert sorted((repo / p).read_text() for p in aside) == ["first {", "second {"]


def test_an_allocation_that_cannot_be_saved_is_refused_and_undone(appliance, repo):
    appliance.allocate("127.0.0.1")
    # data.json replaced by a non-empty folder: the rename of the next write fails.
    (repo / "data.json").unlink()
    (repo / "data.json").mkdir()
    (repo / "data.json" / "keep").write_text("")
    reply = appliance.post("/ctl", {"Addresses": ["127.0.0.2"], "Image": "ipxe-demo"})
    assert reply.status == 503
    assert reply.text == (f"cannot write {repo / 'data.json'}: Is a directory; "
                          f"nothing was changed\n")
    assert list(appliance.get("/dump").json()) == ["127.0.0.1"]
    shutil.rmtree(repo / "data.json")
    # The write is retried on its own; nothing acknowledged was lost.
    assert wait_for(lambda: (repo / "data.json").is_file() and list(appliance.data()) == [
        "127.0.0.1"])


def test_kill_9_while_allocating_never_tears_data_json(repo):
    """Every data.json left by a crash parses and holds every acknowledged allocation."""
    for round_ in range(3):
        server = Appliance(repo, free_port()).start()
        acknowledged, stop = [], threading.Event()

        def hammer(base):
            n = 0
            while not stop.is_set():
                address = f"127.{round_ + 1}.{base}.{n % 250 + 1}"
                try:
                    reply = server.post("/ctl", {"Addresses": [address], "Image": "ipxe-demo"})
                    if reply.status == 200:
                        acknowledged.append(address)
                    server.post("/status", {})
                except OSError:
                    return
                n += 1

        workers = [threading.Thread(target=hammer, args=(b,)) for b in range(4)]
        for w in workers:
            w.start()
        wait_for(lambda: len(acknowledged) > 20 + 10 * round_)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        stop.set()
        for w in workers:
            w.join()
        data = json.loads((repo / "data.json").read_text())  # must parse
        missing = [a for a in acknowledged if a not in data]
        assert not missing, f"acknowledged but lost: {missing[:5]}"
        assert not [p for p in os.listdir(repo) if p.startswith("data.json.corrupt")]
    # A restart reloads it all and clears temporaries a crash left behind.
    server = Appliance(repo, free_port()).start()
    try:
        assert set(acknowledged) <= set(server.get("/dump").json())
        assert not [p for p in os.listdir(repo) if p.startswith(".data.json.")]
    finally:
        server.stop()

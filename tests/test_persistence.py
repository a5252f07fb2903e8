"""data.json: reload on restart, atomic writes, corrupt files moved aside."""

import json
import os
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
])
def test_malformed_record_is_also_moved_aside_and_named(repo, record, problem):
    (repo / "data.json").write_text(json.dumps({"127.0.0.1": record}))
    server = Appliance(repo, free_port()).start()
    try:
        assert any(p.startswith("data.json.corrupt-") for p in os.listdir(repo))
        assert problem in server.log()
    finally:
        server.stop()


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

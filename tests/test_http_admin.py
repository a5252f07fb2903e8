"""The admin side of the HTTP API: /ctl, /status, /dump, /api."""

import json

import pytest


def test_ctl_allocates_and_is_on_disk_before_the_reply(appliance):
    reply = appliance.allocate("127.0.0.1", extra={"disk": "sda"})
    assert reply == {"Image": "ipxe-demo", "Allocated": {"127.0.0.1": "127.0.0.1"}}
    record = appliance.data()["127.0.0.1"]  # read straight after the reply
    assert record["Image"] == "ipxe-demo" and record["Extra"] == {"disk": "sda"}
    assert record["Counts"] == {"bootconfig": 0} and record["Errors"] == 0
    assert record["Info"] == [] and record["Allocated"] == record["Activity"]
    assert "allocated 127.0.0.1 to image ipxe-demo" in appliance.log()


def test_reallocation_replaces_the_record(appliance):
    appliance.allocate("127.0.0.1")
    appliance.post("/error", {"Message": "boom"})
    appliance.allocate("127.0.0.1", image="pxelinux-demo")
    record = appliance.get("/dump").json()["127.0.0.1"]
    assert record["Image"] == "pxelinux-demo" and record["Errors"] == 0 and record["Info"] == []


@pytest.mark.parametrize("spelling", ["52:54:00:AB:CD:EF", "52-54-00-ab-cd-ef", "525400abcdef",
                                      "5254.00ab.cdef"])
def test_mac_spellings_are_normalised(appliance, spelling):
    reply = appliance.allocate(spelling)
    assert reply["Allocated"] == {spelling: "52:54:00:ab:cd:ef"}
    assert list(appliance.data()) == ["52:54:00:ab:cd:ef"]


def test_hostnames_are_resolved(appliance):
    reply = appliance.allocate("localhost")
    assert reply["Allocated"] == {"localhost": "127.0.0.1"}
    assert appliance.get("/dump").json()["127.0.0.1"]["Hostname"] == "localhost"
    assert "127.0.0.1 (localhost)" in appliance.log()
    status = appliance.post("/status", {"Addresses": ["localhost"]}).json()
    assert status["localhost"]["Image"] == "ipxe-demo"


def test_unresolvable_host_is_400(appliance):
    reply = appliance.post("/ctl", {"Addresses": ["no-such-host.invalid"], "Image": "ipxe-demo"})
    assert reply.status == 400 and "cannot resolve host 'no-such-host.invalid'" in reply.text


@pytest.mark.parametrize("body, code, words", [
    ("{not json", 400, "malformed JSON body"),
    ("[1, 2]", 400, "must be a JSON object"),
    ({"Image": "ipxe-demo"}, 400, "missing field 'Addresses'"),
    ({"Addresses": [], "Image": "ipxe-demo"}, 400, "'Addresses' is empty"),
    ({"Addresses": "127.0.0.1", "Image": "ipxe-demo"}, 400, "'Addresses' must be list"),
    ({"Addresses": [5], "Image": "ipxe-demo"}, 400, "entries must be strings"),
    ({"Addresses": ["127.0.0.1"]}, 400, "missing field 'Image'"),
    ({"Addresses": ["127.0.0.1"], "Image": "ipxe-demo", "Extra": [1]}, 400, "'Extra' must be dict"),
    ({"Addresses": ["127.0.0.1"], "Image": "ipxe-demo", "Time": "x"}, 400, "'Time' must be"),
    ({"Addresses": ["127.0.0.1"], "Image": "nope"}, 404, "unknown image 'nope'"),
    # Not JSON to strict readers (jq, Go's fctl), so never let into data.json.
    ('{"Addresses": ["127.0.0.1"], "Image": "ipxe-demo", "Extra": {"a": NaN}}', 400,
     "NaN is not a JSON number"),
    ('{"Addresses": ["127.0.0.1"], "Image": "ipxe-demo", "Time": Infinity}', 400,
     "Infinity is not a JSON number"),
    ('{"Addresses": ["127.0.0.1"], "Image": "ipxe-demo", "Time": 1e400}', 400,
     "number 1e400 is out of range"),
    ("[" * 100000 + "]" * 100000, 400, "nested too deeply"),
])
def test_ctl_validation(appliance, body, code, words):
    reply = appliance.post("/ctl", body)
    assert reply.status == code, reply.text
    assert words in reply.text
    assert appliance.get("/dump").json() == {}


def test_invalid_image_is_reported_at_start_and_refused(repo):
    from conftest import Appliance, free_port
    (repo / "images" / "broken").mkdir()
    (repo / "images" / "broken" / "bootconfig").write_text("#!ipxe\n")
    server = Appliance(repo, free_port()).start()
    try:
        assert "image broken is invalid (missing status)" in server.log()
        reply = server.post("/ctl", {"Addresses": ["127.0.0.1"], "Image": "broken"})
        assert reply.status == 409 and "image 'broken' is invalid: missing status" in reply.text
        images = server.get("/api/images").json()
        assert images["broken"] == {"Valid": False, "Problem": "missing status"}
        assert images["ipxe-demo"] == {"Valid": True, "Problem": None}
        server.allocate("127.0.0.1")  # other images keep working
    finally:
        server.stop()


def test_oversized_body_is_413(appliance):
    body = json.dumps({"Addresses": ["127.0.0.1"], "Image": "x" * (1024 * 1024)})
    assert appliance.post("/ctl", body).status == 413


def test_status_returns_only_newer_messages_and_a_cursor(appliance):
    appliance.allocate("127.0.0.1")
    for n in range(5):  # all within the same second
        appliance.post("/info", {"Message": f"step {n}"})
    first = appliance.post("/status", {"Addresses": ["127.0.0.1"], "Time": 0}).json()["127.0.0.1"]
    assert [m["Message"] for m in first["Info"]] == [f"step {n}" for n in range(5)]
    times = [m["Time"] for m in first["Info"]]
    assert times == sorted(set(times))  # strictly increasing
    assert first["Cursor"] == times[-1]
    appliance.post("/info", {"Message": "step 5"})
    second = appliance.post("/status", {"Addresses": ["127.0.0.1"],
                                        "Time": first["Cursor"]}).json()["127.0.0.1"]
    assert [m["Message"] for m in second["Info"]] == ["step 5"]
    # A whole-second Time (what the original fctl sends) loses nothing posted in that second.
    third = appliance.post("/status", {"Addresses": ["127.0.0.1"],
                                       "Time": int(times[0])}).json()["127.0.0.1"]
    assert len(third["Info"]) >= 1 and third["Info"][-1]["Message"] == "step 5"


def test_status_of_unallocated_and_of_all(appliance):
    appliance.allocate("127.0.0.1")
    reply = appliance.post("/status", {"Addresses": ["127.0.0.3"]}).json()
    assert reply["127.0.0.3"]["State"] == "Unallocated"
    everyone = appliance.post("/status", {}).json()
    assert list(everyone) == ["127.0.0.1"] and everyone["127.0.0.1"]["State"] == "Building"


def test_status_keeps_original_fields(appliance):
    appliance.allocate("127.0.0.1")
    entry = appliance.post("/status", {"Addresses": ["127.0.0.1"], "Time": 0}).json()["127.0.0.1"]
    for key in ("Status", "LastActivity", "Info", "State"):
        assert key in entry


def test_inactive_node_is_failed(repo):
    from conftest import Appliance, free_port
    server = Appliance(repo, free_port(), ["--inactivity-timeout", "0.5"]).start()
    try:
        server.allocate("127.0.0.1")
        import time
        time.sleep(1)
        entry = server.post("/status", {"Addresses": ["127.0.0.1"]}).json()["127.0.0.1"]
        assert entry["State"] == "Failed" and entry["Status"] == "Building"
    finally:
        server.stop()


def test_status_template_error_fails_the_node_without_piling_up_errors(appliance, repo):
    appliance.allocate("127.0.0.1")
    (repo / "images" / "ipxe-demo" / "status").write_text("$nonsense\n")
    for _ in range(3):
        entry = appliance.post("/status", {"Addresses": ["127.0.0.1"]}).json()["127.0.0.1"]
        assert entry["State"] == "Failed" and "nonsense" in entry["Status"]
    assert appliance.get("/dump").json()["127.0.0.1"]["Errors"] == 0
    assert appliance.log().count("status unavailable: images/ipxe-demo/status, line 1") == 1


def test_api_nodes_lists_records_with_state(appliance):
    appliance.allocate("127.0.0.1", "52:54:00:00:00:09")
    nodes = appliance.get("/api/nodes").json()
    assert sorted(n["Key"] for n in nodes) == ["127.0.0.1", "52:54:00:00:00:09"]
    assert {n["State"] for n in nodes} == {"Building"}


def test_unknown_routes_are_plain_404(appliance):
    for path in ("/nope", "/api/nope", "/api/nodes/x/y"):
        reply = appliance.get(path)
        assert reply.status == 404, path
        assert reply.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("method, path, allowed", [
    ("GET", "/ctl", "POST"), ("HEAD", "/ctl", "POST"), ("PUT", "/status", "POST"),
    ("HEAD", "/info", "POST"), ("DELETE", "/dump", "GET"), ("POST", "/bootconfig", "GET"),
])
def test_wrong_methods_are_plain_405(appliance, method, path, allowed):
    reply = appliance.request(method, path)
    assert reply.status == 405
    assert reply.headers["Allow"] == allowed
    if method != "HEAD":
        assert reply.text == f"{method} is not allowed here; use {allowed}\n"


def test_head_works_where_get_does(appliance):
    reply = appliance.request("HEAD", "/static/hello.txt")
    assert reply.status == 200 and reply.body == b""
    assert int(reply.headers["Content-Length"]) > 0


def test_head_never_counts_as_a_nodes_fetch(appliance):
    """A probe (curl -I) must not use up the boot-once install."""
    appliance.allocate("127.0.0.1")
    for path in ("/bootconfig", "/install", "/dynamic/node.env"):
        reply = appliance.request("HEAD", path)
        assert reply.status == 405 and reply.headers["Allow"] == "GET", path
    assert appliance.request("HEAD", "/static/hello.txt").status == 200
    record = appliance.get("/dump").json()["127.0.0.1"]
    assert record["Counts"] == {"bootconfig": 0} and record["Info"] == []
    assert "kernel " in appliance.get("/bootconfig").text


def test_empty_status_body_means_every_node(appliance):
    appliance.allocate("127.0.0.1")
    assert list(appliance.post("/status", "").json()) == ["127.0.0.1"]

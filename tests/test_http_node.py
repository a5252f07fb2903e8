"""The node side of the HTTP API against a real server."""

import os
import time


def test_unallocated_bootconfig_exits_to_local_disk(appliance):
    reply = appliance.get("/bootconfig")
    assert reply.status == 200
    assert reply.text.startswith("#!ipxe\n")
    assert "\nexit\n" in reply.text
    assert "127.0.0.1 is not allocated: sent it the exit bootconfig" in appliance.log()


def test_boot_once_pattern_over_two_fetches(appliance):
    appliance.allocate("127.0.0.1")
    first = appliance.get("/bootconfig").text
    second = appliance.get("/bootconfig").text
    assert first.startswith("#!ipxe\n")
    assert "kernel http://127.0.0.1:%d/static/demo/vmlinuz" % appliance.port in first
    assert "initrd http://127.0.0.1:%d/static/demo/initrd.gz" % appliance.port in first
    assert "console=ttyS0 quiet" in first  # from staticVars.json
    assert "kernel" not in second and "\nexit\n" in second
    assert "${net0/mac}" in second  # $$ escape reaches iPXE as its own variable
    node = appliance.post("/status", {"Addresses": ["127.0.0.1"], "Time": 0}).json()["127.0.0.1"]
    assert node["State"] == "Ready"
    assert [m["Message"] for m in node["Info"]] == [
        "fetched bootconfig (boot 1)", "fetched bootconfig (boot 2)"]


def test_pxelinux_bootconfig_is_served_as_ipxe(appliance):
    appliance.allocate("127.0.0.1", image="pxelinux-demo")
    text = appliance.get("/bootconfig").text
    server = f"http://127.0.0.1:{appliance.port}"
    assert text.startswith("#!ipxe\n")
    assert (f"kernel {server}/static/demo/vmlinuz initrd=initrd.gz console=ttyS0 quiet "
            f"flunky={server}\ninitrd {server}/static/demo/initrd.gz\nboot\n") in text
    assert appliance.get("/bootconfig").text.endswith("\nexit\n")  # was LOCALBOOT 0


def test_install_is_rendered_for_the_node(appliance):
    appliance.allocate("127.0.0.1")
    text = appliance.get("/install").text
    assert text.startswith("#!/bin/sh\n# Install script for ipxe-demo, rendered for 127.0.0.1")
    assert 'report info "Creating filesystems on /dev/vda1"' in text
    assert 'kind=$1; shift' in text
    assert appliance.get("/dump").json()["127.0.0.1"]["Counts"]["install"] == 1
    reply = appliance.post("/status", {"Addresses": ["127.0.0.1"]}).json()
    assert reply["127.0.0.1"]["State"] == "Building"


def test_install_for_unallocated_node_is_404_with_reason(appliance):
    reply = appliance.get("/install")
    assert reply.status == 404
    assert "127.0.0.1 is not allocated" in reply.text


def test_image_without_install_gives_404(appliance, repo):
    (repo / "images" / "ipxe-demo" / "install").unlink()
    appliance.allocate("127.0.0.1")
    reply = appliance.get("/install")
    assert reply.status == 404
    assert "has no install" in reply.text


def test_static_file_streams_with_length_and_range(appliance, repo):
    payload = bytes(range(256)) * 4096  # 1 MiB
    (repo / "static" / "sub").mkdir()
    (repo / "static" / "sub" / "blob.bin").write_bytes(payload)
    full = appliance.get("/static/sub/blob.bin")
    assert full.status == 200 and full.body == payload
    assert full.headers["Content-Length"] == str(len(payload))
    part = appliance.get("/static/sub/blob.bin", headers={"Range": "bytes=1000-1999"})
    assert part.status == 206 and part.body == payload[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(payload)}"


def test_gz_static_file_is_not_sent_as_content_encoding(appliance, repo):
    (repo / "static" / "initrd.gz").write_bytes(b"\x1f\x8b binary")
    reply = appliance.get("/static/initrd.gz")
    assert reply.body == b"\x1f\x8b binary"
    assert "Content-Encoding" not in reply.headers


def test_static_is_served_to_unallocated_nodes_and_counted_for_allocated(appliance):
    assert appliance.get("/static/hello.txt", source="127.0.0.9").status == 200
    appliance.allocate("127.0.0.1")
    appliance.get("/static/hello.txt")
    appliance.get("/static/hello.txt")
    assert appliance.get("/dump").json()["127.0.0.1"]["Counts"]["/hello.txt"] == 2


def test_dynamic_file_rendered_and_counted(appliance):
    appliance.allocate("127.0.0.1")
    text = appliance.get("/dynamic/node.env").text
    assert "NODE_ADDRESS=127.0.0.1\nNODE_IMAGE=ipxe-demo\nNODE_SITE=\"example cluster\"" in text
    assert appliance.get("/dump").json()["127.0.0.1"]["Counts"]["/node.env"] == 1


def test_missing_files_are_404(appliance):
    appliance.allocate("127.0.0.1")
    assert appliance.get("/static/nope").status == 404
    assert appliance.get("/dynamic/nope").status == 404
    assert appliance.get("/static/").status == 404


def test_info_and_error_messages(appliance):
    appliance.allocate("127.0.0.1")
    assert appliance.post("/info", {"Message": "Creating filesystems"}).status == 200
    assert appliance.post("/error", {"Message": "disk not found"}).status == 200
    record = appliance.get("/dump").json()["127.0.0.1"]
    assert [(m["MsgType"], m["Message"]) for m in record["Info"]] == [
        ("Info", "Creating filesystems"), ("Error", "disk not found")]
    assert record["Errors"] == 1
    log = appliance.log()
    assert " - INFO - 127.0.0.1 : Creating filesystems" in log
    assert " - ERROR - 127.0.0.1 : disk not found" in log
    status = appliance.post("/status", {"Addresses": ["127.0.0.1"]}).json()["127.0.0.1"]
    assert status["State"] == "Failed" and status["Status"] == "Building"


def test_unallocated_node_posting_gets_404(appliance):
    reply = appliance.post("/info", {"Message": "hello"}, source="127.0.0.7")
    assert reply.status == 404
    assert "127.0.0.7 is not allocated" in reply.text
    assert appliance.post("/error", {"Message": "x"}, source="127.0.0.7").status == 404
    assert "refused" in appliance.log()


def test_bad_message_bodies_are_400(appliance):
    appliance.allocate("127.0.0.1")
    assert appliance.post("/info", "not json").status == 400
    assert "missing field 'Message'" in appliance.post("/info", {"message": "x"}).text
    assert "must be str" in appliance.post("/info", {"Message": 3}).text


def test_a_node_only_touches_its_own_record(appliance):
    appliance.allocate("127.0.0.1", "127.0.0.2")
    appliance.post("/info", {"Message": "from two"}, source="127.0.0.2")
    dump = appliance.get("/dump").json()
    assert dump["127.0.0.1"]["Info"] == []
    assert dump["127.0.0.2"]["Info"][0]["Message"] == "from two"


def test_mac_query_joins_ip_and_mac_into_one_record(appliance):
    appliance.allocate("52-54-00-AA-BB-01")
    # iPXE asks by MAC from some address: the MAC-keyed record learns the IP.
    text = appliance.get("/bootconfig?mac=52%3A54%3A00%3Aaa%3Abb%3A01", source="127.0.0.5").text
    assert "kernel " in text
    # The ramdisk then talks from the same address without a MAC: same record.
    assert appliance.post("/info", {"Message": "by ip"}, source="127.0.0.5").status == 200
    dump = appliance.get("/dump").json()
    assert list(dump) == ["52:54:00:aa:bb:01"]
    record = dump["52:54:00:aa:bb:01"]
    assert record["IP"] == "127.0.0.5" and record["MAC"] == "52:54:00:aa:bb:01"
    assert record["Info"][-1]["Message"] == "by ip"
    by_ip = appliance.post("/status", {"Addresses": ["127.0.0.5"]}).json()["127.0.0.5"]
    assert by_ip["MAC"] == "52:54:00:aa:bb:01"


def test_ip_allocated_node_learns_its_mac(appliance):
    appliance.allocate("127.0.0.1")
    appliance.get("/bootconfig?mac=525400aabb02")
    reply = appliance.post("/status", {"Addresses": ["52:54:00:aa:bb:02"]}).json()
    assert reply["52:54:00:aa:bb:02"]["IP"] == "127.0.0.1"


def test_every_node_message_and_hostile_text_is_one_line_of_flunky_log(appliance):
    appliance.allocate("127.0.0.1")
    appliance.get("/bootconfig")
    forged = "done\n2026-01-01 00:00:00,000 - INFO - allocated 10.9.9.9 to image pwned\x00"
    appliance.post("/info", {"Message": forged})
    log = appliance.log()
    assert "127.0.0.1 : fetched bootconfig (boot 1)" in log
    assert "127.0.0.1 : done\\n2026-01-01 00:00:00,000 - INFO - allocated 10.9.9.9" in log
    assert "\x00" not in log and not any(
        line.startswith("2026-01-01") for line in log.splitlines())
    # The record keeps the text as the node sent it.
    assert appliance.get("/dump").json()["127.0.0.1"]["Info"][-1]["Message"] == forged


def test_a_claimed_mac_cannot_reach_an_ip_allocated_nodes_record(appliance):
    appliance.allocate("127.0.0.6", "127.0.0.8")
    appliance.get("/bootconfig?mac=52:54:00:77:00:06", source="127.0.0.6")
    # Another machine, unallocated, then an allocated one, claim that MAC.
    reply = appliance.post("/error?mac=52:54:00:77:00:06", {"Message": "hijack"},
                           source="127.0.0.7")
    assert reply.status == 404
    appliance.post("/info?mac=52:54:00:77:00:06", {"Message": "mine"}, source="127.0.0.8")
    dump = appliance.get("/dump").json()
    victim = dump["127.0.0.6"]
    assert victim["IP"] == "127.0.0.6" and victim["MAC"] == "52:54:00:77:00:06"
    assert victim["Errors"] == 0 and [m["Message"] for m in victim["Info"]] == [
        "fetched bootconfig (boot 1)"]
    assert dump["127.0.0.8"]["MAC"] is None
    assert [m["Message"] for m in dump["127.0.0.8"]["Info"]] == ["mine"]


def test_invalid_mac_parameter_is_400(appliance):
    reply = appliance.get("/bootconfig?mac=zz")
    assert reply.status == 400 and "invalid mac 'zz'" in reply.text


def test_render_error_names_file_line_cause_and_is_recorded(appliance, repo):
    (repo / "images" / "ipxe-demo" / "install").write_text("#!/bin/sh\necho ok\necho $undefined_thing\n")
    appliance.allocate("127.0.0.1", "127.0.0.2")
    reply = appliance.get("/install")
    assert reply.status == 500
    assert reply.headers["Content-Type"].startswith("text/plain")
    assert "images/ipxe-demo/install" in reply.text
    assert "line 3" in reply.text and "undefined_thing" in reply.text
    record = appliance.get("/dump").json()["127.0.0.1"]
    assert record["Errors"] == 1 and "undefined_thing" in record["Info"][-1]["Message"]
    assert "render error" in appliance.log() and " - ERROR - " in appliance.log()
    # The server and the other nodes are unaffected.
    assert appliance.get("/bootconfig", source="127.0.0.2").status == 200


def test_syntax_error_in_template(appliance, repo):
    (repo / "images" / "ipxe-demo" / "bootconfig").write_text("#!ipxe\necho ok\necho ${1 +}\n")
    appliance.allocate("127.0.0.1")
    reply = appliance.get("/bootconfig")
    assert reply.status == 500 and "images/ipxe-demo/bootconfig, line 3" in reply.text


def test_edited_template_and_new_image_are_used_without_restart(appliance, repo):
    appliance.allocate("127.0.0.1")
    assert "kernel" in appliance.get("/bootconfig").text
    bootconfig = repo / "images" / "ipxe-demo" / "bootconfig"
    bootconfig.write_text("#!ipxe\necho edited for $Address\nexit\n")
    later = time.time() + 5
    os.utime(bootconfig, (later, later))
    assert "echo edited for 127.0.0.1" in appliance.get("/bootconfig").text

    new = repo / "images" / "fresh"
    new.mkdir()
    (new / "bootconfig").write_text("#!ipxe\necho fresh image $IMAGE\n")
    (new / "status").write_text("Building\n")
    appliance.allocate("127.0.0.1", image="fresh")
    assert appliance.get("/bootconfig").text == "#!ipxe\necho fresh image fresh\n"


def test_static_vars_broken_while_running_keeps_the_last_good(appliance, repo):
    appliance.allocate("127.0.0.1")
    vars_file = repo / "staticVars.json"
    vars_file.write_text('{"site": "edited", "rootfs": "/dev/sdb1", "kernel_args": ""}')
    assert "on /dev/sdb1" in appliance.get("/install").text
    vars_file.write_text('{"site": ')
    later = time.time() + 5
    os.utime(vars_file, (later, later))
    assert "on /dev/sdb1" in appliance.get("/install").text
    assert f"{vars_file}: invalid JSON at line 1" in appliance.log()
    vars_file.unlink()  # an editor's save in progress, say
    assert "on /dev/sdb1" in appliance.get("/install").text
    assert f"{vars_file} was removed; keeping the previous variables" in appliance.log()

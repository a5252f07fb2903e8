"""Both forms of the node agent against a real appliance.

The sh agent runs under dash and busybox sh, each with a PATH holding only
curl or only wget (GNU's, or busybox's as in a real ramdisk) besides the few
tools it needs, so a dependency on anything else shows up here.
"""

import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import BIN, ROOT, Appliance, copy_example, free_port
from netns import in_ns, linked_namespaces, needs_root

AGENT_SH = ROOT / "heckle_appliance" / "agent" / "flunky.sh"
BASE_TOOLS = ("cat", "chmod", "mktemp", "rm", "sed", "sleep")
BUSYBOX = shutil.which("busybox")
NODE = "127.0.0.1"


class Agent:
    """One form of the agent: how to run it and the environment it gets."""

    def __init__(self, command, path=None):
        self.command = [str(part) for part in command]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FLUNKY_")}
        if path is not None:
            self.env["PATH"] = str(path)

    def popen(self, *args, **env):
        return subprocess.Popen([*self.command, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**self.env, **env})

    def run(self, *args, **env):
        proc = self.popen(*args, **env)
        out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def tool_dir(path, tools, busybox_tools=()):
    """A bin folder with just ``tools`` (from the host) and ``busybox_tools``."""
    path.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not installed")
        (path / tool).symlink_to(found)
    for tool in busybox_tools:
        (path / tool).symlink_to(BUSYBOX)
    return path


def make_agent(kind, folder):
    if kind == "python":
        return Agent([BIN / "flunky"])
    shell, tool = kind.split("+")
    if shell == "busybox":
        if BUSYBOX is None:
            pytest.skip("busybox is not installed (Debian: busybox-static)")
        applets = BASE_TOOLS + (("wget",) if tool == "wget" else ())
        hosted = ("curl",) if tool == "curl" else ()
        return Agent([BUSYBOX, "sh", AGENT_SH], tool_dir(folder, hosted, applets))
    return Agent(["/bin/sh", AGENT_SH], tool_dir(folder, BASE_TOOLS + (tool,)))


KINDS = ["python", "sh+curl", "sh+wget", "busybox+wget", "busybox+curl"]


@pytest.fixture(params=KINDS)
def agent(request, tmp_path):
    return make_agent(request.param, tmp_path / "bin")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = copy_example(tmp_path_factory.mktemp("agent") / "repository")
    (repo / "dynamic" / "exit7.sh").write_text('#!/bin/sh\necho "ran for $Address"\nexit 7\n')
    appliance = Appliance(repo, free_port()).start()
    yield appliance
    appliance.stop()


@pytest.fixture
def node(server):
    """A freshly allocated node, knowing no MAC yet; the agent talks from its address."""
    server.post("/release", {"Addresses": [NODE]})
    server.allocate(NODE)
    return server.url


def record(server):
    return server.get("/dump").json()[NODE]


def test_info_and_error_messages_name_the_node_by_mac(agent, server, node):
    text = 'say "hi" \\ there\twith a tab\nand a second line'
    result = agent.run("-S", node, "-i", text, FLUNKY_MAC="52:54:00:aa:bb:cc")
    assert result.returncode == 0, result.stderr
    assert agent.run("-S", node, "-e", "broke", FLUNKY_MAC="52:54:00:aa:bb:cc").returncode == 0
    state = record(server)
    assert [(m["MsgType"], m["Message"]) for m in state["Info"]] == [("Info", text),
                                                                     ("Error", "broke")]
    assert state["Errors"] == 1 and state["MAC"] == "52:54:00:aa:bb:cc"


def test_get_prints_the_file(agent, server, node):
    result = agent.run("-S", node + "/", "-g", "dynamic/node.env", FLUNKY_MAC="")
    assert result.returncode == 0, result.stderr
    assert result.stdout == server.get("/dynamic/node.env").text
    assert "NODE_ADDRESS=127.0.0.1" in result.stdout
    assert record(server)["MAC"] is None  # FLUNKY_MAC empty: send none


def test_execute_runs_the_script_and_exits_with_its_status(agent, server, node, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = agent.run("-S", node, "-x", "/dynamic/exit7.sh", TMPDIR=str(scratch))
    assert result.returncode == 7, result.stderr
    assert result.stdout == "ran for 127.0.0.1\n"
    assert list(scratch.iterdir()) == []  # the script is deleted

    result = agent.run("-S", node, "-x", "/install", TMPDIR=str(scratch))
    assert result.returncode == 0, result.stderr
    assert [m["Message"] for m in record(server)["Info"]][-1] == "Install finished, rebooting"


@pytest.mark.parametrize("args, words", [
    (["-g", "/dynamic/missing"], "HTTP 404"),
    (["-x", "/dynamic/missing"], "HTTP 404"),
    ([], "usage"),
    (["-i", "a", "-e", "b"], ""),
    (["--retry-max", "soon", "-i", "a"], "whole seconds"),
])
def test_failures_exit_255(agent, node, args, words):
    result = agent.run("-S", node, *args)
    assert result.returncode == 255
    assert words in result.stderr and result.stdout == ""


def test_server_from_the_kernel_command_line(agent, server, node, tmp_path):
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(f"BOOT_IMAGE=/vmlinuz root=/dev/sda1 * flunky={node} quiet\n")
    assert agent.run("--cmdline", str(cmdline), "-i", "by option").returncode == 0
    assert agent.run("-i", "by env", FLUNKY_CMDLINE=str(cmdline)).returncode == 0
    assert [m["Message"] for m in record(server)["Info"]] == ["by option", "by env"]

    cmdline.write_text("quiet splash")
    result = agent.run("--cmdline", str(cmdline), "-i", "lost")
    assert result.returncode == 255
    assert f"no -S URL and no flunky=<url> in {cmdline}" in result.stderr


def test_retries_until_the_server_listens(agent, tmp_path):
    port = free_port()
    proc = agent.popen("-S", f"http://127.0.0.1:{port}", "--retry-max", "60", "-g",
                       "/static/hello.txt")
    try:
        first = proc.stderr.readline()
        assert "cannot reach" in first and "retrying in 1s" in first
        appliance = Appliance(copy_example(tmp_path / "repository"), port).start()
        try:
            out, _ = proc.communicate(timeout=60)
        finally:
            appliance.stop()
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert out == (appliance.repo / "static" / "hello.txt").read_text()


def test_gives_up_when_nothing_listens(agent):
    url = f"http://127.0.0.1:{free_port()}"
    result = agent.run("-S", url, "-i", "anyone?", FLUNKY_RETRY_MAX="1")
    assert result.returncode == 255
    assert result.stderr.count("retrying in 1s") == 1
    assert result.stderr.splitlines()[-1].startswith(f"flunky: cannot reach {url}")
    assert result.stderr.endswith("(gave up after 1s)\n")


def test_the_python_agent_runs_alone_from_a_copy(server, node, tmp_path):
    alone = tmp_path / "flunky.py"
    shutil.copy(AGENT_SH.with_suffix(".py"), alone)
    # -I -S: no site-packages (so not this project), no current folder.
    result = subprocess.run(["python3", "-I", "-S", str(alone), "-S", node, "-i", "alone"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert record(server)["Info"][-1]["Message"] == "alone"


def test_the_appliance_serves_the_sh_agent(server, node, tmp_path):
    reply = server.get("/flunky.sh")
    assert reply.status == 200 and reply.body == AGENT_SH.read_bytes()
    assert reply.headers["Content-Type"].startswith("text/x-shellscript")
    fetched = tmp_path / "flunky.sh"
    fetched.write_bytes(reply.body)
    assert subprocess.run(["sh", str(fetched), "-S", node, "-i", "fetched"]).returncode == 0
    assert server.get("/flunky.sh/more").status == 404


@needs_root
@pytest.mark.parametrize("kind", ["python", "sh+curl", "busybox+wget"])
def test_finds_the_mac_of_its_interface(kind, repo, tmp_path):
    agent = make_agent(kind, tmp_path / "bin")
    with linked_namespaces(subnet="10.206.0") as (server_ns, client_ns, server_ip, client_ip):
        link = in_ns(client_ns, "ip", "-o", "link", "show", "type", "veth").stdout
        device = link.split(":")[1].strip().split("@")[0]
        in_ns(client_ns, "ip", "link", "set", "dev", device, "address", "02:00:00:00:00:42")
        proc = subprocess.Popen(["ip", "netns", "exec", server_ns, str(BIN / "flunkymaster"),
                                 "--repository", str(repo), "--address", server_ip, "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            admin = "http://127.0.0.1:8080"  # from the server's namespace: no credentials

            def mac_after(*args):
                body = f'{{"Addresses": ["{client_ip}"], "Image": "ipxe-demo"}}'
                for _ in range(200):  # until the appliance listens
                    if in_ns(server_ns, "curl", "-sf", "-d", body, admin + "/ctl").returncode == 0:
                        break
                    time.sleep(0.05)
                result = in_ns(client_ns, "env", "-i", f"PATH={agent.env['PATH']}",
                               *agent.command, "-S", f"http://{server_ip}:8080", *args)
                assert result.returncode == 0, result.stderr
                dump = json.loads(in_ns(server_ns, "curl", "-s", admin + "/dump").stdout)
                return dump[client_ip]["MAC"]

            # No default route: the first interface that is up.
            assert mac_after("-i", "no route") == "02:00:00:00:00:42"
            in_ns(client_ns, "ip", "route", "add", "default", "via", server_ip)
            assert mac_after("-i", "default route") == "02:00:00:00:00:42"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_host_and_port_will_do_for_the_server(agent, server, node):
    host_port = node.removeprefix("http://")
    result = agent.run("-S", host_port, "-i", "short form", FLUNKY_MAC="")
    assert result.returncode == 0, result.stderr
    assert record(server)["Info"][-1]["Message"] == "short form"


def test_a_server_that_is_not_http_fails_at_once():
    agent = make_agent("python", None)
    result = agent.run("-S", "ftp://example.invalid/", "-i", "x", FLUNKY_RETRY_MAX="300")
    assert result.returncode == 255
    assert result.stderr == "flunky: ftp://example.invalid/: not an http:// or https:// URL\n"

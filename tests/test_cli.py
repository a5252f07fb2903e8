"""flunkymaster's start-up checks and its command line."""

import socket
import subprocess

from conftest import BIN, Appliance, free_port


def run(*args):
    return subprocess.run([str(BIN / "flunkymaster"), *args], capture_output=True, text=True,
                          timeout=30)


def test_init_creates_a_skeleton_that_starts(tmp_path):
    target = tmp_path / "fresh"
    result = run("--repository", str(target), "--init")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in target.iterdir()) == ["dynamic", "images", "static",
                                                         "staticVars.json"]
    server = Appliance(target, free_port()).start()
    try:
        assert server.get("/dump").json() == {}
    finally:
        assert server.stop() == 0


def test_init_takes_the_folder_as_its_value(tmp_path):
    target = tmp_path / "given"
    result = run("--init", str(target))
    assert result.returncode == 0, result.stderr
    assert (target / "images").is_dir() and (target / "staticVars.json").is_file()
    assert not (tmp_path / "repository").exists()


def test_missing_folders_are_named(tmp_path):
    (tmp_path / "static").mkdir()
    result = run("--repository", str(tmp_path), "--http-port", str(free_port()))
    assert result.returncode == 1
    assert f"repository {tmp_path} lacks dynamic/, images/" in result.stderr
    assert f"flunkymaster --init {tmp_path}" in result.stderr
    assert not (tmp_path / "data.json").exists()


def test_missing_repository(tmp_path):
    result = run("--repository", str(tmp_path / "nope"), "--http-port", str(free_port()))
    assert result.returncode == 1 and "does not exist" in result.stderr


def test_invalid_static_vars_names_file_line_and_column(repo):
    (repo / "staticVars.json").write_text('{\n  "a": 1,\n  "b": oops\n}\n')
    result = run("--repository", str(repo), "--http-port", str(free_port()))
    assert result.returncode == 1
    assert f"{repo / 'staticVars.json'}: invalid JSON at line 3, column 8" in result.stderr


def test_static_vars_must_be_an_object(repo):
    (repo / "staticVars.json").write_text('\n\n   ["a"]\n')
    result = run("--repository", str(repo), "--http-port", str(free_port()))
    assert result.returncode == 1
    assert (f"{repo / 'staticVars.json'}: line 3, column 4: top level must be an object, "
            f"not list") in result.stderr


def test_port_in_use_is_one_clear_line(repo):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run("--repository", str(repo), "--listen", "127.0.0.1", "--http-port", str(port))
    assert result.returncode == 1
    assert f"cannot listen for HTTP on port {port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_flushes_and_exits_zero(appliance):
    appliance.allocate("127.0.0.1")
    appliance.post("/info", {"Message": "just before stop"})
    assert appliance.stop() == 0
    assert appliance.data()["127.0.0.1"]["Info"][-1]["Message"] == "just before stop"
    log = appliance.log()
    assert " - INFO - started on " in log and " - INFO - stopped; 1 node(s) saved" in log


def test_port_zero_disables_a_service(appliance):
    log = appliance.log()
    assert f"HTTP on 127.0.0.1 port {appliance.port}" in log
    assert "TFTP on" not in log and "proxyDHCP" not in log


def test_a_second_appliance_on_the_same_repository_is_refused(appliance, repo):
    result = run("--repository", str(repo), "--http-port", str(free_port()), "--tftp-port", "0",
                 "--dhcp-port", "0", "--pxe-port", "0")
    assert result.returncode == 1
    assert (f"repository {repo} is in use by another flunkymaster (pid {appliance.proc.pid})"
            in result.stderr)


def test_a_start_that_cannot_bind_touches_nothing(repo):
    (repo / "data.json").write_text('{}\n')
    before = (repo / "data.json").stat().st_mtime_ns
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        result = run("--repository", str(repo), "--listen", "127.0.0.1", "--http-port",
                     str(free_port()), "--tftp-port", str(port), "--dhcp-port", "0",
                     "--pxe-port", "0")
    assert result.returncode == 1
    assert result.stderr == (
        f"flunkymaster: cannot listen for TFTP on port {port}: Address already in use "
        f"(another program holds it; --tftp-port N picks another port, 0 disables TFTP)\n")
    assert (repo / "data.json").stat().st_mtime_ns == before
    assert not (repo / "flunky.log").exists()


def test_a_repository_path_that_is_a_file_is_named_as_such(tmp_path):
    path = tmp_path / "file"
    path.write_text("not a folder\n")
    result = run("--repository", str(path), "--http-port", str(free_port()))
    assert result.returncode == 1
    assert result.stderr == f"flunkymaster: repository {path} is not a folder\n"


def test_init_on_a_file_says_why_it_cannot(tmp_path):
    path = tmp_path / "file"
    path.write_text("not a folder\n")
    result = run("--init", str(path))
    assert result.returncode == 1
    assert result.stderr == f"flunkymaster: cannot create a repository in {path}: not a folder\n"
    assert path.read_text() == "not a folder\n"


def test_init_says_what_it_added_and_when_nothing_was_missing(tmp_path):
    (tmp_path / "static").mkdir()
    result = run("--init", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"created dynamic/, images/, staticVars.json "
                             f"in {tmp_path}\n")
    again = run("--init", str(tmp_path))
    assert again.returncode == 0
    assert again.stdout == f"{tmp_path} is a repository already: nothing to create\n"

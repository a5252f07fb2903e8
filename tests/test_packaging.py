"""How the appliance is installed and run: twistd dropin, wheel, systemd unit, signals."""

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import docutils.nodes
import pytest

from conftest import BIN, ROOT, Appliance, free_port

UNIT = ROOT / "systemd" / "heckle-appliance.service"


def test_readme_is_valid_restructuredtext():
    import docutils.core

    problems = []
    settings = {"report_level": 2, "halt_level": 5, "warning_stream": False}
    doctree = docutils.core.publish_doctree((ROOT / "README.rst").read_text(),
                                            settings_overrides=settings)
    for message in doctree.findall(docutils.nodes.system_message):
        problems.append(message.astext())
    assert not problems


def test_twistd_lists_the_heckle_plugin(tmp_path):
    result = subprocess.run([str(BIN / "twistd"), "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert "heckle" in result.stdout and "network-boot server" in result.stdout


def test_twistd_heckle_starts_serves_and_stops(repo, tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "twistd"), "-n", "--pidfile=", "heckle", "--repository", str(repo),
         "--address", "127.0.0.1", "--listen", "127.0.0.1", "--http-port", str(port),
         "--tftp-port", "0", "--dhcp-port", "0", "--pxe-port", "0"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = Appliance(repo, port)
    client.proc = proc
    try:
        client.wait_ready()
        client.allocate("127.0.0.1")
        assert "kernel" in client.get("/bootconfig").text
    finally:
        # twistd re-raises the signal that stopped it, so its status is -SIGTERM
        # (flunkymaster itself exits 0); what matters is the flushed data.json.
        assert client.stop() in (0, -signal.SIGTERM)
    assert client.data()["127.0.0.1"]["Counts"]["bootconfig"] == 1


def test_twistd_heckle_names_a_bad_repository(tmp_path):
    result = subprocess.run([str(BIN / "twistd"), "-n", "--pidfile=", "heckle", "--repository",
                             str(tmp_path / "none")], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode != 0
    output = result.stdout + result.stderr  # twistd -n logs to stdout
    assert f"twistd heckle: repository {tmp_path / 'none'} does not exist" in output
    assert "Traceback" not in output


def test_twistd_heckle_help_and_log_levels(repo, tmp_path):
    result = subprocess.run([str(BIN / "twistd"), "-n", "heckle", "--help"], capture_output=True,
                            text=True, cwd=tmp_path, timeout=60)
    assert result.stdout.startswith("usage: twistd heckle ")
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "twistd"), "-n", "--pidfile=", "heckle", "--repository", str(repo),
         "--listen", "127.0.0.1", "--http-port", str(port), "--tftp-port", "0",
         "--dhcp-port", "0", "--pxe-port", "0"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = Appliance(repo, port)
    client.proc = proc
    client.wait_ready()
    client.stop()
    output = proc.stdout.read()
    assert "[heckle#info] started on " in output
    assert "[stderr#error]" not in output


def test_wheel_ships_the_dropin_and_the_sh_agent(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel, = tmp_path.glob("heckle_appliance-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/heckle_plugin.py" in names
    assert not [n for n in names if n.startswith("twisted/") and n.endswith("__init__.py")]
    assert "heckle_appliance/core/appliance.py" in names


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze missing (Debian package systemd; .ci/run installs it)")
def test_systemd_unit_verifies_cleanly(tmp_path):
    # verify insists that ExecStart exists: point it at this checkout's flunkymaster,
    # the one host-specific part of the unit.
    text = UNIT.read_text()
    assert "ExecStart=/opt/heckle-appliance/bin/flunkymaster " in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace("/opt/heckle-appliance/bin/flunkymaster", str(BIN / "flunkymaster")))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    for setting in ("User=heckle", "AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_RAW",
                    "ProtectSystem=strict", "ReadWritePaths=/srv/heckle", "NoNewPrivileges=yes",
                    "PrivateTmp=yes", "Restart=on-failure"):
        assert setting in text


def test_sighup_reopens_a_rotated_log(appliance, repo):
    (repo / "flunky.log").rename(repo / "flunky.log.1")
    appliance.proc.send_signal(signal.SIGHUP)
    appliance.allocate("127.0.0.1")
    deadline = time.monotonic() + 10
    while not (repo / "flunky.log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "allocated 127.0.0.1" in (repo / "flunky.log").read_text()
    assert "allocated 127.0.0.1" not in (repo / "flunky.log.1").read_text()
    assert appliance.proc.poll() is None  # SIGHUP did not stop it
    assert os.path.getsize(repo / "flunky.log.1") > 0

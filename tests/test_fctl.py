"""fctl against a real appliance, run as the operator would: a subprocess.

One appliance serves most tests; each test plays its own node (its own
127.0.0.x source address) so that they do not see each other's records.
"""

import fcntl
import http.server
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import termios
import threading
import time

import pytest

from conftest import BIN, Appliance, copy_example, free_port
from netns import in_ns, linked_namespaces, needs_root

FCTL = str(BIN / "fctl")


def clean_env(**extra):
    """The environment without the operator's fctl settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FCTL_") and k != "HECKLE_SERVER"}
    return {**env, **extra}


def fctl(*args, env=None):
    return subprocess.run([FCTL, *args], capture_output=True, text=True, timeout=60,
                          env=env or clean_env())


def start_fctl(*args, **kw):
    return subprocess.Popen([FCTL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=clean_env(), **kw)


def wait_for_line(stream, words):
    """Read ``stream`` up to the line containing ``words``; the lines read."""
    lines = []
    for line in stream:
        lines.append(line)
        if words in line:
            return lines
    raise AssertionError(f"{words!r} never shown; got {lines}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = copy_example(tmp_path_factory.mktemp("fctl") / "repository")
    (repo / "images" / "broken").mkdir()
    (repo / "images" / "broken" / "bootconfig").write_text("#!ipxe\nexit\n")
    doomed = repo / "images" / "doomed"
    doomed.mkdir()
    for name in ("bootconfig", "install"):
        (doomed / name).write_text((repo / "images" / "ipxe-demo" / name).read_text())
    (doomed / "status").write_text("Failed\n")
    appliance = Appliance(repo, free_port()).start()
    yield appliance
    appliance.stop()


def test_allocate_then_read_commands_in_text_and_json(server):
    result = fctl("-S", server.url, "allocate", "-i", "ipxe-demo", "--extra", '{"disk": "sda"}',
                  "127.0.0.2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "127.0.0.2: allocated to ipxe-demo\n"
    assert server.get("/dump").json()["127.0.0.2"]["Extra"] == {"disk": "sda"}
    server.post("/info", {"Message": "hello"}, source="127.0.0.2")

    status = json.loads(fctl("-S", server.url, "status", "--json", "127.0.0.2").stdout)
    entry = status["127.0.0.2"]
    assert entry["State"] == "Building" and entry["Image"] == "ipxe-demo"
    assert [m["Message"] for m in entry["Info"]] == ["hello"]
    assert entry["Cursor"] == entry["Info"][-1]["Time"]
    text = fctl("-S", server.url, "status", "127.0.0.2").stdout.splitlines()
    assert text[0].split() == ["NODE", "IMAGE", "STATE", "MSGS", "LAST", "ACTIVITY", "LATEST",
                               "MESSAGE"]
    assert text[1].split()[:4] == ["127.0.0.2", "ipxe-demo", "Building", "1"]
    assert text[1].endswith("hello")

    images = json.loads(fctl("-S", server.url, "images", "--json").stdout)
    assert images["ipxe-demo"] == {"Valid": True, "Problem": None}
    assert images["broken"] == {"Valid": False, "Problem": "missing status"}
    assert "broken         no: missing status" in fctl("-S", server.url, "images").stdout

    dump = json.loads(fctl("-S", server.url, "dump", "--json").stdout)
    assert dump["127.0.0.2"]["Counts"] == {"bootconfig": 0}
    rows = [line.split() for line in fctl("-S", server.url, "dump").stdout.splitlines()]
    assert rows[0][:4] == ["KEY", "IMAGE", "IP", "MAC"]
    assert ["127.0.0.2", "ipxe-demo", "127.0.0.2", "-"] in [row[:4] for row in rows]


def test_watch_to_ready_shows_each_message_once_and_in_order(server):
    watch = start_fctl("-S", server.url, "-i", "ipxe-demo", "--interval", "0.1", "127.0.0.3")
    shown = wait_for_line(watch.stdout, "STATUS: Building")
    steps = [f"step {n}" for n in range(6)]
    for number, step in enumerate(steps):
        server.post("/info", {"Message": step}, source="127.0.0.3")
        time.sleep(0.03)  # spread the messages over several polls
        if number in (2, 5):
            assert server.get("/bootconfig", source="127.0.0.3").status == 200
    out, err = watch.communicate(timeout=30)
    shown += out.splitlines(keepends=True)
    assert watch.returncode == 0, err
    assert shown[0] == "127.0.0.3: allocated to ipxe-demo\n"
    messages = [line.split(": Node: 127.0.0.3: ", 1)[1].strip() for line in shown
                if line.startswith("Info: ")]
    assert messages == [*steps[:3], "fetched bootconfig (boot 1)", *steps[3:6],
                        "fetched bootconfig (boot 2)"]
    assert re.fullmatch(r"Info: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: Node: 127.0.0.3: step 0\n",
                        next(line for line in shown if line.startswith("Info: ")))
    states = [line for line in shown if line.startswith("NODE: ")]
    assert [line.rsplit("STATUS: ", 1)[1] for line in states] == ["Building\n", "Ready\n"]
    assert shown[-1].startswith("Summary: 1 node(s) in ") and shown[-1].endswith(": 1 Ready\n")


def test_watch_to_failed_on_an_error_message(server):
    assert fctl("-S", server.url, "allocate", "-i", "ipxe-demo", "127.0.0.4").returncode == 0
    watch = start_fctl("-S", server.url, "watch", "--json", "--interval", "0.1", "127.0.0.4")
    progress = wait_for_line(watch.stderr, "STATUS: Building")
    server.post("/error", {"Message": "disk on fire"}, source="127.0.0.4")
    out, err = watch.communicate(timeout=30)
    assert watch.returncode == 1
    progress = "".join(progress) + err
    assert "Error: " in progress and ": Node: 127.0.0.4: disk on fire\n" in progress
    assert "STATUS: Failed" in progress and "1 Failed (127.0.0.4: 1 error message(s))" in progress
    summary = json.loads(out)
    assert summary["Result"] == "Failed"
    assert summary["Nodes"]["127.0.0.4"] == {
        "State": "Failed", "Status": "Building", "Messages": 1, "Latest": "disk on fire",
        "Reason": "1 error message(s)"}
    assert isinstance(summary["Elapsed"], float)


def test_watch_fails_when_the_server_says_the_node_went_silent(tmp_path):
    appliance = Appliance(copy_example(tmp_path / "repository"), free_port(),
                          ["--inactivity-timeout", "1"]).start()
    try:
        result = fctl("-S", appliance.url, "-i", "ipxe-demo", "--interval", "0.2", "127.0.0.1")
    finally:
        appliance.stop()
    assert result.returncode == 1
    assert "STATUS: Failed" in result.stdout
    assert result.stdout.splitlines()[-1].endswith(
        "1 Failed (127.0.0.1: no activity (server's limit))")


def test_client_side_inactivity_limit_and_timeout(server):
    result = fctl("-S", server.url, "-i", "ipxe-demo", "--interval", "0.1", "--inactivity",
                  "0.3", "127.0.0.5")
    assert result.returncode == 1
    assert "1 Failed (127.0.0.5: no activity for 0.3s)" in result.stdout
    result = fctl("-S", server.url, "-i", "ipxe-demo", "--interval", "0.1", "-t", "0.005",
                  "127.0.0.5")
    assert result.returncode == 1
    assert "STATUS: Timeout" in result.stdout
    assert "1 Timeout (127.0.0.5: still Building)" in result.stdout


def test_watching_an_unallocated_node_fails_at_once(server):
    result = fctl("-S", server.url, "watch", "127.0.0.99")
    assert result.returncode == 1
    assert "1 Failed (127.0.0.99: not allocated)" in result.stdout


def test_release(server):
    server.allocate("127.0.0.6")
    result = fctl("-S", server.url, "release", "127.0.0.6", "127.0.0.7")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "127.0.0.6: released\n127.0.0.7: was not allocated\n"
    assert "127.0.0.6" not in server.get("/dump").json()
    assert "released 127.0.0.6 (was ipxe-demo)" in server.log()
    reply = server.post("/release", {"Addresses": ["127.0.0.6"]})
    assert reply.json() == {"Released": {"127.0.0.6": None}}
    assert server.post("/release", {}).status == 400


@pytest.mark.parametrize("args, message", [
    (["-i", "nope", "127.0.0.8"], "fctl: unknown image 'nope' (images: "),
    (["allocate", "-i", "broken", "127.0.0.8"], "fctl: image 'broken' is invalid: missing status"),
    (["status", "no-such-host.invalid"], "fctl: cannot resolve host 'no-such-host.invalid'"),
])
def test_server_errors_are_one_line_and_exit_2(server, args, message):
    result = fctl("-S", server.url, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_usage_errors_exit_2(server):
    assert fctl("-S", server.url, "allocate", "127.0.0.8").returncode == 2  # no -i
    unknown = fctl("-S", server.url, "bogus")
    assert unknown.returncode == 2 and "unknown command 'bogus'" in unknown.stderr
    bad = fctl("-S", server.url, "allocate", "-i", "ipxe-demo", "--extra", "[1]", "127.0.0.8")
    assert bad.returncode == 2 and "must be a JSON object" in bad.stderr
    assert fctl("-S", "ftp://x", "images").stderr == "fctl: invalid server URL 'ftp://x'\n"


def test_connection_refused_is_one_line_and_exit_2():
    port = free_port()
    result = fctl("-S", f"127.0.0.1:{port}", "status")
    assert result.returncode == 2
    assert result.stderr == f"fctl: cannot reach http://127.0.0.1:{port}: " \
                            "[Errno 111] Connection refused\n"


@pytest.mark.parametrize("variable", ["FCTL_SERVER", "HECKLE_SERVER"])
def test_server_from_the_environment(server, variable):
    result = fctl("images", env=clean_env(**{variable: server.url}))
    assert result.returncode == 0 and "ipxe-demo" in result.stdout


def test_live_display_redraws_in_place_on_a_terminal(server):
    controller, terminal = pty.openpty()
    watch = subprocess.Popen([FCTL, "-S", server.url, "-i", "ipxe-demo", "--interval", "0.1",
                              "127.0.0.9"], stdout=terminal, stderr=terminal, env=clean_env())
    os.close(terminal)
    screen = b""
    with os.fdopen(controller, "rb", buffering=0) as tty:
        while b"Building" not in screen:
            screen += tty.read(4096)
        for _ in range(2):
            server.get("/bootconfig", source="127.0.0.9")
        try:
            while chunk := tty.read(4096):
                screen += chunk
        except OSError:  # EIO: fctl exited and closed the terminal
            pass
    assert watch.wait(timeout=30) == 0
    text = screen.decode()
    assert "\x1b[1A\r\x1b[2K\x1b[1B\x1b[1A" in text  # cursor up, blank the line, back up,
    assert "\r\x1b[2K127.0.0.9  Ready" in text  # redraw
    assert "NODE: " not in text  # the plain-line format is for pipes only
    assert re.search(r"127\.0\.0\.9  Ready\s+\S+\s+2 msg  fetched bootconfig \(boot 2\)", text)
    assert text.rstrip().splitlines()[-1].endswith(": 1 Ready")


@pytest.fixture
def remote(repo, tmp_path):
    """The appliance in one namespace with credentials; fctl runs in another."""
    creds = tmp_path / "credentials"
    creds.write_text("# operators\nadmin:s3cret\n")
    with linked_namespaces(subnet="10.205.0") as (server_ns, client_ns, server_ip, _):
        proc = subprocess.Popen(
            ["ip", "netns", "exec", server_ns, str(BIN / "flunkymaster"), "--repository",
             str(repo), "--address", server_ip, "--http-port", "8080", "--credentials",
             str(creds), "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://{server_ip}:8080"
            for _ in range(200):
                if in_ns(client_ns, "curl", "-s", "-o", "/dev/null", url).returncode == 0:
                    break
                time.sleep(0.05)

            def remote_fctl(*args, **env):
                return in_ns(client_ns, "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                             FCTL, "-S", url, *args)

            yield remote_fctl, creds
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@needs_root
def test_remote_admin_without_credentials_is_refused(remote):
    remote_fctl, _ = remote
    result = remote_fctl("images")
    assert result.returncode == 2
    assert result.stderr == ("fctl: admin credentials required (HTTP basic or bearer token) "
                             "(HTTP 401)\n")
    wrong = remote_fctl("--user", "admin:wrong", "dump")
    assert wrong.returncode == 2
    assert wrong.stderr == "fctl: invalid admin credentials (HTTP 401)\n"


@needs_root
def test_remote_admin_with_credentials(remote):
    remote_fctl, creds = remote
    assert remote_fctl("--user", "admin:s3cret", "images").returncode == 0
    assert remote_fctl("--credentials-file", str(creds), "dump").stdout.startswith("KEY")
    assert remote_fctl("images", FCTL_TOKEN="s3cret").returncode == 0
    assert remote_fctl("images", FCTL_USER="admin:s3cret").returncode == 0


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """fctl on a pseudo-terminal of ``rows`` x ``columns``, and all it wrote there."""

    def __init__(self, *args, rows=24, columns=80):
        controller, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.proc = subprocess.Popen([FCTL, *args], stdin=terminal, stdout=terminal,
                                     stderr=terminal, env=clean_env())
        os.close(terminal)
        self.controller = controller
        self.output = b""

    def _read(self, deadline):
        ready, _, _ = select.select([self.controller], [], [], max(0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"fctl wrote nothing more; so far: {self.output!r}")
        try:
            chunk = os.read(self.controller, 4096)
        except OSError:  # EIO: fctl exited and closed the terminal
            chunk = b""
        self.output += chunk
        return chunk

    def wait_for(self, words, timeout=30):
        deadline = time.monotonic() + timeout
        while words.encode() not in self.output:
            if not self._read(deadline):
                raise AssertionError(f"{words!r} never shown: {self.output!r}")

    def finish(self, timeout=30):
        deadline = time.monotonic() + timeout
        while self._read(deadline):
            pass
        os.close(self.controller)
        return self.proc.wait(timeout=timeout)

    @property
    def text(self):
        return self.output.decode()

    def lines(self):
        """The text lines written, escape sequences and carriage returns removed."""
        return [ANSI.sub("", line) for line in re.split(r"[\r\n]+", self.text) if line]


def test_live_display_scrolls_every_message_above_the_node_lines(server):
    server.allocate("127.0.0.10")
    for message in ("first", "second"):  # both there for fctl's first poll
        server.post("/info", {"Message": message}, source="127.0.0.10")
    terminal = Terminal("-S", server.url, "watch", "--interval", "0.3", "127.0.0.10")
    terminal.wait_for("Node: 127.0.0.10: second")
    server.post("/info", {"Message": "third\x1b[2J"}, source="127.0.0.10")
    for _ in range(2):
        server.get("/bootconfig", source="127.0.0.10")
    assert terminal.finish() == 0
    messages = [re.fullmatch(r"Info: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: Node: 127\.0\.0\.10: (.*)",
                             line) for line in terminal.lines()]
    assert [m[1] for m in messages if m] == [
        "first", "second", "third\\x1b[2J", "fetched bootconfig (boot 1)",
        "fetched bootconfig (boot 2)"]
    assert "\x1b[2J" not in terminal.text  # a node's message cannot clear the screen
    last_message = terminal.text.rindex("Node: 127.0.0.10: fetched bootconfig (boot 2)")
    assert re.search(r"127\.0\.0\.10  Ready\s+\S+\s+5 msg  fetched bootconfig \(boot 2\)",
                     terminal.text[last_message:])  # the node line is redrawn below


def test_live_display_fits_more_nodes_than_the_terminal_has_rows(server):
    hosts = [f"127.0.0.{n}" for n in range(40, 54)]
    server.allocate(*hosts)
    terminal = Terminal("-S", server.url, "watch", "--interval", "0.1", "--inactivity", "1",
                        *hosts, rows=8)
    assert terminal.finish() == 1
    text = terminal.text
    ups = [int(n) for n in re.findall(r"\x1b\[(\d+)A", text)]
    assert ups and max(ups) <= 7  # never above the top of an 8-row screen
    assert "(8 more: 8 Building)" in text
    for frame in re.split(r"\x1b\[\d+A", text)[1:-1]:  # every redraw but the last
        rows = [line for line in re.split(r"[\r\n]+", ANSI.sub("", frame)) if line]
        assert len(rows) <= 7, rows
    final = re.split(r"\x1b\[\d+A", text)[-1]
    assert [host for host in hosts if re.search(rf"{host}  Failed", final)] == hosts


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_live_display_leaves_one_copy_of_the_nodes_in_a_small_tmux_pane(server, tmp_path):
    hosts = [f"127.0.0.{n}" for n in range(60, 74)]
    server.allocate(*hosts)
    tmux = ["tmux", "-S", str(tmp_path / "tmux"), "-f", "/dev/null"]
    command = " ".join([FCTL, "-S", server.url, "watch", "--interval", "0.1", "--inactivity",
                        "1.5", *hosts])
    subprocess.run([*tmux, "new-session", "-d", "-x", "80", "-y", "8", command], check=True,
                   env=clean_env(), timeout=30)
    try:
        subprocess.run([*tmux, "set-option", "-g", "remain-on-exit", "on"], check=True,
                       timeout=30)
        time.sleep(0.5)
        server.post("/info", {"Message": "a message long enough to wrap over two rows of "
                              "the pane, which is eighty columns wide"}, source=hosts[0])
        deadline = time.monotonic() + 30
        while "Summary:" not in (screen := subprocess.run(
                [*tmux, "capture-pane", "-p", "-J", "-S", "-"], capture_output=True, text=True,
                timeout=30).stdout):
            assert time.monotonic() < deadline, screen
            time.sleep(0.1)
    finally:
        subprocess.run([*tmux, "kill-server"], timeout=30)
    rows = [row for row in screen.strip("\n").splitlines() if not row.startswith("Pane is dead")]
    assert rows[0].startswith("Info: ") and rows[0].endswith("eighty columns wide")
    assert [row.split()[:2] for row in rows[1:15]] == [[host, "Failed"] for host in hosts]
    assert rows[15].startswith("Summary: 14 node(s) in ") and len(rows) == 16


def test_watch_says_when_the_status_template_itself_says_failed(server):
    result = fctl("-S", server.url, "-i", "doomed", "--interval", "0.1", "127.0.0.11")
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1].endswith(
        "1 Failed (127.0.0.11: status template says Failed)")


def test_help_says_inactivity_can_only_shorten_the_servers_limit():
    text = " ".join(fctl("watch", "--help").stdout.split()).replace("- ", "-")
    assert "the server's --inactivity-timeout" in text


def test_watch_with_nothing_allocated_is_a_usage_error(appliance):
    result = fctl("-S", appliance.url, "watch")
    assert result.returncode == 2
    assert result.stderr == ("fctl: nothing to watch: no node is allocated "
                             "(fctl watch HOST... or fctl -i IMAGE HOST...)\n")


@pytest.mark.parametrize("args", [["status"], ["watch", "--interval", "0.1", "127.0.0.99"]])
def test_a_reader_that_went_away_stops_fctl_quietly(server, args):
    read_end, write_end = os.pipe()
    os.close(read_end)  # as head -1 does once it has its line
    proc = subprocess.run([FCTL, "-S", server.url, *args], stdout=write_end,
                          stderr=subprocess.PIPE, text=True, env=clean_env(), timeout=60)
    os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 141  # 128 + SIGPIPE, as a shell tool killed by it


class Proxy(http.server.BaseHTTPRequestHandler):
    """What sits in front of the appliance at some sites: multi-line error pages."""

    BODIES = {"/api/images": ("text/html", "<html>\r\n<head><title>502 Bad Gateway</title></head>"
                              "\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n"
                              "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"),
              "/dump": ("text/plain", "\nthe appliance is restarting\nplease retry in a minute\n"
                        "(maintenance window 02:00-03:00)\n")}

    def do_GET(self):
        kind, body = self.BODIES[self.path]
        self.send_response(502)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


def test_error_pages_are_shown_as_one_line():
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{proxy.server_address[1]}"
    try:
        html = fctl("-S", url, "images")
        text = fctl("-S", url, "dump")
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert (html.returncode, html.stderr) == (2, "fctl: 502 Bad Gateway (HTTP 502)\n")
    assert (text.returncode, text.stderr) == (2, "fctl: the appliance is restarting (HTTP 502)\n")

"""The status page in a real browser, and /metrics through Prometheus' own parser."""

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium is not installed "
                                             "(.ci/run installs it)")
def test_status_page_lists_nodes_in_chromium(appliance, tmp_path):
    appliance.allocate("127.0.0.1", "52:54:00:12:34:56")
    appliance.get("/bootconfig")
    appliance.post("/error", {"Message": "<script>alert(1)</script> disk missing"})
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom",
         appliance.url + "/"], capture_output=True, text=True, timeout=120)
    dom = result.stdout
    assert '<table id="nodes">' in dom, result.stderr[-2000:]
    assert '<td class="node">127.0.0.1</td>' in dom
    assert '<td class="node">52:54:00:12:34:56</td>' in dom
    assert '<td class="Failed">Failed</td>' in dom  # the node that posted an Error
    assert "&lt;script&gt;alert(1)&lt;/script&gt; disk missing" in dom  # escaped, not run
    assert "<td>ipxe-demo</td><td>yes</td>" in dom
    assert 'http-equiv="refresh"' in dom


def test_status_page_is_only_at_the_root(appliance):
    assert appliance.get("/").status == 200
    assert appliance.get("/nope/").status == 404


def test_metrics_parse_as_prometheus_text(appliance, repo):
    appliance.allocate("127.0.0.1")
    appliance.get("/bootconfig")
    (repo / "images" / "ipxe-demo" / "install").write_text("$nope\n")
    appliance.get("/install")
    reply = appliance.get("/metrics")
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert samples[("heckle_requests_total", (("code", "200"), ("protocol", "http")))] >= 2
    assert samples[("heckle_render_errors_total", ())] == 1
    assert samples[("heckle_nodes", (("state", "Failed"),))] == 1
    assert samples[("heckle_checkpoint_writes_total", ())] >= 2
    assert samples[("heckle_bytes_sent_total", (("protocol", "http"),))] > 0
    for name in ("heckle_tftp_transfers", "heckle_dhcp_replies", "heckle_checkpoint_seconds"):
        assert name in families


def test_node_gauge_drops_states_no_node_is_in(appliance):
    def nodes_by_state():
        return {s.labels["state"]: s.value for f in text_string_to_metric_families(
            appliance.get("/metrics").text) for s in f.samples if s.name == "heckle_nodes"}

    appliance.allocate("127.0.0.1")
    assert nodes_by_state() == {"Building": 1, "Ready": 0, "Failed": 0}
    assert appliance.post("/release", {"Addresses": ["127.0.0.1"]}).status == 200
    assert nodes_by_state() == {"Ready": 0, "Failed": 0}

"""The `unitocom` command line against the running services, as a user would call it."""
import json
import subprocess
import sys

from tests.conftest import free_ports, scene_png


def unitocom(*args: str, run_dir=None, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "unitocom.cli", *args]
    if run_dir is not None:
        cmd += ["--run-dir", str(run_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_status_json_lists_the_three_services(services):
    cfg, d = services
    r = unitocom("status", "--json", run_dir=d)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["services"]
    by_name = {s["name"]: s for s in rows}
    assert set(by_name) == {"transmitter", "channel", "basestation"}
    for name, s in by_name.items():
        assert s["status"] == "SERVING"
        assert s["grpc"] == cfg.address(name).grpc
        assert s["metrics"] == cfg.address(name).metrics_url


def test_send_json_has_the_documented_keys(services, tmp_path):
    cfg, _ = services
    img = tmp_path / "scene.png"
    img.write_bytes(scene_png(32))
    r = unitocom("send", "--image", str(img), "--snr-db", "25", "--json", "--out", str(tmp_path / "out"),
                 "--target", cfg.address("transmitter").grpc)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert {"task", "scheme", "output", "channel_uses", "timings_s", "quality"} <= set(d)
    assert d["task"] == "reconstruct" and d["scheme"] == "traditional" and d["channel_uses"] > 0
    assert d["quality"]["decoded"] == 1.0 and d["quality"]["psnr_db"] > 20
    assert any(f.endswith(".png") for f in d["files"])


def test_send_text_prints_a_readable_result(services):
    cfg, _ = services
    r = unitocom("send", "--text", "hello base station", "--snr-db", "30", "--target", cfg.address("transmitter").grpc)
    assert r.returncode == 0, r.stderr
    assert "'hello base station'" in r.stdout and "exact_match=1" in r.stdout


def test_failed_call_exits_nonzero_with_the_status(services):
    cfg, _ = services
    r = unitocom("send", "--text", "x", "--snr-db", "nan", "--target", cfg.address("transmitter").grpc)
    assert r.returncode == 1
    assert "INVALID_ARGUMENT" in r.stderr and "link.snr_db" in r.stderr


def test_send_to_nothing_is_unavailable():
    (port,) = free_ports(1)
    r = unitocom("send", "--text", "x", "--target", f"127.0.0.1:{port}", "--timeout", "5")
    assert r.returncode == 1 and "UNAVAILABLE" in r.stderr


def test_status_without_services_says_so(tmp_path):
    r = unitocom("status", run_dir=tmp_path)
    assert r.returncode == 1 and "no services started" in r.stdout


def test_help_explains_every_command():
    r = unitocom("--help")
    assert r.returncode == 0
    for c in ("up", "down", "status", "send", "demo"):
        assert c in r.stdout
    assert "--snr-db" in unitocom("send", "--help").stdout


def test_send_exposes_the_channel_options(services, tmp_path):
    """Estimated CSI, Rician fading, a lost frame and another modulation, all from the command line."""
    cfg, _ = services
    target = cfg.address("transmitter").grpc
    r = unitocom("send", "--text", "pilots and fades", "--snr-db", "30", "--channel", "rician", "--rician-k-db", "6",
                 "--csi", "estimated", "--pilots", "16", "--modulation", "qpsk", "--code-rate", "0.4",
                 "--json", "--target", target)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["output"] == "pilots and fades"
    r = unitocom("send", "--text", "lost", "--erasure-prob", "1", "--json", "--target", target)
    out = json.loads(r.stdout)["outputs"][0]
    assert out["erased"] and out["block_errors"] == out["blocks"] and "erased" in out["note"]


def test_a_code_rate_the_code_cannot_do_is_invalid_argument(services):
    cfg, _ = services
    r = unitocom("send", "--text", "x", "--code-rate", "0.2", "--target", cfg.address("transmitter").grpc)
    assert r.returncode == 1 and "INVALID_ARGUMENT: link.code_rate: Turbo rate must be in [1/3, 0.9]" in r.stderr

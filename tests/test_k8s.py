"""The Kubernetes manifests, validated offline against the API schemas by PyPI kubernetes-validate (strict: an
unknown field is an error), shown to fail when broken, and checked for what the testbed relies on: headless
Services, gRPC probes, a GPU for the base station, the presets ConfigMap, dns:/// targets that exist."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"
GRPC = {"transmitter": (50051, 9101, "unitocom.v1.Transmitter"), "channel": (50052, 9102, "unitocom.v1.Channel"),
        "basestation": (50053, 9103, "unitocom.v1.BaseStation")}
# --health-port: plaintext, health alone, for kubelet's gRPC probes (which cannot speak TLS; issue 13)
HEALTH = {"transmitter": 50151, "channel": 50152, "basestation": 50153}


def validate(*files: pathlib.Path) -> subprocess.CompletedProcess:
    exe = pathlib.Path(sys.executable).parent / "kubernetes-validate"
    if not exe.exists():
        pytest.fail("PyPI kubernetes-validate is not installed: `make venv` installs the dev extras")
    return subprocess.run([str(exe), "-k", KUBERNETES_VERSION, "--strict", "--quiet", *map(str, files)],
                          capture_output=True, text=True, timeout=120)


def manifests() -> list[pathlib.Path]:
    return sorted(K8S.glob("*.yaml"))


def docs() -> list[dict]:
    return [d for f in manifests() for d in yaml.safe_load_all(f.read_text()) if d]


def find(kind: str, name: str) -> dict:
    return next(d for d in docs() if d["kind"] == kind and d["metadata"]["name"] == name)


def test_kubernetes_validate_passes():
    r = validate(*manifests())
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("file, old, new", [
    ("basestation.yaml", "\n  clusterIP: None", "\n  clusterIp: None"),  # unknown field (strict)
    ("channel.yaml", "replicas: 2", "replicas: two"),  # wrong type
    ("transmitter.yaml", "grpc: {port: 50151}", "grpc: {port: \"grpc\"}"),  # gRPC probes take a number
])
def test_kubernetes_validate_fails_on_a_broken_copy(tmp_path, file, old, new):
    broken = tmp_path / file
    text = (K8S / file).read_text()
    assert old in text
    broken.write_text(text.replace(old, new, 1))
    r = validate(broken)
    assert r.returncode != 0 and "did not validate" in r.stdout + r.stderr, r.stdout + r.stderr


def test_grpc_services_are_headless_with_probes():
    for name, (port, metrics_port, service) in GRPC.items():
        svc = find("Service", name)
        assert svc["spec"]["clusterIP"] == "None", f"{name}: clients balance per RPC only over a headless Service"
        assert {p["port"] for p in svc["spec"]["ports"]} == {port, metrics_port}
        dep = find("Deployment", name)
        assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        assert c["command"] == ["python", "-m", f"services.{name}.server"]
        assert (ROOT / "services" / name / "server.py").exists()
        health = HEALTH[name]
        assert c["args"][c["args"].index("--health-port") + 1] == str(health)
        assert {"name": "health", "containerPort": health, "protocol": "TCP"} in c["ports"]
        assert c["readinessProbe"]["grpc"] == {"port": health, "service": service}
        assert c["livenessProbe"]["grpc"]["port"] == health
        assert c["startupProbe"]["grpc"]["port"] == health
        assert {"configMapRef": {"name": "unitocom-presets"}} in c["envFrom"]
        assert "$(UNITOCOM_PRESET)" in c["args"]


def test_base_station_requests_a_gpu():
    dep = find("Deployment", "basestation")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "cuda" in c["image"]
    assert any(t["key"] == "nvidia.com/gpu" for t in dep["spec"]["template"]["spec"]["tolerations"])


def test_presets_configmap_names_a_real_preset():
    from unitocom import config
    cm = find("ConfigMap", "unitocom-presets")
    assert cm["data"]["UNITOCOM_PRESET"] in config.PRESETS
    assert int(cm["data"]["UNITOCOM_MAX_MESSAGE_BYTES"]) > 0


def test_next_hops_use_dns_round_robin_targets_that_exist():
    """Each hop names the next one's headless Service as dns:///NAME.unitocom.svc.cluster.local:PORT; the
    services' gRPC channels use round_robin, so each RPC goes to the next ready replica."""
    from services.common.server import channel_options
    from unitocom import config
    assert ("grpc.lb_policy_name", "round_robin") in channel_options(config.load("tiny"))
    hops = {"channel": ("--basestation", "basestation"), "transmitter": ("--channel", "channel"),
            "gateway": ("--transmitter", "transmitter")}
    for name, (flag, target) in hops.items():
        (c,) = find("Deployment", name)["spec"]["template"]["spec"]["containers"]
        value = c["args"][c["args"].index(flag) + 1]
        assert value == f"dns:///{target}.unitocom.svc.cluster.local:{GRPC[target][0]}", value
        assert find("Service", target)["spec"]["clusterIP"] == "None"


def test_kustomization_lists_every_manifest_and_its_generated_files_exist():
    k = yaml.safe_load((ROOT / "deploy/kustomization.yaml").read_text())
    assert sorted(k["resources"]) == sorted(f"k8s/{f.name}" for f in manifests())
    for gen in k["configMapGenerator"]:
        for f in gen["files"]:
            assert (ROOT / "deploy" / f.split("=")[-1]).exists(), f
    prom = find("Deployment", "prometheus")["spec"]["template"]["spec"]
    assert {v["configMap"]["name"] for v in prom["volumes"] if "configMap" in v} == \
        {g["name"] for g in k["configMapGenerator"]}


def test_a_real_grpc_client_spreads_rpcs_over_replicas(tmp_path):
    """What dns:/// + round_robin does against a headless Service, on loopback: two health servers behind one
    name (ipv4:127.0.0.1:a,127.0.0.1:b stands in for the DNS answer), RPCs alternate between them."""
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from tests.conftest import free_ports
    servers, counts = [], []
    for port in free_ports(2):
        n = [0]

        class Counting(health.HealthServicer):
            def Check(self, request, context, n=n):
                n[0] += 1
                return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

        s = grpc.server(futures.ThreadPoolExecutor(2))
        health_pb2_grpc.add_HealthServicer_to_server(Counting(), s)
        s.add_insecure_port(f"127.0.0.1:{port}")
        s.start()
        servers.append((s, port))
        counts.append(n)
    try:
        target = "ipv4:" + ",".join(f"127.0.0.1:{p}" for _, p in servers)
        with grpc.insecure_channel(target, options=[("grpc.lb_policy_name", "round_robin")]) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            grpc.channel_ready_future(ch).result(timeout=10)
            for _ in range(20):
                stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert sum(n[0] for n in counts) == 20 and min(n[0] for n in counts) >= 5, [n[0] for n in counts]
    finally:
        for s, _ in servers:
            s.stop(0)



# --- TLS, tokens, NetworkPolicy (issue 13) -----------------------------------------------------------------------

def _secret_items(pod: dict, mount_path: str) -> set[str]:
    (c,) = pod["containers"]
    (m,) = [m for m in c["volumeMounts"] if m["mountPath"] == mount_path]
    assert m["readOnly"] is True
    (v,) = [v for v in pod["volumes"] if v["name"] == m["name"]]
    assert v["secret"]["secretName"] == "unitocom-tls"
    return {i["key"] for i in v["secret"]["items"]}


@pytest.mark.parametrize("name", ["transmitter", "channel", "basestation", "gateway"])
def test_each_pod_runs_tls_with_only_its_own_key(name):
    pod = find("Deployment", name)["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"][c["args"].index("--tls-dir") + 1] == "/etc/unitocom/tls"
    assert _secret_items(pod, "/etc/unitocom/tls") == {"ca.pem", f"{name}.pem", f"{name}-key.pem"}
    if name == "transmitter":
        assert c["args"][c["args"].index("--auth-tokens") + 1] == "/etc/unitocom/tokens/tokens"
        assert _secret_items(pod, "/etc/unitocom/tokens") == {"tokens"}
    if name == "gateway":
        assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_the_tls_secret_is_generated_from_what_unitocom_certs_writes():
    from unitocom import certs
    k = yaml.safe_load((ROOT / "deploy/kustomization.yaml").read_text())
    (gen,) = [g for g in k["secretGenerator"] if g["name"] == "unitocom-tls"]
    expected = {"tls/ca.pem", "tls/tokens"} | {f"tls/{n}{s}" for n in certs.NAMES if n != "client"
                                               for s in (".pem", "-key.pem")}
    assert set(gen["files"]) == expected and not any("ca-key" in f for f in gen["files"])


def test_network_policies_let_only_the_previous_hop_in():
    hops = {"channel": ("transmitter", 50052, 9102), "basestation": ("channel", 50053, 9103)}
    policies = [d for d in docs() if d["kind"] == "NetworkPolicy"]
    for name, (caller, port, metrics_port) in hops.items():
        (pol,) = [p for p in policies if p["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": name}]
        assert pol["spec"]["policyTypes"] == ["Ingress"]
        allowed: dict[int, set] = {}
        for rule in pol["spec"]["ingress"]:
            sources = {f["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for f in rule.get("from", [])}
            for p in rule["ports"]:
                allowed.setdefault(p["port"], set()).update(sources or {"*"})
        assert allowed[port] == {caller}, f"{name}: gRPC only from {caller}"
        assert allowed[metrics_port] == {"prometheus"}
        assert allowed[HEALTH[name]] == {"*"}  # the probes come from the node
        assert set(allowed) == {port, metrics_port, HEALTH[name]}


# --- checkpoints (issue 15) ---------------------------------------------------------------------------------------

def test_transmitter_and_base_station_say_where_their_checkpoints_are():
    """UNITOCOM_CHECKPOINTS is set explicitly: to the directory the image bakes the tiny checkpoints into (its
    Dockerfile's `COPY checkpoints` destination) or to the read-only `checkpoints` volume that holds a larger
    preset's. The channel and the gateway load none."""
    import dockerfile
    for name, image_dockerfile in (("transmitter", "services/transmitter/Dockerfile"),
                                   ("basestation", "services/basestation/Dockerfile.cuda")):
        pod = find("Deployment", name)["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        baked = {c2.value[1] for c2 in dockerfile.parse_file(str(ROOT / image_dockerfile))
                 if c2.cmd == "ENV" and c2.value[0] == "UNITOCOM_CHECKPOINTS"}
        assert baked == {"/app/checkpoints"}, image_dockerfile
        (m,) = [m for m in c["volumeMounts"] if m["name"] == "checkpoints"]
        assert m["readOnly"] is True and m["mountPath"] != "/app/checkpoints"  # never hides the baked-in ones
        assert env["UNITOCOM_CHECKPOINTS"] in ("/app/checkpoints", m["mountPath"]), name
        (v,) = [v for v in pod["volumes"] if v["name"] == "checkpoints"]
        assert v["hostPath"]["type"] == "DirectoryOrCreate"  # a node without them still runs the tiny default
    for name in ("channel", "gateway"):
        (c,) = find("Deployment", name)["spec"]["template"]["spec"]["containers"]
        assert "UNITOCOM_CHECKPOINTS" not in {e["name"] for e in c.get("env", [])}
        assert "checkpoints" not in {m["name"] for m in c.get("volumeMounts", [])}

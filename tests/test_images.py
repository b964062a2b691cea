"""The container images, run without a container engine (issue 15).

No engine runs here, so nothing used to run the images, and an image missing a file (it once missed checkpoints/,
so every learned-scheme request to `docker compose up` was FAILED_PRECONDITION) passed the suite. This test lays
out each image's file tree in a temporary directory as its Dockerfile does (the COPY lines from the repository root,
WORKDIR, ENV; parsed with Docker's own parser, PyPI `dockerfile`), takes the command, environment, secrets and
volumes from the compose file as compose renders it (`config --format json`), and starts the services from there:
cwd the emulated WORKDIR, a clean environment (no PYTHONPATH), this interpreter for `python` (the venv plays the
image's `pip install .`). Container paths map into the emulated root, compose hostnames and ports to loopback and
free ports. Guards against a false pass: the code must import from the emulated tree (not from the checkout or an
editable install), and the same transmitter image without its checkpoints COPY must fail naming the checkpoint.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import grpc
import pytest

from tests.conftest import free_ports, scene_png
from tests.test_deploy import COMPOSE, ROOT, compose_bin

SERVICES = ("transmitter", "channel", "basestation")
HEALTH_NAME = {"transmitter": "unitocom.v1.Transmitter", "channel": "unitocom.v1.Channel",
               "basestation": "unitocom.v1.BaseStation"}
PORT_FLAGS = ("--port", "--metrics-port", "--health-port")
START_TIMEOUT_S = 150


# --- the image: a Dockerfile's COPY / WORKDIR / ENV / CMD -----------------------------------------------------------

@dataclasses.dataclass
class Image:
    workdir: str = "/"
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    cmd: list[str] = dataclasses.field(default_factory=list)
    copies: list[tuple[str, tuple[str, ...], str]] = dataclasses.field(default_factory=list)  # (workdir, srcs, dest)


def parse_image(dockerfile_path: pathlib.Path, without: str | None = None) -> Image:
    """The instructions that shape the file tree and the process. `without`: drop the COPY lines with this source
    (the negative control: the image as it was before checkpoints were copied)."""
    import dockerfile
    img = Image()
    for c in dockerfile.parse_file(str(dockerfile_path)):
        if c.cmd == "WORKDIR":
            img.workdir = str(pathlib.PurePosixPath(img.workdir, c.value[0]))
        elif c.cmd == "ENV":
            img.env.update(zip(c.value[::2], c.value[1::2]))
        elif c.cmd in ("COPY", "ADD"):
            assert not c.flags, f"{dockerfile_path}: COPY {c.flags} is not emulated"
            if without is not None and without in c.value[:-1]:
                continue
            img.copies.append((img.workdir, tuple(c.value[:-1]), c.value[-1]))
        elif c.cmd == "CMD":
            assert c.json, f"{dockerfile_path}: CMD must be the exec (JSON) form"
            img.cmd = list(c.value)
        elif c.cmd in ("ENTRYPOINT", "USER", "VOLUME"):
            pytest.fail(f"{dockerfile_path}: {c.cmd} is not emulated by this test; extend it")
    return img


def lay_out(img: Image, root: pathlib.Path) -> pathlib.Path:
    """Copy the build context (the repo root) into `root` as the COPY lines do; return the emulated WORKDIR."""
    for workdir, srcs, dest in img.copies:
        target = root / pathlib.PurePosixPath(workdir, dest).relative_to("/")
        into_dir = dest.endswith("/") or len(srcs) > 1
        for s in srcs:
            src = ROOT / s
            assert src.exists(), f"COPY source {s} is missing from the build context"
            if src.is_dir():  # a directory's contents go to dest
                shutil.copytree(src, target, dirs_exist_ok=True)
            else:
                dst = target / src.name if into_dir else target
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
    work = root / pathlib.PurePosixPath(img.workdir).relative_to("/")
    work.mkdir(parents=True, exist_ok=True)
    return work


# --- compose: the command, environment, secrets and volumes it really runs -----------------------------------------

def render(tls_dir: pathlib.Path, **env: str) -> dict:
    r = subprocess.run([compose_bin(), "-f", str(COMPOSE), "config", "--format", "json"], capture_output=True,
                       text=True, cwd=COMPOSE.parent, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "UNITOCOM_TLS_DIR": str(tls_dir), **env})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@dataclasses.dataclass
class Container:
    name: str
    root: pathlib.Path
    workdir: pathlib.Path
    argv: list[str]
    env: dict[str, str]
    port: int  # the gRPC port on loopback
    healthcheck: list[str]
    proc: subprocess.Popen | None = None
    log: pathlib.Path | None = None

    def run(self, *argv: str, **kw) -> subprocess.CompletedProcess:
        """A command inside the container (the image's cwd and environment), as `docker exec` would."""
        argv = [sys.executable, *argv[1:]] if argv[0] == "python" else list(argv)
        return subprocess.run(argv, cwd=self.workdir, env=self.env, capture_output=True, text=True, **kw)


def host_ports(compose: dict) -> dict[tuple[str, int], int]:
    """A free loopback port for every container port compose gives the three services."""
    wanted = sorted({(name, int(p)) for name in SERVICES for spec in [compose["services"][name]]
                     for p in [*(x["target"] for x in spec.get("ports", [])), *spec.get("expose", [])]})
    return dict(zip(wanted, free_ports(len(wanted))))


def container(name: str, compose: dict, ports: dict[tuple[str, int], int], base: pathlib.Path,
              without: str | None = None) -> Container:
    """Service `name` as its image would run under compose, laid out under base/<name>/root."""
    spec = compose["services"][name]
    assert pathlib.Path(spec["build"]["context"]).resolve() == ROOT  # the build context: COPY sources are here
    img = parse_image(ROOT / spec["build"]["dockerfile"], without=without)
    root = base / name / "root"
    work = lay_out(img, root)

    def inside(path: str) -> str:
        return str(root / path.lstrip("/"))

    for s in spec.get("secrets", []):  # compose mounts each at its target (default /run/secrets/<source>)
        src = pathlib.Path(compose["secrets"][s["source"]]["file"])
        dst = pathlib.Path(inside(s.get("target") or f"/run/secrets/{s['source']}"))
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    for v in spec.get("volumes", []):  # a bind mount hides what the image has at its target
        assert v["type"] == "bind", f"{name}: volume type {v['type']} is not emulated"
        dst = pathlib.Path(inside(v["target"]))
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(v["source"], target_is_directory=True)

    own = {p: h for (svc, p), h in ports.items() if svc == name}

    def arg(prev: str, a: str) -> str:
        if prev in PORT_FLAGS:
            return str(own[int(a)])
        if prev == "--host" and a == "0.0.0.0":
            return "127.0.0.1"
        m = re.fullmatch(r"([a-z0-9][a-z0-9.-]*):(\d+)", a)
        if m:
            host, port = m[1], int(m[2])
            if host in ("127.0.0.1", "localhost"):
                return f"127.0.0.1:{own[port]}"
            assert host in SERVICES, f"{name}: {a} names no emulated service"
            return f"127.0.0.1:{ports[(host, port)]}"
        return inside(a) if a.startswith("/") else a

    def mapped(argv: list[str]) -> list[str]:
        return [sys.executable if i == 0 and a == "python" else arg(argv[i - 1] if i else "", a)
                for i, a in enumerate(argv)]

    argv = spec.get("command") or img.cmd
    env = {"PATH": os.environ["PATH"], "HOME": inside("/root"),
           "OMP_NUM_THREADS": "1"}  # a courtesy to the shared test machine; the services set torch's threads
    env.update({k: inside(v) if v.startswith("/") else v for k, v in img.env.items()})
    env.update({k: inside(v) if v.startswith("/") else v for k, v in (spec.get("environment") or {}).items()})
    pathlib.Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
    test = spec["healthcheck"]["test"]
    assert test[0] == "CMD", test
    return Container(name, root, work, mapped(argv), env, own[int(argv[argv.index("--port") + 1])], mapped(test[1:]))


def start(c: Container) -> None:
    c.log = c.root.parent / "log.txt"
    with open(c.log, "wb") as fh:
        c.proc = subprocess.Popen(c.argv, cwd=c.workdir, env=c.env, stdout=fh, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)


def wait_serving(c: Container, tls_dir: pathlib.Path, deadline: float) -> None:
    from unitocom import client
    tls = client.Tls.from_dir(tls_dir, "client")
    while time.monotonic() < deadline:
        if c.proc.poll() is not None:
            pytest.fail(f"{c.name} exited {c.proc.returncode}:\n{c.log.read_text()[-3000:]}")
        if client.health(f"127.0.0.1:{c.port}", HEALTH_NAME[c.name], timeout_s=1.0, tls=tls) == "SERVING":
            return
        time.sleep(0.3)
    pytest.fail(f"{c.name} not SERVING after {START_TIMEOUT_S} s:\n{c.log.read_text()[-3000:]}")


def stop(containers: list[Container]) -> None:
    """SIGTERM each process this test started (by its Popen, never by a name pattern), then SIGKILL stragglers."""
    for c in containers:
        if c.proc is not None and c.proc.poll() is None:
            c.proc.terminate()
    for c in containers:
        if c.proc is None:
            continue
        try:
            c.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait(timeout=10)


# --- fixtures and the request -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory) -> pathlib.Path:
    from unitocom import certs
    d = tmp_path_factory.mktemp("tls")
    certs.make_certs(d)  # the CA, every identity, and a tokens file: what `unitocom certs --out deploy/tls` writes
    return d


def vqa(c: Container, tls_dir: pathlib.Path, timeout_s: float):
    from unitocom import client
    with client.Client(f"127.0.0.1:{c.port}", tls=client.Tls.from_dir(tls_dir, "client"),
                       token=client.read_token(tls_dir / "tokens")) as cl:
        return cl.send(client.build_request(image=scene_png(32), text="what color is the cube?", task="vqa",
                                            scheme="unitocom", snr_db=20.0, seed=1), timeout_s=timeout_s)


MISSING = re.compile(r"checkpoint (\S+) is not installed \((\S+) is missing")


# --- which images carry checkpoints ------------------------------------------------------------------------------

LOADS_CHECKPOINTS = {"transmitter": "services/transmitter/Dockerfile", "basestation": "services/basestation/Dockerfile",
                     "basestation-cuda": "services/basestation/Dockerfile.cuda"}
NO_CHECKPOINTS = {"channel": "services/channel/Dockerfile", "gateway": "services/gateway/Dockerfile"}


def test_every_dockerfile_is_classified():
    assert sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("services/*/Dockerfile*")) == \
        sorted([*LOADS_CHECKPOINTS.values(), *NO_CHECKPOINTS.values()])


@pytest.mark.parametrize("name", sorted(LOADS_CHECKPOINTS))
def test_images_that_load_checkpoints_carry_them_and_say_where(tmp_path, name):
    """The transmitter (tokenizers) and base station (tokenizers, MLLM) images, CPU and CUDA: `COPY checkpoints`
    into the directory that UNITOCOM_CHECKPOINTS names, with every committed checkpoint in it."""
    img = parse_image(ROOT / LOADS_CHECKPOINTS[name])
    dests = [str(pathlib.PurePosixPath(w, d)) for w, srcs, d in img.copies if "checkpoints" in srcs]
    assert dests == ["/app/checkpoints"], dests
    assert img.env.get("UNITOCOM_CHECKPOINTS") == "/app/checkpoints"
    work = lay_out(img, tmp_path)
    shipped = {p.name for p in (ROOT / "checkpoints").iterdir() if p.suffix in (".safetensors", ".json")}
    assert shipped and shipped <= {p.name for p in (work / "checkpoints").iterdir()}


@pytest.mark.parametrize("name", sorted(NO_CHECKPOINTS))
def test_channel_and_gateway_images_need_no_checkpoints(name):
    """The channel applies the channel model and the gateway relays HTTP: neither loads a checkpoint, so their
    images stay 108 MB smaller (the testbed test below runs the channel image, without checkpoints, on a
    learned-scheme request)."""
    img = parse_image(ROOT / NO_CHECKPOINTS[name])
    assert not [srcs for _, srcs, _ in img.copies if "checkpoints" in srcs]
    assert "UNITOCOM_CHECKPOINTS" not in img.env


# --- the fast part: the layout, where the code comes from, the transmitter with and without checkpoints -------------

@pytest.mark.parametrize("name", SERVICES)
def test_the_image_tree_runs_its_own_copy_of_the_code(tmp_path, tls_dir, name):
    """The emulated image imports unitocom and services from its own tree, not from the checkout (which the
    venv's editable install points at): otherwise a file missing from the image would still be found."""
    compose = render(tls_dir)
    c = container(name, compose, host_ports(compose), tmp_path)
    assert c.workdir == c.root / "app"
    assert (c.workdir / "services" / name / "server.py").is_file()
    assert "PYTHONPATH" not in c.env
    r = c.run("python", "-c", "import unitocom, services, services.common.server; "
              "print(unitocom.__file__); print(services.__file__)", timeout=60)
    assert r.returncode == 0, r.stderr
    files = [pathlib.Path(f).resolve() for f in r.stdout.split()]
    assert files == [(c.workdir / "unitocom/__init__.py").resolve(), (c.workdir / "services/__init__.py").resolve()]
    # Every module of the repo, too: a submodule the image lacked would otherwise be found by the editable
    # install's finder, which Python asks after the image's own tree.
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for pkg in ("unitocom", "services") for p in (ROOT / pkg).rglob("*.py"))
    r = c.run("python", "-c", "import importlib.util, json, sys; "
              "print(json.dumps({m: getattr(importlib.util.find_spec(m), 'origin', None) "
              "for m in sys.stdin.read().split()}))", input="\n".join(modules), timeout=120)
    assert r.returncode == 0, r.stderr
    outside = {m: o for m, o in json.loads(r.stdout).items()
               if o is None or not pathlib.Path(o).resolve().is_relative_to(c.workdir.resolve())}
    assert not outside, f"{name}: modules missing from the image's tree or found outside it: {outside}"
    if name in ("transmitter", "basestation"):
        assert c.env["UNITOCOM_CHECKPOINTS"] == str(c.workdir / "checkpoints")
        r = c.run("python", "-c", "from unitocom.schemes import learned; print(learned.checkpoint_dir())", timeout=60)
        assert pathlib.Path(r.stdout.strip()) == c.workdir / "checkpoints", r.stderr
        assert {p.name for p in (c.workdir / "checkpoints").glob("*.safetensors")} == \
            {p.name for p in (ROOT / "checkpoints").glob("*.safetensors")}
    else:
        assert "UNITOCOM_CHECKPOINTS" not in c.env


@pytest.mark.parametrize("case", ["image without checkpoints", "empty directory mounted"])
def test_transmitter_without_its_checkpoints_answers_failed_precondition(tmp_path, tls_dir, case):
    """The negative control: the transmitter image less its `COPY checkpoints` line (what every image was before
    issue 15), or the real image with an empty directory bound over /app/checkpoints by UNITOCOM_CHECKPOINTS_DIR
    (the mount, not the baked-in copy, is what the service reads), answers a learned-scheme VQA request
    FAILED_PRECONDITION naming a committed checkpoint missing from the container's checkpoint directory."""
    if case == "empty directory mounted":
        (tmp_path / "mounted").mkdir()
        compose = render(tls_dir, UNITOCOM_CHECKPOINTS_DIR=str(tmp_path / "mounted"))
        c = container("transmitter", compose, host_ports(compose), tmp_path)
        assert (c.workdir / "checkpoints").is_symlink()
    else:
        compose = render(tls_dir)
        c = container("transmitter", compose, host_ports(compose), tmp_path, without="checkpoints")
        assert not (c.workdir / "checkpoints").exists()
    try:
        start(c)
        wait_serving(c, tls_dir, time.monotonic() + START_TIMEOUT_S)
        with pytest.raises(grpc.RpcError) as e:
            vqa(c, tls_dir, timeout_s=60)
    finally:
        stop([c])
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value.details()
    m = MISSING.search(e.value.details())
    assert m, e.value.details()
    assert (ROOT / "checkpoints" / f"{m[1]}.safetensors").is_file()  # one the repo ships and the image must carry
    assert pathlib.Path(m[2]) == c.workdir / "checkpoints" / f"{m[1]}.safetensors"


# --- the whole testbed from the images: transmitter -> channel -> base station, TLS and a token -------------------

def _testbed_vqa(tmp_path, tls_dir, without: str | None = None, **compose_env):
    compose = render(tls_dir, **compose_env)
    ports = host_ports(compose)
    cs = [container(n, compose, ports, tmp_path, without) for n in ("basestation", "channel", "transmitter")]
    try:
        for c in cs:  # compose starts them in this order too (depends_on: service_healthy)
            start(c)
        deadline = time.monotonic() + START_TIMEOUT_S
        for c in cs:
            wait_serving(c, tls_dir, deadline)
            h = c.run(*c.healthcheck, timeout=30)  # the compose healthcheck itself, from inside the image
            assert h.returncode == 0 and "SERVING" in h.stdout, (c.name, h.stdout, h.stderr)
        assert not (cs[1].workdir / "checkpoints").exists() and "UNITOCOM_CHECKPOINTS" not in cs[1].env  # channel
        r = vqa(cs[-1], tls_dir, timeout_s=120)
    finally:
        stop(cs)
    return r


def test_the_images_answer_a_learned_vqa_request_over_tls(tmp_path, tls_dir):
    """The three images as compose runs them (mutual TLS on every hop, a bearer token at the transmitter, the
    baked-in tiny checkpoints) answer a `unitocom`-scheme VQA request: the answer comes from the base station."""
    r = _testbed_vqa(tmp_path, tls_dir)
    assert r.output_text
    assert {t.service for t in r.timings} >= {"transmitter", "channel", "basestation"}
    assert {"mllm_prefill", "mllm_generate"} <= {t.stage for t in r.timings if t.service == "basestation"}


@pytest.mark.slow
def test_mounted_checkpoints_serve_an_image_that_has_none(tmp_path, tls_dir):
    """The larger presets' way: images without baked-in checkpoints, a host directory bound over /app/checkpoints
    by UNITOCOM_CHECKPOINTS_DIR (here the repo's tiny ones, standing in for a larger preset's), and the same
    request succeeds: the transmitter and the base station read the mount. (Slow: a second full testbed.)"""
    mounted = tmp_path / "host-checkpoints"
    shutil.copytree(ROOT / "checkpoints", mounted)
    r = _testbed_vqa(tmp_path, tls_dir, without="checkpoints", UNITOCOM_CHECKPOINTS_DIR=str(mounted))
    assert r.output_text
    assert {"mllm_prefill", "mllm_generate"} <= {t.stage for t in r.timings if t.service == "basestation"}

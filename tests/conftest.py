"""Shared fixtures: the real services on free loopback ports, started once per test session."""
from __future__ import annotations

import collections
import dataclasses
import importlib.util
import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("OMP_NUM_THREADS", "1")

# Under CI a missing prerequisite (a committed checkpoint, a system tool such as espeak-ng, sox, ffmpeg with
# AMR-WB, promtool) is a broken environment, and the tests that need it fail; on a developer's machine they skip.
CI = bool(os.environ.get("CI"))


def need(condition: bool, reason: str) -> None:
    """Inside a test: go on when `condition` holds; otherwise skip, or fail when the environment variable CI is set."""
    if condition:
        return
    if CI:
        pytest.fail(f"{reason} (CI is set: a missing prerequisite fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def needs(condition: bool, reason: str) -> pytest.MarkDecorator:
    """`need` as a decorator for a test function (checked before its fixtures are set up)."""
    return pytest.mark.need(bool(condition), reason=reason)


def load_script(path: str):
    """The repo's script at `path` (`scripts/results_tables.py`, `bench/bench_load.py`), loaded afresh as a module
    named for its file and registered in sys.modules under that name: dataclasses look their module up there."""
    file = Path(__file__).resolve().parents[1] / path
    spec = importlib.util.spec_from_file_location(file.stem, file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[file.stem] = mod
    spec.loader.exec_module(mod)
    return mod


def without_encoder(src: Path, out: Path) -> Path:
    """`src` (the installed MLLM, which reads the picture through an encoder and answers by program) with its
    image encoder, slots and program answering taken out: what `train image-encoder` starts from."""
    from unitocom.mllm.checkpoint import load_mllm, save_mllm
    from unitocom.mllm.model import MLLM
    model, std, meta = load_mllm(str(src))
    cfg = dataclasses.replace(model.cfg, image_encoder=0, object_slots=0, object_tokens=False,
                              answer_by_program=False)
    bare = MLLM(cfg)
    kept = model.state_dict()
    bare.load_state_dict({k: kept[k] for k in bare.state_dict()})
    save_mllm(bare, std, out, meta)
    return out


def pytest_configure(config):
    config.addinivalue_line("markers", "need(condition, reason): skip when the condition is false; fail under CI")


def pytest_collection_modifyitems(config, items):
    # pytest 9.2 builds a parametrized test's node id from its callspec. Schemathesis's one item per API operation
    # has none, so every operation of a schema-driven test had the same node id, and pytest-xdist (which sends
    # tests to its workers by node id) ran one of the seven. The operation, which the item's name keeps, goes back.
    for item in items:
        _, bracket, params = item.name.partition("[")
        if bracket and not item.nodeid.endswith("]"):
            item._id = item._id.with_params(params.removesuffix("]"))
    twice = sorted(n for n, k in collections.Counter(item.nodeid for item in items).items() if k > 1)
    if twice:  # under xdist only one of each would run, and no report would say so
        raise pytest.UsageError(f"{len(twice)} node id(s) name more than one test: {', '.join(twice[:5])}")
    # `--dist loadfile` hands files to the two workers in collection order, so a long file collected late ran alone
    # at the end while the other worker sat idle. The longest files go first (a stable sort: the rest keep their
    # order, and every worker collects the same order, as xdist requires).
    items.sort(key=lambda item: LONGEST_FILES.get(item.path.name, len(LONGEST_FILES)))


# the files that took longest on the CI machine (`pytest --durations=0`, summed per file: 104, 99, 79 and 74 s)
LONGEST_FILES = {name: rank for rank, name in enumerate(
    ["test_mllm_train.py", "test_gpu_retrain.py", "test_retrain.py", "test_gpu_check.py"])}


def pytest_runtest_setup(item):
    for mark in item.iter_markers(name="need"):
        need(mark.args[0], mark.kwargs["reason"])


class CharBpe:
    """Enough of a tokenizers.Tokenizer for packing tests: one id per character."""

    def get_vocab_size(self):
        return 128

    def encode(self, text):
        return type("E", (), {"ids": [ord(c) % 128 for c in text]})()

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


class Refused(Exception):
    """Stands in for a grpc.RpcError the services answer (client.error_status reads code() and details())."""

    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return f"refused: {self._code.name}"


def free_ports(n: int) -> list[int]:
    """n ports free on loopback now, under the kernel's ephemeral range (`unitocom.ports.free_block`): a port the
    kernel picked itself could be any outgoing connection's end by the time a server binds it."""
    base = free_consecutive(n)
    return list(range(base, base + n))


def stop_service(proc, log_path: Path, timeout_s: float = 30.0) -> None:
    """SIGTERM a service process started by a test with its output in `log_path`, and wait for it to exit. One
    that has not exited in `timeout_s` (its drain is 5 s) is asked for every thread's stack (SIGUSR1, which every
    service answers with faulthandler), killed, and failed with its log: which step it was in, not just "timed
    out" (a capture test's channel once outlived a 10 s wait on a loaded CI machine, with nothing to read)."""
    import signal
    import subprocess
    import time
    proc.terminate()
    try:
        proc.wait(timeout_s)
        return
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        proc.kill()
        proc.wait()
    tail = Path(log_path).read_text(errors="replace")[-6000:]
    pytest.fail(f"pid {proc.pid} did not exit {timeout_s:g} s after SIGTERM; its log, stacks last:\n{tail}")


def free_consecutive(n: int) -> int:
    """A base port b such that b .. b+n-1 are all free on loopback now."""
    from unitocom import ports
    return ports.free_block(n)


TEST_MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # small, so that the oversize test sends only a few MB


@pytest.fixture(scope="session")
def services(tmp_path_factory):
    """(cfg, run_dir): transmitter, channel and base station running as local processes, SERVING."""
    from unitocom import config, launcher
    base = free_consecutive(6)
    cfg = config.load("tiny")
    cfg = cfg.replace(transmitter_port=base, channel_port=base + 1, basestation_port=base + 2,
                      metrics_base_port=base + 3,
                      limits=dataclasses.replace(cfg.limits, max_message_bytes=TEST_MAX_MESSAGE_BYTES))
    d = tmp_path_factory.mktemp("run")
    launcher.up(cfg, "tiny", d, timeout_s=180)
    yield cfg, d
    launcher.down(d)


@pytest.fixture(scope="session")
def tx(services):
    from unitocom import client
    cfg, _ = services
    with client.Client(cfg.address("transmitter").grpc, max_message_bytes=64 * 1024 * 1024) as c:
        yield c


def scene_png(size_px: int = 64, seed: int = 0) -> bytes:
    """A small synthetic picture with edges and flat areas, as PNG bytes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size_px, 0:size_px] / size_px
    img = np.stack([x, y, 0.5 + 0.5 * np.sin(8 * x * y)], -1) * 200
    img[size_px // 4: size_px // 2, size_px // 4: size_px // 2] = rng.integers(0, 255, 3)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def photo_png() -> bytes:
    from unitocom.demo import photograph
    return photograph(128)


@pytest.fixture(scope="session")
def heldout_data(tmp_path_factory):
    """A small data set drawn here with a seed no checkpoint saw (the tiny preset's layout: scenes, questions,
    captions, espeak-ng speech), so tests that score committed checkpoints run on a fresh clone without data/tiny.

    Drawn once for the run: under pytest-xdist the workers share one copy (the first to take the lock draws it)."""
    from filelock import FileLock

    from unitocom.data.make import make_dataset
    root = tmp_path_factory.getbasetemp()
    d = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "heldout-data"
    with FileLock(f"{d}.lock"):
        if not (d / "manifest.json").is_file():
            make_dataset(d, "tiny", seed=2028, scenes=1400, clips=150, progress=False, workers=1,
                         log=lambda *_: None)
    return d

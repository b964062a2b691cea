"""scripts/gpu_check.sh, issue 15's GPU check, in its CPU miniature (--cpu: tiny preset, gloo), so that the script
a GPU owner runs once cannot rot here: every step runs and writes its figures. The nested pytest run (its step 2)
is left out; the gpu-marked tests it selects are collected by this suite anyway."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The GPU image's Python packages (the tool library's KINDS.md, read on a machine running it, 2026-11-17): what the
# check may import there without carrying it (scripts/gpu_wheels.txt carries the rest).
GPU_IMAGE = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers
flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py
markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind
narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc
nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging
pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham
simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig
werkzeug wheel wrapt xarray xxhash yarl zipp""".split()
# Appends every top-level module a process looks up (whether or not it is installed) to $IMPORT_LOG.
RECORDER = """
import os, sys
class _Recorder:
    def find_spec(self, name, path=None, target=None):
        if path is None:
            with open(os.environ["IMPORT_LOG"], "a") as f:
                f.write(name + "\\n")
sys.meta_path.insert(0, _Recorder())
"""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _distributions(modules: set[str]) -> set[str]:
    """The installed distributions (normalised names) the top-level modules came from; stdlib, this repository's
    own packages and modules that are not installed (optional imports that failed) have none."""
    from importlib.metadata import packages_distributions
    owners = packages_distributions()
    return {_norm(d) for m in modules if m not in sys.stdlib_module_names for d in owners.get(m, ())
            if _norm(d) != "unitocom"}


def test_gpu_check_runs_in_miniature_on_the_cpu(tmp_path):
    site, log = tmp_path / "recorder", tmp_path / "imports.log"
    site.mkdir()
    (site / "sitecustomize.py").write_text(RECORDER)
    env = {**os.environ, "OUT": str(tmp_path), "GPU_CHECK_SKIP_TESTS": "1", "PYTHON": sys.executable,
           "PYTHONPATH": str(site), "IMPORT_LOG": str(log)}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--cpu"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    # everything the check imported (the services it starts included) is in the GPU image or carried as a wheel
    carried = {_norm(line.split("#")[0].strip()) for line in (ROOT / "scripts/gpu_wheels.txt").read_text().splitlines()}
    used = _distributions(set(log.read_text().split()))
    assert {"grpcio-health-checking", "torch", "sionna-no-rt"} <= used  # the recorder saw the services' imports
    missing = used - {_norm(n) for n in GPU_IMAGE} - carried
    assert not missing, f"the GPU image lacks {sorted(missing)}: add them to scripts/gpu_wheels.txt"
    one = json.loads((tmp_path / "train-tiny-cpu.json").read_text())
    fsdp = json.loads((tmp_path / "train-tiny-2cpu-fsdp.json").read_text())
    assert one["activation_checkpointing"] and one["finite"] and one["processes"] == 1
    assert fsdp["sharding"] == "fsdp" and fsdp["processes"] == 2 and fsdp["finite"]
    assert fsdp["parameters"] == one["parameters"]  # the whole model's count, not a shard's
    mllm = json.loads((tmp_path / "mllm-tiny-cpu.json").read_text())
    assert mllm["prefill_tokens_per_s"] > 0 and mllm["generate_kv_tokens_per_s"] > 0
    # the served stack (placeholder weights, never in checkpoints/) answered every request of each task
    serve = json.loads((tmp_path / "serve-tiny-cpu.json").read_text())[0]
    assert serve["accounted"] and serve["errors"] == 0 and serve["ok"] > 0
    assert set(serve["kinds"]) <= {"vqa/unitocom", "t2i/unitocom", "asr/unitocom"}  # drawn at random, seconds of load
    manifest = json.loads((tmp_path / "placeholder-checkpoints-tiny" / "manifest.json").read_text())
    assert "PLACEHOLDER" in manifest
    assert "done" in (tmp_path / "gpu_check.log").read_text()

"""PLACEHOLDER weights for a throughput check: every file a `--scheme unitocom` stack of a preset loads, randomly
initialised, under the names the services look for.

    python scripts/random_checkpoints.py --preset paper --out /tmp/paper-random     (the 1.4B MLLM: ~3 GB, bf16)
    UNITOCOM_CHECKPOINTS=/tmp/paper-random unitocom up --preset paper --extra-args basestation='--device cuda'

Why: the GPU check (`scripts/gpu_check.sh`) serves the paper preset's 1.4B MLLM through the three services on CUDA
before anyone has trained it (issue 15: "random init is fine"). Its answers are noise; what it measures is time.
These files must never be mistaken for trained ones, so they never go to checkpoints/: --out must be another
directory, every file's metadata says `random_init`, and the manifest written beside them says PLACEHOLDER.

Written: the image, audio and text links of sigma-GenIB (`LinkSpec.from_config`, the preset's sizes), the shipped
byte-level BPE under the preset's name, and `mllm-sigma-genib` for the preset (standardiser: identity).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from unitocom import config  # noqa: E402
from unitocom.config import preset_checkpoint  # noqa: E402

REPO_CHECKPOINTS = pathlib.Path(__file__).resolve().parents[1] / "checkpoints"
OBJECTIVE = "sigma-genib"


def write(preset: str, out: pathlib.Path, seed: int = 0, log=print) -> dict[str, str]:
    """The placeholder files of `preset` in `out` -> {role: file name}."""
    from unitocom.mllm.checkpoint import save_mllm
    from unitocom.mllm.data import Standardizer
    from unitocom.mllm.model import MLLM, MLLMConfig, count_parameters
    from unitocom.mllm.sequences import Vocab
    from unitocom.models import token_link
    from unitocom.models.text_tokenizer import load_bpe
    from unitocom.models.token_link import LinkSpec, TokenLink

    out = out.resolve()
    if out == REPO_CHECKPOINTS.resolve():
        raise SystemExit("error: --out is the repository's checkpoints/: placeholder weights never go there")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = config.load(preset)
    p = cfg.preset
    files = {}
    bpe_name = f"{preset_checkpoint('text-bpe', preset)}.json"
    shutil.copyfile(REPO_CHECKPOINTS / "text-bpe.json", out / bpe_name)  # the shipped one: a real tokenizer
    files["bpe"] = bpe_name
    bpe = load_bpe(out / bpe_name)
    extra = {"random_init": True, "note": "PLACEHOLDER: random weights for throughput checks, never trained"}
    for modality in ("image", "audio", "text"):
        overrides = {"text_vocab": bpe.get_vocab_size(), "bpe": bpe_name} if modality == "text" else {}
        spec = LinkSpec.from_config(cfg, modality, OBJECTIVE, **overrides)
        base = f"text-{OBJECTIVE}" if modality == "text" else f"{modality}-{OBJECTIVE}-s{spec.tokens}"
        name = f"{preset_checkpoint(base, preset)}.safetensors"
        t0 = time.perf_counter()
        link = TokenLink(spec).eval()
        token_link.save(link, out / name, extra=extra)
        files[modality] = name
        log(f"{name}: {count_parameters(link) / 1e6:.1f} M parameters ({time.perf_counter() - t0:.1f} s)")
    vocab = Vocab(bpe)
    mcfg = MLLMConfig.from_preset(p, vocab=len(vocab))
    t0 = time.perf_counter()
    model = MLLM(mcfg).eval()
    if preset != "tiny":  # the paper MLLM in bf16 on disk (2.8 GB instead of 5.6): the base station serves bf16
        model = model.to(torch.bfloat16)
    std = Standardizer(torch.zeros(p.token_dim), torch.ones(p.token_dim))
    name = f"{preset_checkpoint(f'mllm-{OBJECTIVE}', preset)}.safetensors"
    meta = {"preset": preset, "objective": OBJECTIVE, "image_tokens": p.image_tokens, "random_init": True,
            "note": extra["note"], "links": {k: v for k, v in files.items()},
            "parameters": count_parameters(model)}
    save_mllm(model, std, out / name, meta)
    files["mllm"] = name
    log(f"{name}: {meta['parameters'] / 1e6:.1f} M parameters ({time.perf_counter() - t0:.1f} s)")
    (out / "manifest.json").write_text(json.dumps(
        {"PLACEHOLDER": "random weights for throughput checks (scripts/random_checkpoints.py); never trained, "
                        "never to be served as results", "preset": preset, "seed": seed, "files": files},
        indent=2) + "\n")
    return files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="paper", choices=sorted(config.PRESETS))
    ap.add_argument("--out", required=True, help="a directory outside checkpoints/ (made if missing)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    write(args.preset, pathlib.Path(args.out), args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A held-out checker for generated scenes: a small CNN trained on the scene data to say which (colour, shape)
pairs an image contains and how many objects it has. Its pooled features are the feature space of our FID
(Inception weights cannot be downloaded here); its pair predictions score text-to-image against the caption.

It is trained on real scenes only (never on generated ones), so it judges the generator from outside, with the
optimizer, schedule (`scaffold.ramp_times_cosine`), progress bar and (optionally) JSON-lines log of
`train.scaffold`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from unitocom.data.vocab import COLORS, SHAPES

PAIRS = [(c, s) for c in COLORS for s in SHAPES]
PAIR_INDEX = {p: i for i, p in enumerate(PAIRS)}
MAX_OBJECTS = 10
FORMAT = "unitocom-scene-checker/1"


class SceneChecker(nn.Module):
    """uint8-range float images [B, 3, H, W] in [0, 1] -> (pair logits [B, |PAIRS|], count logits [B, 11])."""

    num_features = 256  # torchmetrics' FID reads this

    def __init__(self):
        super().__init__()
        def block(i, o, stride):
            return nn.Sequential(nn.Conv2d(i, o, 3, stride, 1), nn.BatchNorm2d(o), nn.ReLU())
        self.body = nn.Sequential(block(3, 32, 1), block(32, 64, 2), block(64, 64, 1), block(64, 128, 2),
                                  block(128, 128, 1))
        self.pairs = nn.Linear(256, len(PAIRS))
        self.count = nn.Linear(256, MAX_OBJECTS + 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mean and max over positions: the max keeps "a red square is somewhere" that a mean dilutes."""
        f = self.body(x)
        return torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """FID's feature extractor: images (uint8 [B,3,H,W] or float in [0,1]) -> features [B, 256]."""
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        return self.features(x)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.pairs(f), self.count(f)

    @torch.no_grad()
    def recognise(self, x: torch.Tensor, threshold: float = 0.5) -> list[set[tuple[str, str]]]:
        logits, _ = self.heads(x)
        on = torch.sigmoid(logits) > threshold
        return [{PAIRS[j] for j in row.nonzero().flatten().tolist()} for row in on]


def scene_labels(scene: dict) -> tuple[torch.Tensor, int]:
    y = torch.zeros(len(PAIRS))
    for o in scene["objects"]:
        y[PAIR_INDEX[(o["color"], o["shape"])]] = 1.0
    return y, min(len(scene["objects"]), MAX_OBJECTS)


_PAIR_RE = re.compile(r"\b(" + "|".join(COLORS) + r")\s+(?:(?:small|medium|large|rubber|metal)\s+)*("
                      + "|".join(SHAPES) + r")s?\b")


def caption_pairs(caption: str) -> set[tuple[str, str]]:
    """The (colour, shape) pairs a caption names, e.g. 'a small red square left of a cyan circle'."""
    return {(c, s) for c, s in _PAIR_RE.findall(caption.lower())}


def pair_recall(caption: str, seen: set[tuple[str, str]]) -> float | None:
    """Text-to-image's score: the share of the caption's (colour, shape) pairs among those the checker `seen`
    in the picture; None where the caption names no pair (nothing to score, not a zero)."""
    wanted = caption_pairs(caption)
    return len(wanted & seen) / len(wanted) if wanted else None


CHECKER_WARMUP = 100


def checker_lr(step: int, steps: int, lr: float) -> float:
    """The checker's schedule: `scaffold.ramp_times_cosine` with a 100-step ramp (see there for why it is not
    `warmup_cosine`)."""
    from unitocom.train import scaffold
    return scaffold.ramp_times_cosine(step, steps, lr, CHECKER_WARMUP)


def train_checker(data_dir: str | Path, out: str | Path, steps: int = 1500, batch: int = 128, lr: float = 2e-3,
                  seed: int = 0, size_px: int | None = None, command: str = "", log_path: str | Path | None = None,
                  log_every: int = 50, progress: bool = True) -> dict:
    """Fit on the train split's scenes, report held-out (val) pair F1 and count accuracy, save safetensors.
    log_path: a `log.jsonl` with step, lr and loss every `log_every` steps and the validation at the end."""
    from safetensors.torch import save_file

    from unitocom import config
    from unitocom.data.layouts import clevr_root, read_json
    from unitocom.data.make import dataset_checksum
    from unitocom.train import scaffold
    from unitocom.train.data import load_images

    torch.manual_seed(seed)
    size_px = size_px or config.load("tiny").preset.image_size_px
    data = {}
    for split in ("train", "val"):
        scenes = read_json(clevr_root(data_dir) / "scenes" / f"CLEVR_{split}_scenes.json")["scenes"]
        images = load_images(data_dir, split, size_px)
        labels = [scene_labels(s) for s in sorted(scenes, key=lambda s: s["image_index"])]
        data[split] = (images, torch.stack([y for y, _ in labels]), torch.tensor([c for _, c in labels]))
    model = SceneChecker()
    opt = scaffold.adamw(model, lr, weight_decay=1e-4)
    images, pairs, counts = data["train"]
    gen = torch.Generator().manual_seed(seed)
    log = scaffold.JsonlLog(log_path) if log_path else None
    bar = scaffold.progress(steps, desc="checker", enabled=progress)
    for step in range(steps):
        idx = torch.randint(len(images), (batch,), generator=gen)
        x = images[idx].float() / 255.0
        if torch.rand((), generator=gen) < 0.5:  # scenes are mirror-symmetric in what they contain
            x = x.flip(-1)
        pl, cl = model.heads(x)
        loss = F.binary_cross_entropy_with_logits(pl, pairs[idx]) + F.cross_entropy(cl, counts[idx])
        scaffold.set_lr(opt, checker_lr(step, steps, lr))
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.update(1)
        if log and ((step + 1) % log_every == 0 or step + 1 == steps):
            log.write({"step": step + 1, "lr": opt.param_groups[0]["lr"], "loss": round(float(loss.detach()), 5)})
    bar.close()
    model.eval()
    metrics = evaluate_checker(model, *data["val"])
    if log:
        log.write({"step": steps, "val": metrics})
        log.close()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "command": command, "seed": seed, "steps": steps, "size_px": size_px,
            "data_checksum": dataset_checksum(data_dir), "validation": metrics}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out),
              metadata={k: json.dumps(v) if not isinstance(v, str) else v for k, v in meta.items()})
    return meta


@torch.no_grad()
def evaluate_checker(model: SceneChecker, images: torch.Tensor, pairs: torch.Tensor, counts: torch.Tensor) -> dict:
    pl, cl = model.heads(images.float() / 255.0)
    pred = torch.sigmoid(pl) > 0.5
    tp = (pred & (pairs > 0)).sum().item()
    precision = tp / max(1, pred.sum().item())
    recall = tp / max(1, (pairs > 0).sum().item())
    return {"pair_precision": round(precision, 4), "pair_recall": round(recall, 4),
            "pair_f1": round(2 * precision * recall / max(1e-9, precision + recall), 4),
            "count_accuracy": round((cl.argmax(-1) == counts).float().mean().item(), 4)}


def load_checker(path: str | Path) -> SceneChecker:
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(str(path), framework="pt") as f:
        if (f.metadata() or {}).get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} checkpoint")
    model = SceneChecker()
    model.load_state_dict(load_file(str(path)))
    return model.eval()

"""Object slots: an auxiliary training head that reads a scene's objects from the MLLM's hidden states of its
received image tokens (issue 12).

A probe reader on the same 32 received tokens went from 0.66 to 0.79 VQA at 20 dB (relate yes/no 0.45 -> 0.77)
when it also had to fill one slot per object, left to right, with each object's attributes and centre
(`scripts/vqa_probe.py --objects 1`, results/vqa-probe-objects-w1.json). The MLLM's text form of that job (the
"obj" listing task, `mllm.objects`) did not help at a CPU budget: it took whole steps away from VQA and taught
through one written token at a time. This is the probe's form on the MLLM itself: on every VQA step, K learned
queries cross-attend to the last hidden states over the image tokens of each example, and heads read each slot's
size, colour, shape, material, presence and centre. The gradient reaches the backbone through those hidden states,
the same ones a question attends to. It adds no step and no sequence position, and the base station never runs
it (`MLLM.slots` is a training head; a checkpoint keeps it so that a run resumes and a fine-tune warm-starts),
except in an MLLM with object tokens (`MLLMConfig.object_tokens`), which reads its scenes' slots as tokens.

Targets come from the scene records (`pixel_coords` over the picture's size, as `mllm.objects` places them), with
the tiny preset's attribute values; a set with other values (real CLEVR's cubes and spheres) is refused by name.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from unitocom.data.layouts import clevr_scenes_file
from unitocom.data.presets import data_preset

_PRESET = data_preset("tiny")
ATTRIBUTES = {"size": tuple(_PRESET.sizes), "color": tuple(_PRESET.colors), "shape": tuple(_PRESET.shapes),
              "material": tuple(_PRESET.materials)}
SLOTS = _PRESET.objects_max
# a target row per slot: the 4 attribute indices (-100 in an empty slot), present (0/1), centre u, v in [-1, 1]
WIDTH = len(ATTRIBUTES) + 3
EMPTY = -100
# an object token's input (`object_inputs`): every attribute's probabilities, presence's, the centre
INPUT_WIDTH = sum(len(v) for v in ATTRIBUTES.values()) + 2 + 2


def targets(data_dir: str | Path, split: str, n: int) -> torch.Tensor | None:
    """[n, SLOTS, WIDTH] slot targets of the split's first n scenes, objects left to right by their centre's
    pixel column; None where the split has no scene records (real CLEVR's test split)."""
    from unitocom.mllm.objects import placed_scenes
    scenes = placed_scenes(data_dir, split, n)
    if scenes is None:
        return None
    out = torch.zeros(n, SLOTS, WIDTH)
    out[..., : len(ATTRIBUTES)] = EMPTY
    for i, placed in scenes:
        bad = [(a, o[a]) for _, _, o in placed for a, values in ATTRIBUTES.items() if o[a] not in values]
        if bad or len(placed) > SLOTS:
            raise ValueError(f"{clevr_scenes_file(data_dir, split)}: scene {i} is not of the tiny preset "
                             f"({bad[:3] or f'{len(placed)} objects'}); object slots read scenes of at most {SLOTS} "
                             f"objects with the values {ATTRIBUTES}")
        for k, (u, v, o) in enumerate(placed):
            out[i, k, : len(ATTRIBUTES)] = torch.tensor([ATTRIBUTES[a].index(o[a]) for a in ATTRIBUTES],
                                                        dtype=torch.float)
            out[i, k, len(ATTRIBUTES):] = torch.tensor([1.0, 2 * u - 1, 2 * v - 1])
    return out


class ObjectSlots(nn.Module):
    """Hidden states over an image's tokens [B, S, hidden] -> per slot (left to right): attribute logits (one
    [B, K, values] per attribute), presence logits [B, K, 2] and centre [B, K, 2] in [-1, 1]."""

    def __init__(self, hidden: int, slots: int = SLOTS, heads: int = 4):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(slots, hidden) * 0.02)
        self.attend = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.norm = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))
        self.attributes = nn.ModuleList(nn.Linear(hidden, len(v)) for v in ATTRIBUTES.values())
        self.present = nn.Linear(hidden, 2)
        self.place = nn.Linear(hidden, 2)

    def forward(self, h: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        q = self.queries.to(h.dtype).expand(h.shape[0], -1, -1)
        s = q + self.attend(q, h, h, need_weights=False)[0]
        s = s + self.mlp(self.norm(s))
        return [head(s) for head in self.attributes], self.present(s), self.place(s)


def object_inputs(out: tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The slots' reading -> [B, K, INPUT_WIDTH]: each slot's attribute and presence probabilities and its centre,
    the scene record's cell (`scripts/vqa_probe.py --modes scene`) as the slots believe it. Soft, so the answers'
    loss reaches the slot head too."""
    attributes, present, place = out
    return torch.cat([*(a.float().softmax(-1) for a in attributes), present.float().softmax(-1), place.float()], -1)


def scene_objects(out: tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]) -> list[list[dict]]:
    """The slots' reading of B scenes -> each scene's objects (the slots read as present), with the attributes they
    read and their centre as CLEVR 3d_coords on the ground plane (u right, v down in the picture: x = (u - 1/2) W,
    y = (1/2 - v) W, `data.scenes.to_image_frac` inverted), which is what a question's program reads
    (`data.programs.execute`)."""
    from unitocom.data.scenes import WORLD
    attributes, present, place = out
    names = list(ATTRIBUTES)
    scenes = []
    for b in range(present.shape[0]):
        objs = []
        for k in range(present.shape[1]):
            if int(present[b, k].argmax()) != 1:
                continue
            u, v = ((place[b, k].float() + 1) / 2).tolist()
            obj = {a: ATTRIBUTES[a][int(attributes[i][b, k].argmax())] for i, a in enumerate(names)}
            obj["3d_coords"] = [(u - 0.5) * WORLD, (0.5 - v) * WORLD, 0.0]
            objs.append(obj)
        scenes.append(objs)
    return scenes


def loss_per_example(out: tuple[list[torch.Tensor], torch.Tensor, torch.Tensor],
                     target: torch.Tensor) -> torch.Tensor:
    """[B] the slots' loss of each example: cross-entropy of presence over all slots and of each attribute over
    the real objects (means over slots), plus the real objects' mean squared centre error; target [B, K, WIDTH]."""
    attributes, present, place = out
    target = target.to(present.device)
    real = target[..., len(ATTRIBUTES)]
    b, k = real.shape
    loss = F.cross_entropy(present.float().flatten(0, 1), real.long().flatten(), reduction="none").view(b, k).mean(1)
    objects = real.sum(1).clamp_min(1)
    for a, logits in enumerate(attributes):
        ce = F.cross_entropy(logits.float().flatten(0, 1), target[..., a].long().flatten(), ignore_index=EMPTY,
                             reduction="none").view(b, k)
        loss = loss + ce.sum(1) / objects
    err = ((place.float() - target[..., -2:]) ** 2).sum(-1)
    return loss + (err * real).sum(1) / objects


@torch.no_grad()
def reading(out: tuple[list[torch.Tensor], torch.Tensor, torch.Tensor], target: torch.Tensor) -> dict[str, float]:
    """How well the slots read: the share of scenes with the right object count, each attribute's accuracy over
    real objects, the centres' mean distance in picture widths."""
    attributes, present, place = out
    real = target[..., len(ATTRIBUTES)].bool()
    res = {"count": float((present.argmax(-1).sum(1) == real.sum(1)).float().mean())}
    for a, (name, logits) in enumerate(zip(ATTRIBUTES, attributes)):
        res[name] = float((logits.argmax(-1) == target[..., a].long())[real].float().mean())
    res["centre_distance"] = float(((place.float() - target[..., -2:]) / 2).norm(dim=-1)[real].mean())
    return res

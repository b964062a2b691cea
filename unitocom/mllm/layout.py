"""Text-to-image through a written layout: a scene's objects, as the object slots hold them, drawn as image tokens.

The MLLM's per-token diffusion head draws a captioned scene's 32 tokens directly, and on the tiny preset's CPU
budget its pictures carry about 0.3 of the caption's (colour, shape) pairs (issue 12's target: 0.5). VQA went past
its target once the MLLM wrote a program and the object slots' reading ran it (NS-VQA's split, "VQA by a written
program"); this is the same split for generation, the layout-first recipe of LayoutGPT and LLM-grounded Diffusion:
the language model writes which objects stand where, and a renderer that has only ever learnt to draw layouts turns
them into the tokenizer's tokens, which F^-1 decodes as any received scene's.

`LayoutRenderer` is that renderer: a layout [B, K, slots.INPUT_WIDTH] (each slot's attribute and presence
probabilities and its centre, `slots.object_inputs`' form; a scene record gives it exactly, `layout_inputs`) ->
standardised token means [B, S_v, d]. Learnt queries, one per image token, cross-attend to the objects; the centres
enter through Fourier features, so a token can tell which objects cover its part of the picture. It is trained by
regression on the scene records and the tokenizer's means of the same pictures (`scripts/t2i_layout_probe.py`).
"""
from __future__ import annotations

import json
import math
import re

import torch
from torch import nn

from unitocom.mllm import slots

N_ATTR = sum(len(v) for v in slots.ATTRIBUTES.values())
FREQUENCIES = 6  # Fourier features of each centre coordinate: 2^0 .. 2^5 cycles over the picture


def layout_inputs(targets: torch.Tensor) -> torch.Tensor:
    """Slot targets [N, K, slots.WIDTH] (`slots.targets`: attribute indices, present, centre) -> the layout a
    perfect reading gives [N, K, slots.INPUT_WIDTH]: one-hot attributes (zeros in an empty slot), presence
    one-hot, centre in [-1, 1]."""
    parts = []
    for i, values in enumerate(slots.ATTRIBUTES.values()):
        idx = targets[..., i].long()
        parts.append(nn.functional.one_hot(idx.clamp_min(0), len(values)).float() * (idx >= 0)[..., None])
    present = targets[..., len(slots.ATTRIBUTES)].long()
    parts.append(nn.functional.one_hot(present, 2).float())
    parts.append(targets[..., len(slots.ATTRIBUTES) + 1:])
    return torch.cat(parts, -1)


def snapped(lay: torch.Tensor, cells: int) -> torch.Tensor:
    """Each centre moved to the middle of its cell of a cells x cells grid over the picture: the centres a written
    layout gives (3: the thirds an `obj` listing names)."""
    out = lay.clone()
    uv = (out[..., -2:] + 1) / 2
    out[..., -2:] = ((uv * cells).floor().clamp(0, cells - 1) + 0.5) / cells * 2 - 1
    return out


def _fourier(uv: torch.Tensor) -> torch.Tensor:
    """Centres [..., 2] in [-1, 1] -> [..., 4 * FREQUENCIES] sines and cosines."""
    f = (2.0 ** torch.arange(FREQUENCIES, device=uv.device, dtype=uv.dtype)) * math.pi / 2
    x = uv[..., None] * f  # [..., 2, F]
    return torch.cat([x.sin(), x.cos()], -1).flatten(-2)


class LayoutRenderer(nn.Module):
    """Layouts [B, K, slots.INPUT_WIDTH] -> standardised image token means [B, tokens, dim]."""

    def __init__(self, tokens: int, dim: int, hidden: int = 128, layers: int = 3, heads: int = 4):
        super().__init__()
        self.config = {"tokens": tokens, "dim": dim, "hidden": hidden, "layers": layers, "heads": heads}
        self.objects = nn.Sequential(nn.Linear(slots.INPUT_WIDTH + 4 * FREQUENCIES, hidden), nn.GELU(),
                                     nn.Linear(hidden, hidden))
        self.queries = nn.Parameter(torch.randn(tokens, hidden) * 0.02)
        layer = nn.TransformerDecoderLayer(hidden, heads, 4 * hidden, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, dim))

    def forward(self, layout: torch.Tensor) -> torch.Tensor:
        absent = layout[..., N_ATTR] > 0.5  # the presence one-hot's "absent" column
        absent = absent & ~absent.all(-1, keepdim=True)  # an empty layout still attends (to its empty slots)
        mem = self.objects(torch.cat([layout, _fourier(layout[..., -2:])], -1))
        x = self.queries.expand(layout.shape[0], -1, -1)
        return self.out(self.decoder(x, mem, memory_key_padding_mask=absent))


# ---- the layout as the MLLM writes it ----------------------------------------------------------------------------
# "a large cyan metal circle at 2 5, a small red rubber square at 6 1": each object of the scene left to right, its
# attributes and the column and row of its centre's cell on a CELLS x CELLS grid (0 at the left and the top). The
# renderer fed centres snapped to an 8 x 8 grid draws what it draws from the exact ones (pair recall 0.94 against
# 0.95; thirds, the `obj` listing's places: 0.80, two objects of a third drawn on one spot;
# results/t2i-layout-probe.json).
CELLS = 8
_ITEM = re.compile(r"^a (\S+) (\S+) (\S+) (\S+) at (\d+) (\d+)$")


def cell(x: float, cells: int = CELLS) -> int:
    """A centre's coordinate (a fraction of the picture) -> the index of its cell on a cells x cells grid."""
    return min(cells - 1, max(0, int(x * cells)))


def written(placed: list[tuple[float, float, dict]], cells: int = CELLS) -> str:
    """Objects as (u, v, object) left to right (`objects.left_to_right`; u, v fractions of the picture) -> the
    layout's text."""
    return ", ".join(f"a {o['size']} {o['color']} {o['material']} {o['shape']} at {cell(u, cells)} {cell(v, cells)}"
                     for u, v, o in placed)


def items(text: str) -> list[tuple[str, str, str, str, int, int]]:
    """A written layout's items of the form, in order: (size, colour, material, shape, column, row)."""
    out = []
    for item in filter(None, (s.strip() for s in text.strip().rstrip(".").split(","))):
        m = _ITEM.match(item)
        if m is not None:
            size, color, material, shape, col, row = m.groups()
            out.append((size, color, material, shape, int(col), int(row)))
    return out


ORDERS = ("left-to-right", "caption")
_MENTION = re.compile(r"\b(?:(" + "|".join(slots.ATTRIBUTES["size"]) + r")\s+)?(" +
                      "|".join(slots.ATTRIBUTES["color"]) + r")\s+(?:(?:" + "|".join(slots.ATTRIBUTES["material"]) +
                      r")\s+)?(" + "|".join(slots.ATTRIBUTES["shape"]) + r")s?\b")


def ordered(placed: list[tuple[float, float, dict]], caption: str, order: str = "left-to-right"
            ) -> list[tuple[float, float, dict]]:
    """The objects in the order a layout lists them. left-to-right: as placed (`objects.left_to_right`);
    caption: the objects the caption names first, in the order it names them (each mention matched to the first
    object not yet listed of its colour and shape, and size where it says one), then the rest left to right. The
    renderer reads a set (no order), so the order is the writer's choice: the caption's makes the layout mostly a
    copy of the caption, where left to right makes the MLLM reorder what it was told."""
    if order == "left-to-right":
        return list(placed)
    if order != "caption":
        raise ValueError(f"layout order {order!r}: one of {', '.join(ORDERS)}")
    rest, first = list(placed), []
    for size, color, shape in _MENTION.findall(caption.lower()):
        hit = next((p for p in rest if p[2]["color"] == color and p[2]["shape"] == shape and
                    (not size or p[2]["size"] == size)), None)
        if hit is not None:
            rest.remove(hit)
            first.append(hit)
    return first + rest


def apart(objects: list[tuple[str, int, int]], cells: int = CELLS, preset: str = "tiny") -> list[tuple[int, int]]:
    """Objects (size, column, row) in the order written -> their cells, each as written unless an earlier object
    stands on the same cell: then the nearest cell (ties: the first in reading order) whose centre keeps the scene
    generator's spacing from every earlier object (`data.scenes.fits`), or the written one where none does. No
    scene of the data set has two centres in one cell, and a layout that stacks objects there draws them as one."""
    from unitocom.data.presets import DATA_PRESETS
    from unitocom.data.scenes import fits
    p = DATA_PRESETS[preset]
    grid = sorted((c, r) for c in range(cells) for r in range(cells))
    out: list[tuple[int, int]] = []
    placed: list[tuple[float, float, float]] = []
    for size, col, row in objects:
        radius = p.radius_frac(size)
        if (col, row) in out:
            free = [(c, r) for c, r in grid if fits((c + 0.5) / cells, (r + 0.5) / cells, radius, placed, p)]
            col, row = min(free, key=lambda cr: ((cr[0] - col) ** 2 + (cr[1] - row) ** 2, cr[1], cr[0]),
                           default=(col, row))
        out.append((col, row))
        placed.append(((col + 0.5) / cells, (row + 0.5) / cells, radius))
    return out


def read(text: str, cells: int = CELLS, mend: bool = True) -> torch.Tensor | None:
    """A written layout -> the renderer's input [slots.SLOTS, slots.INPUT_WIDTH] (`layout_inputs`' form, each
    centre the middle of its cell); items not of the form, or naming a value the tiny preset lacks, are left out,
    and items past slots.SLOTS. None where no item is left. mend: objects written on a cell taken already are
    moved apart (`apart`)."""
    kept = []
    for size, color, material, shape, col, row in items(text):
        values = {"size": size, "color": color, "shape": shape, "material": material}
        if all(values[a] in slots.ATTRIBUTES[a] for a in slots.ATTRIBUTES) and max(col, row) < cells:
            kept.append((values, col, row))
    kept = kept[: slots.SLOTS]
    if not kept:
        return None
    where = [(col, row) for _, col, row in kept]
    if mend:
        where = apart([(values["size"], col, row) for values, col, row in kept], cells)
    t = torch.zeros(slots.SLOTS, slots.WIDTH)
    t[:, : len(slots.ATTRIBUTES)] = slots.EMPTY
    t[: len(kept)] = torch.tensor([[float(slots.ATTRIBUTES[a].index(values[a])) for a in slots.ATTRIBUTES] +
                                   [1.0, (col + 0.5) / cells * 2 - 1, (row + 0.5) / cells * 2 - 1]
                                   for (values, _, _), (col, row) in zip(kept, where)])
    return layout_inputs(t[None])[0]


# ---- the renderer's file ------------------------------------------------------------------------------------------
FORMAT = "unitocom-layout-renderer/1"


def save_renderer(model: LayoutRenderer, std, path, meta: dict) -> None:
    """The renderer, the standardiser of the token means it draws (`mllm.data.Standardizer`) and `meta`."""
    from safetensors.torch import save_file
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    state["std.mean"], state["std.std"] = std.mean.contiguous(), std.std.contiguous()
    save_file(state, str(path), metadata={"format": FORMAT, "config": json.dumps(model.config),
                                          "meta": json.dumps(meta)})


def load_renderer(path):
    """-> (LayoutRenderer in eval mode, Standardizer, meta)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from unitocom.mllm.standardizer import Standardizer
    with safe_open(str(path), framework="pt") as f:
        header = dict(f.metadata() or {})
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}: not a layout renderer ({header.get('format')!r}, expected {FORMAT!r})")
    state = load_file(str(path))
    std = Standardizer(state.pop("std.mean"), state.pop("std.std"))
    model = LayoutRenderer(**json.loads(header["config"]))
    model.load_state_dict(state)
    return model.eval(), std, json.loads(header["meta"])


# ---- training (`MLLM.with_layout_renderer` puts a trained renderer inside an MLLM) ---------------------------------
def train_renderer(model: LayoutRenderer, train_lay: torch.Tensor, target: torch.Tensor, val_lay: torch.Tensor,
                   val_target: torch.Tensor, steps: int, batch: int = 64, lr: float = 1e-3, seed: int = 0,
                   eval_every: int = 500, device: str = "cpu") -> list[dict]:
    """MSE regression of standardised token means [N, S_v, d] (`target`) on layouts [N, K, INPUT_WIDTH], AdamW with
    a warm-up and a cosine; -> the val MSE every eval_every steps and at the end ({step, train_mse, val_mse})."""
    from unitocom.train import scaffold
    dev = torch.device(device)
    model.to(dev).train()
    opt = scaffold.adamw(model, lr, 0.01)
    gen = torch.Generator().manual_seed(seed)
    log = []
    bar = scaffold.progress(steps, desc="renderer")
    for step in range(steps):
        scaffold.set_lr(opt, scaffold.warmup_cosine(step, steps, lr, warmup=min(200, steps // 10)))
        idx = torch.randint(len(train_lay), (batch,), generator=gen)
        loss = (model(train_lay[idx].to(dev)) - target[idx].to(dev)).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update(1)
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            model.eval()
            with torch.no_grad():
                val = torch.cat([(model(val_lay[k:k + 512].to(dev)) - val_target[k:k + 512].to(dev)).pow(2)
                                 for k in range(0, len(val_lay), 512)]).mean().item()
            model.train()
            log.append({"step": step + 1, "train_mse": round(loss.item(), 4), "val_mse": round(val, 4)})
            bar.write(json.dumps(log[-1]))
    bar.close()
    return log

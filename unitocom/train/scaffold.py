"""What every training loop here shares: the tokenizers' (`train.loop`), the MLLM's (`mllm.train`) and the scene
checker's (`metrics.scene_checker`).

- `adamw`: AdamW, optionally with two parameter groups (matrices decay, biases and norms do not).
- `warmup_cosine`: linear warm-up, then cosine decay from lr to `floor` * lr (the tokenizers: floor 0.1; the
  MLLM: 0; the resilient de-tokenizer: 0.1). `ramp_times_cosine`: the scene checker's (see there).
- `save_state` / `load_state`: a resumable training state in one safetensors file: the model's tensors
  (`model.*`), the optimizer's per-parameter state (`opt.<i>.<name>`, scalars stored as 0-d tensors), random
  generators by name, and JSON-able metadata (the step, and what the loop adds) in the file's header. Nothing
  is unpickled. `load_state` also reads the MLLM's earlier `train_state.pt` (torch.save of model, optimizer and
  step) with `torch.load(weights_only=True)`, so a run interrupted before the switch still resumes.
- `JsonlLog`: the run's `log.jsonl`, one JSON object per line, flushed per record; on resume, what the
  interrupted run logged after its last saved state is dropped.
- `progress`: the tqdm bar the loops show.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch


def adamw(model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
          split_decay: bool = False, fused: bool = False) -> torch.optim.AdamW:
    """AdamW over the model's parameters. split_decay: two groups, weight decay on tensors of 2 or more dimensions
    only (biases, norm gains and other vectors are not shrunk). fused: the fused CUDA kernel (parameters on a GPU);
    False leaves torch's default (the CPU runs' optimizer, unchanged)."""
    extra = {"fused": True} if fused else {}
    if not split_decay:
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=betas, **extra)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas, **extra)


def warmup_cosine(step: int, steps: int, lr: float, warmup: int, floor: float = 0.0) -> float:
    """The learning rate at `step` (0-based) of `steps`: linear warm-up to lr over `warmup` steps (the first step
    gets lr / warmup), then half a cosine from lr down to floor * lr at `steps` (held there after)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, steps - warmup)
    return lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac))))


def ramp_times_cosine(step: int, steps: int, lr: float, warmup: int) -> float:
    """The other schedule here (the scene checker's, `metrics.scene_checker`): a `warmup`-step linear ramp
    multiplying a cosine that runs over all the steps from step 0, the cosine taken in float32 of
    3.14159 * step / steps (it ends just above 0). Kept beside `warmup_cosine`, bit for bit, because the committed
    checker was trained with it and its recorded command must reproduce it (`warmup_cosine` would differ by up to
    2 % of the rate at the tail, and every FID and pair-recall number in results/ was measured with that checker)."""
    return lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + torch.cos(torch.tensor(step / steps * 3.14159)).item())


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


# --- resumable state --------------------------------------------------------------------------------------------

def save_state(path: str | Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int,
               generators: dict[str, torch.Generator] | None = None, meta: dict[str, str] | None = None) -> None:
    """Write the state atomically (a temporary file renamed over `path`: an interrupted save leaves the previous
    state whole). meta: extra header fields, strings."""
    save_state_dicts(path, model.state_dict(), opt.state_dict()["state"], step, generators, meta)


def save_state_dicts(path: str | Path, model_state: dict[str, torch.Tensor], opt_state: dict[int, dict], step: int,
                     generators: dict[str, torch.Generator] | None = None, meta: dict[str, str] | None = None) -> None:
    """`save_state` from the dicts themselves: a model's full state dict and the optimizer's per-parameter state
    keyed by the parameter's index in `model.parameters()` (what a sharded run gathers on its rank 0, `train.dist`).
    The file does not say how many processes wrote it: any number resumes it."""
    from safetensors.torch import save_file
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model_state.items()}
    for i, st in opt_state.items():
        for k, v in st.items():
            tensors[f"opt.{i}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    for name, g in (generators or {}).items():
        tensors[name] = g.get_state()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={**(meta or {}), "step": str(step)})
    tmp.replace(path)


def state_meta(path: str | Path) -> dict[str, str]:
    """The header of a state written by `save_state` (no tensors read): check it fits before `load_state`."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_state(path: str | Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
               generators: dict[str, torch.Generator] | None = None, device: torch.device | str = "cpu") -> int:
    """Restore what `save_state` wrote (generators present in the file are restored, others left as they are);
    returns the step. A `.pt` file is the MLLM's earlier format, read with weights_only=True."""
    path = Path(path)
    if path.suffix == ".pt":
        state = torch.load(path, weights_only=True, map_location=device)  # tensors and numbers: no code runs
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        return int(state["step"])
    step, model_state, state, t = read_state(path)
    model.load_state_dict(model_state)
    sd = opt.state_dict()
    sd["state"] = state
    opt.load_state_dict(sd)
    for name, g in (generators or {}).items():
        if name in t:
            g.set_state(t[name])
    return step


def read_state(path: str | Path) -> tuple[int, dict[str, torch.Tensor], dict[int, dict], dict[str, torch.Tensor]]:
    """(step, the model's state dict, the optimizer's per-parameter state by index, every tensor of the file) of a
    state `save_state` wrote: what `load_state` applies, for a loop that applies it itself (a sharded model)."""
    from safetensors.torch import load_file
    step = int(state_meta(path)["step"])
    t = load_file(str(path))
    state: dict[int, dict] = {}
    for key, v in t.items():
        if key.startswith("opt."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v
    return step, {k[6:]: v for k, v in t.items() if k.startswith("model.")}, state, t


def latest_state(*paths: str | Path) -> Path | None:
    """The most recently written of the state files that exist (e.g. the current format and an earlier one)."""
    found = [Path(p) for p in paths if Path(p).is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


# --- log and progress -------------------------------------------------------------------------------------------

class JsonlLog:
    """`log.jsonl` of a run. resume_step: the step a resumed run starts from (records after it are dropped and
    the log is continued); None or 0: a fresh run, a fresh log."""

    def __init__(self, path: str | Path, resume_step: int | None = None):
        self.path = Path(path)
        if resume_step and self.path.exists():
            kept = [ln for ln in self.path.read_text().splitlines()
                    if ln and json.loads(ln).get("step", 0) <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in kept))
        self._f = open(self.path, "a" if resume_step else "w")

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int, initial: int = 0, desc: str | None = None, enabled: bool = True):
    """The loops' progress bar (tqdm, on stderr): `bar.update(1)` per step, `bar.write(...)` for a line above it."""
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True)

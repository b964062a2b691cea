"""Training under `torchrun` (issue 15): one process per GPU (or per CPU slot, with gloo), the same command.

    torchrun --nproc_per_node 8 -m unitocom.cli train mllm --preset paper --device cuda --batch-size 32 ...

- `from_env`: the rank, world size and local rank that torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK). A plain
  `python -m unitocom.cli train ...` is rank 0 of 1, and nothing here changes what it computes.
- `init`: the process group, NCCL between GPUs, gloo on the CPU.
- Batches: `--batch-size` is per rank; the global batch is that times the world size. Every rank draws the whole
  global batch from the same seeded generator (indices, SNRs, and for the MLLM the channel noise of the frozen
  link) and keeps its own contiguous part (`part`): rank r of W the examples [r B, (r + 1) B). The draws are so
  exactly those of one process with the global batch, and the parts of the ranks are disjoint.
- Writes (log, progress bar, run state, checkpoint, manifest) happen on rank 0 only. A run state holds the full
  model and optimizer (gathered from the shards under FSDP, `gather_full`) in the one-process format of
  `train.scaffold`, so a run resumes on any number of processes, or in a plain one.
"""
from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as tdist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that logs, shows progress and writes files."""
        return self.rank == 0

    @property
    def on(self) -> bool:
        """More than one process: gradients are averaged over the ranks."""
        return self.world > 1


SINGLE = Dist()


def from_env() -> Dist:
    """The process's place under torchrun; rank 0 of 1 outside it (or with --nproc_per_node 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(d: Dist, device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, gloo on the CPU); nothing for a single process."""
    if not d.on or tdist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if tdist.get_world_size() != d.world or tdist.get_rank() != d.rank:
        raise RuntimeError(f"process group rank {tdist.get_rank()}/{tdist.get_world_size()} != "
                           f"torchrun's {d.rank}/{d.world}")


def finish(d: Dist) -> None:
    """Wait for every rank. The process group is left for the process's end (`leave`), not destroyed here:
    ~ProcessGroupGloo joins its worker threads while the caller holds the GIL, and a worker may need the GIL to free
    the tensors of a barrier that has just returned (pytorch/pytorch#56297). When the group's last reference went
    with the DDP reducer at train()'s return, a rank under load waited there for ever."""
    if d.on and tdist.is_initialized():
        tdist.barrier()


def leave(rc: int) -> None:
    """End a process of several under torchrun with `rc` without running the process group's destructor (see
    `finish`): the group stays registered until now, so no reference drop can destroy it on the way out. Files are
    closed by then; only the standard streams need flushing. A single process returns and exits as usual."""
    if not from_env().on:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def barrier(d: Dist) -> None:
    if d.on:
        tdist.barrier()


@contextmanager
def main_first(d: Dist):
    """Rank 0 runs the block first (e.g. it writes a file the others then read), then the other ranks."""
    if not d.main:
        barrier(d)
    yield
    if d.main:
        barrier(d)


def global_batch(per_rank: int, d: Dist) -> int:
    return per_rank * d.world


def part(items, d: Dist):
    """This rank's contiguous part of a global batch (a list or a tensor whose first axis is the batch)."""
    if not d.on:
        return items
    n = len(items)
    if n % d.world:
        raise ValueError(f"a global batch of {n} does not split over {d.world} processes")
    per = n // d.world
    return items[d.rank * per:(d.rank + 1) * per]


def step_seed(seed: int, step: int) -> int:
    """The seed of step `step`'s batch when DataLoader workers draw the batches (`TrainCompute.workers`): any
    worker can make any step's batch, so the stream is the same for any number of workers and processes."""
    return (seed * 1_000_003 + step) % (2 ** 63)


def gather_counts(local: list[int], d: Dist, device: torch.device) -> torch.Tensor:
    """Every rank's `local` counts: int64 [world, len(local)] (the same on every rank)."""
    mine = torch.tensor(local, dtype=torch.long, device=device)
    if not d.on:
        return mine[None]
    out = [torch.empty_like(mine) for _ in range(d.world)]
    tdist.all_gather(out, mine)
    return torch.stack(out)


def mean_over_ranks(values: dict[str, torch.Tensor], d: Dist) -> dict[str, float]:
    """Scalars averaged over the ranks (what rank 0 logs), as floats."""
    if not values:
        return {}
    keys = sorted(values)
    v = torch.stack([values[k].detach().float().reshape(()) for k in keys])
    if d.on:
        tdist.all_reduce(v)
        v = v / d.world
    return dict(zip(keys, v.tolist()))


def wrap_ddp(module: torch.nn.Module, d: Dist, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around a module whose forward() is the whole training step's loss. Unused
    parameters are looked for: the MLLM's steps each use one task's parts (the diffusion head only on T2I)."""
    if not d.on:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP
    ids = [device.index] if device.type == "cuda" else None
    return DDP(module, device_ids=ids, find_unused_parameters=True)


def sharded(t: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor
    return isinstance(t, DTensor)


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a shard (a collective: every rank calls it, in the same order), on the CPU."""
    return (t.full_tensor() if sharded(t) else t).detach().cpu()


def gather_full(model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict[int, dict]]:
    """(full model state dict, full optimizer state by parameter index) of a model whose parameters may be FSDP
    shards: every rank must call it; each gets the full tensors (on the CPU)."""
    model_state = {k: full(v) for k, v in model.state_dict().items()}
    opt_state = {i: {k: full(v) if torch.is_tensor(v) else v for k, v in st.items()}
                 for i, st in opt.state_dict()["state"].items()}
    return model_state, opt_state


def load_sharded_opt_state(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], state: dict[int, dict]
                           ) -> None:
    """Load a full optimizer state (by parameter index) into an optimizer over FSDP-sharded parameters: each
    moment is cut as its parameter is (same mesh and placements)."""
    from torch.distributed.tensor import distribute_tensor
    cut = {}
    for i, st in state.items():
        p = params[i]
        cut[i] = {k: (distribute_tensor(v.to(p.device), p.device_mesh, p.placements)
                      if sharded(p) and torch.is_tensor(v) and v.dim() > 0 else v) for k, v in st.items()}
    sd = opt.state_dict()
    sd["state"] = cut
    opt.load_state_dict(sd)


# --- command-line options (the tokenizer's and the MLLM's training share them) -----------------------------------

def add_compute_flags(p, mllm: bool) -> None:
    """--device, --workers and, for the MLLM, --activation-checkpointing, --no-fused-adamw and --fsdp: the fields
    of `config.TrainCompute`."""
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                   help="where the model trains: cpu (fp32, as the committed checkpoints), cuda (bf16 autocast for the "
                        "MLLM, TF32 for the tokenizers; under torchrun each rank takes cuda:<LOCAL_RANK>), or auto "
                        "(cuda when torch sees a GPU). The checkpoint is the same format either way")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="DataLoader worker processes that prepare batches ahead; 0 draws them in the training loop "
                        "(the committed runs' random stream). With N>0 batch k comes from a generator seeded by "
                        "(seed, k): reproducible for any N, a different stream from 0's")
    if not mllm:
        return
    p.add_argument("--activation-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="recompute each decoder layer's activations in the backward pass (memory for compute); "
                        "default: on for the paper preset on CUDA, off otherwise")
    p.add_argument("--no-fused-adamw", dest="fused_adamw", action="store_false",
                   help="on CUDA, use torch's default AdamW instead of the fused kernel")
    p.add_argument("--fsdp", action="store_true",
                   help="under torchrun, shard the MLLM with FSDP2 (each decoder layer a unit) instead of "
                        "replicating it with DDP: for the 1.4B paper model. Run states stay whole and resume on any "
                        "number of processes")


def compute_from_args(args):
    from unitocom.config import TrainCompute
    return TrainCompute(device=args.device, workers=args.workers,
                        activation_checkpointing=getattr(args, "activation_checkpointing", None),
                        fused_adamw=getattr(args, "fused_adamw", True), fsdp=getattr(args, "fsdp", False))

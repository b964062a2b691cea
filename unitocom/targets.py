"""Issue 12's quality targets: the numbers a run through the services is judged against.

One list, so that the README's targets table (scripts/results_tables.py) and `make demo`'s T2I line quote the same
bounds. A target reads one point of a results file: `task` at `snr_db` for the unitocom scheme."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """One row of the targets table.

    label: the row's text.
    files: the kinds of results file to read it from, in order; the first that holds the point is used.
        scripts/results_tables.py maps each kind to its set's file (test split / fresh set):
        "fig2": fig2.json / fig2-seed77.json;
        "vqa-families": the per-family runs, vqa-families.json / vqa-families-seed77.json;
        "asr": the fresh set's own speech, asr-seed77.json (the test split's is Fig. 2's);
        "reconstruct": reconstruction without packet loss at 20 dB, packet-loss.json / reconstruct-seed77.json;
        "reconstruct-0db": the same at 0 dB, reconstruct-0db.json / reconstruct-0db-seed77.json.
    kind: "bound" (value `key`, with its interval `prefix`low/high, on `side` "ge" (at least) or "le" (at most)
        of `bound`), "fid" (FID against twice the file's own real-vs-real floor) or "families" (each VQA family
        against its chance + FAMILY_MARGIN)."""

    label: str
    files: tuple[str, ...]
    task: str
    snr_db: float
    digits: int
    kind: str = "bound"
    key: str = "value"
    prefix: str = "ci_"
    side: str = "ge"
    bound: float | None = None


FAMILY_MARGIN = 0.10  # every question family >= its majority-class chance + 0.10
T2I_PAIR_RECALL = 0.50

TARGETS = (
    Target("image PSNR >= 32 dB at 20 dB (32 tokens)", ("reconstruct",), "reconstruct", 20.0, 1, bound=32.0),
    Target("image pair F1 >= 0.90 at 20 dB (32 tokens)", ("reconstruct",), "reconstruct", 20.0, 2, key="pair_f1",
           prefix="pair_f1_ci_", bound=0.90),
    Target("image pair F1 >= 0.70 at 0 dB (32 tokens)", ("reconstruct-0db",), "reconstruct", 0.0, 2, key="pair_f1",
           prefix="pair_f1_ci_", bound=0.70),
    Target("VQA accuracy >= 0.85 at 20 dB", ("vqa-families", "fig2"), "vqa", 20.0, 2, bound=0.85),
    Target("VQA accuracy >= 0.70 at 0 dB", ("vqa-families", "fig2"), "vqa", 0.0, 2, bound=0.70),
    Target("every VQA family >= its majority-class chance + 0.10 at 20 dB", ("vqa-families", "fig2"), "vqa", 20.0, 2,
           kind="families"),
    Target(f"T2I pair recall >= {T2I_PAIR_RECALL:.2f} at 20 dB", ("fig2",), "t2i", 20.0, 2, key="pair_recall",
           prefix="pair_recall_ci_", bound=T2I_PAIR_RECALL),
    Target("T2I FID <= 2x the real-vs-real floor at 20 dB", ("fig2",), "t2i", 20.0, 1, kind="fid", side="le"),
    Target("ASR WER <= 0.10 at 5 dB", ("asr", "fig2"), "asr", 5.0, 3, side="le", bound=0.10),
    Target("ASR WER <= 0.10 at 20 dB", ("asr", "fig2"), "asr", 20.0, 3, side="le", bound=0.10),
)


def target_point(fig: dict, task: str, snr_db: float, scheme: str = "unitocom") -> dict | None:
    """scheme's point of the task at snr_db in a results file (of a loss sweep: the one with no packet lost and
    no token budget), or None."""
    for p in fig.get("points", []):
        if (p.get("task") == task and p.get("scheme") == scheme and p.get("snr_db") is not None
                and float(p["snr_db"]) == snr_db and not p.get("packet_loss") and not p.get("token_budget")):
            return p
    return None

"""scripts/mllm_grad_probe.py: per-task gradient norms of a trained MLLM's shared backbone (issue 12, T2I)."""
from __future__ import annotations

import json

import pytest

from tests.conftest import load_script
from unitocom.schemes.learned import checkpoint_dir

SHIPPED = checkpoint_dir() / "mllm-sigma-genib.safetensors"


@pytest.mark.skipif(not SHIPPED.exists(), reason="needs the shipped MLLM")
def test_the_probe_reports_each_tasks_backbone_and_total_gradient(tmp_path, heldout_data, capsys):
    probe = load_script("scripts/mllm_grad_probe.py")
    assert probe.main([str(SHIPPED), "--data", str(heldout_data), "--tasks", "vqa,t2i", "--batch", "8",
                       "--batches", "1", "--examples", "32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["tasks"]
    assert set(out) == {"vqa", "t2i"}
    for r in out.values():
        assert 0 < r["backbone_grad_norm"] <= r["total_grad_norm"] and r["loss"] > 0
    assert max(r["backbone_share_of_largest"] for r in out.values()) == 1.0

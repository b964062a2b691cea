"""scripts/stage_next.py: MLLMs trained outside `train all` staged as a whole checkpoint set beside the installed
one, each with its own record and the record of the MLLM it started from."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


def _script():
    return load_script("scripts/stage_next.py")


def _mllm(path: Path, meta: dict, value: float) -> None:
    save_file({"w": torch.full((4,), value)}, str(path),
              metadata={"format": "unitocom-mllm/1", "meta": json.dumps(meta)})


def test_a_run_is_staged_with_its_record_the_record_it_started_from_and_links_to_the_rest(tmp_path, monkeypatch):
    stage = _script()
    monkeypatch.chdir(tmp_path)  # where the trainings ran: their --init paths are relative to it
    installed = tmp_path / "checkpoints"
    installed.mkdir()
    _mllm(installed / "mllm-x.safetensors", {"command": "unitocom train mllm --steps 10"}, 1.0)
    stage.manifest_entry(installed / "mllm-x.safetensors", {"command": "unitocom train mllm --steps 10",
                                                          "history": [{"steps": "0-10"}], "validation": {"a": 1}})
    (installed / "image-x.safetensors").write_bytes(b"tokenizer")
    (installed / "text-bpe.json").write_text("{}")
    (installed / "manifest.json").write_text("{}")
    run = tmp_path / "runs" / "second"
    run.mkdir(parents=True)
    _mllm(run / "mllm.safetensors", {"command": "unitocom train mllm --init checkpoints/mllm-x.safetensors",
                                     "train_config": {"init": "checkpoints/mllm-x.safetensors"}}, 2.0)
    assert stage.main(["mllm-x=runs/second", "--out", "checkpoints/next"]) == 0
    out = installed / "next"
    assert (out / "mllm-x.safetensors").read_bytes() == (run / "mllm.safetensors").read_bytes()
    entry = json.loads((out / "manifest-tasks.json").read_text())["mllm-x"]
    assert entry["command"] == "unitocom train mllm --init checkpoints/mllm-x.safetensors"
    assert entry["sha256"] == stage.file_sha256(out / "mllm-x.safetensors")
    (first,) = entry["history"]
    assert first["init_sha256"] == stage.file_sha256(installed / "mllm-x.safetensors")
    assert first["command"] == "unitocom train mllm --steps 10" and first["history"] == [{"steps": "0-10"}]
    for name in ("image-x.safetensors", "text-bpe.json"):  # the rest of the set: links
        assert (out / name).is_symlink() and (out / name).resolve() == (installed / name).resolve()
    assert not (out / "manifest.json").exists()  # no manifest written through a link into the installed set
    with pytest.raises(SystemExit):  # a name with nothing installed to replace
        stage.main(["mllm-y=runs/second", "--out", "checkpoints/next"])
    with pytest.raises(SystemExit):  # a path that holds no MLLM
        stage.main(["mllm-x=runs", "--out", "checkpoints/next"])


def test_an_mllm_fine_tuned_from_a_pretrained_encoder_records_the_encoder_and_the_installed_mllm(tmp_path,
                                                                                              monkeypatch):
    """The program MLLM starts from `train image-encoder`'s output, which starts from an installed MLLM: the history
    names both, the encoder's record (command, source, last reading) and the installed MLLM's own record."""
    stage = _script()
    monkeypatch.chdir(tmp_path)
    installed = tmp_path / "checkpoints"
    installed.mkdir()
    _mllm(installed / "mllm-x.safetensors", {"command": "unitocom train mllm --steps 10"}, 1.0)
    stage.manifest_entry(installed / "mllm-x.safetensors", {"command": "unitocom train mllm --steps 10"})
    enc = tmp_path / "runs" / "enc"
    enc.mkdir(parents=True)
    _mllm(enc / "mllm.safetensors", {"image_encoder_pretraining": {
        "command": "unitocom train image-encoder --init checkpoints/mllm-x.safetensors",
        "source": "checkpoints/mllm-x.safetensors", "log": [{"step": 6000, "20db": {"shape": 0.92}}]}}, 2.0)
    run = tmp_path / "runs" / "prog"
    run.mkdir()
    _mllm(run / "mllm.safetensors", {"command": "unitocom train mllm --init runs/enc/mllm.safetensors",
                                     "train_config": {"init": "runs/enc/mllm.safetensors"}}, 3.0)
    assert stage.main(["mllm-x=runs/prog", "--out", "checkpoints/next"]) == 0
    enc_part, base = json.loads((installed / "next" / "manifest-tasks.json").read_text())["mllm-x"]["history"]
    assert enc_part["init"] == "runs/enc/mllm.safetensors"
    assert enc_part["image_encoder_pretraining"]["last_reading"] == {"step": 6000, "20db": {"shape": 0.92}}
    assert "log" not in enc_part["image_encoder_pretraining"]
    assert base["init_sha256"] == stage.file_sha256(installed / "mllm-x.safetensors")
    assert base["command"] == "unitocom train mllm --steps 10"

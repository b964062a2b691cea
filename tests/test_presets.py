"""Checkpoints belong to a preset: a service of one preset never loads another's weights (issue 15)."""
from __future__ import annotations

import dataclasses

import grpc
import pytest

from tests.conftest import free_consecutive, scene_png
from unitocom import client, config, launcher
from unitocom.messages import Modality
from unitocom.options import Scheme, Task
from unitocom.schemes import learned, semcom
from unitocom.mllm.checkpoint import default_links, mllm_path_for


def test_names_carry_the_preset_but_for_tiny():
    tiny, paper = config.load("tiny"), config.load("paper")
    assert learned.checkpoint_name(Scheme.UNITOCOM, Modality.IMAGE, tiny) == "image-sigma-genib-s32"
    assert learned.checkpoint_name(Scheme.UNITOCOM, Modality.IMAGE, paper) == "paper-image-sigma-genib-s32"
    assert learned.checkpoint_name(Scheme.VAE, Modality.TEXT, paper) == "paper-text-vae"
    assert semcom.checkpoint(Task.VQA, paper) == "paper-semcom-vqa"
    assert mllm_path_for(paper).name == "paper-mllm-sigma-genib.safetensors"
    assert mllm_path_for(tiny).name == "mllm-sigma-genib.safetensors"
    assert all("/paper-" in p for p in default_links("paper").values())
    assert config.checkpoint_preset("paper-semcom-asr") == "paper" and config.checkpoint_preset("semcom-asr") == "tiny"


@pytest.fixture(scope="module")
def paper_stack(tmp_path_factory):
    base = free_consecutive(6)
    cfg = config.load("paper").replace(transmitter_port=base, channel_port=base + 1, basestation_port=base + 2,
                                       metrics_base_port=base + 3)
    d = tmp_path_factory.mktemp("paper-run")
    launcher.up(cfg, "paper", d, timeout_s=180)
    assert {r["preset"] for r in launcher.status(d)} == {"paper"}  # `unitocom status --json` says which
    yield cfg
    launcher.down(d)


@pytest.mark.parametrize("scheme, missing", [("unitocom", "paper-image-sigma-genib-s32"),
                                             ("semcom", "paper-semcom-vqa")])
def test_a_paper_stack_without_paper_checkpoints_names_them(paper_stack, scheme, missing):
    req = client.build_request(image=scene_png(64), text="what color is the cube?", task="vqa", scheme=scheme)
    with client.Client(paper_stack.address("transmitter").grpc) as c, pytest.raises(grpc.RpcError) as e:
        c.send(req)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value.details()
    assert missing in e.value.details()
    # the traditional scheme needs no checkpoint: the paper stack serves it
    with client.Client(paper_stack.address("transmitter").grpc) as c:
        assert c.send(client.build_request(text="paper", snr_db=30.0)).output_text == "paper"


def test_a_paper_base_station_refuses_a_tiny_stream(paper_stack):
    """A tiny transmitter's uplink (tiny checkpoint names) to a paper base station: refused, not decoded."""
    from unitocom import wire
    from unitocom.stages import transmitter
    from unitocom.stages.request import from_wire
    from unitocom.v1 import unitocom_pb2_grpc as pb_grpc
    tiny = config.load("tiny")
    prep = transmitter.prepare(from_wire(client.build_request(image=scene_png(32), task="reconstruct",
                                                              scheme="unitocom", snr_db=20.0)), tiny)
    with grpc.insecure_channel(paper_stack.address("channel").grpc) as ch, pytest.raises(grpc.RpcError) as e:
        pb_grpc.ChannelStub(ch).Forward(wire.uplink(prep.header, prep.frames(1024)), timeout=60)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "tiny preset" in e.value.details() and "serves the paper preset" in e.value.details()

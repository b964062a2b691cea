"""Dynamic batching at the base station (issue 13): the micro-batcher, batched VQA equal to unbatched on the
committed checkpoints, and the service answering concurrent requests with batching on."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from unitocom.batching import BatcherClosed, MicroBatcher


# -- the micro-batcher --------------------------------------------------------------------------------------------

def _recording(fn=lambda xs: [x * 10 for x in xs]):
    sizes: list[int] = []

    def batch(xs):
        sizes.append(len(xs))
        return fn(xs)
    return batch, sizes


def test_each_caller_gets_its_own_result_in_order():
    fn, sizes = _recording()
    b = MicroBatcher(fn, max_batch=4, max_delay_ms=50)
    futs = [b.submit(i) for i in range(10)]
    assert [f.result(5) for f in futs] == [i * 10 for i in range(10)]
    b.close()
    assert sum(sizes) == 10 and max(sizes) <= 4


def test_max_batch_bounds_every_batch_and_full_batches_do_not_wait():
    gate = threading.Event()
    fn, sizes = _recording()

    def slow_first(xs):
        gate.wait(5)  # hold the worker so that the rest queue up behind the first batch
        return fn(xs)
    b = MicroBatcher(slow_first, max_batch=3, max_delay_ms=10_000)
    futs = [b.submit(i) for i in range(7)]
    t0 = time.monotonic()
    gate.set()
    assert [f.result(5) for f in futs[:6]] == [0, 10, 20, 30, 40, 50]
    # the full batches did not sit out the 10 s delay
    assert time.monotonic() - t0 < 5
    assert all(s <= 3 for s in sizes)
    b.close(drain=True)  # the 7th (waiting for company) runs on close, not lost
    assert futs[6].result(5) == 60


def test_max_delay_bounds_the_wait_of_a_lone_item():
    fn, sizes = _recording()
    b = MicroBatcher(fn, max_batch=16, max_delay_ms=30)
    t0 = time.monotonic()
    assert b(7, timeout=5) == 70
    waited = time.monotonic() - t0
    b.close()
    assert 0.025 <= waited < 2.0, waited
    assert sizes == [1]


def test_batch_of_one_does_not_wait():
    b = MicroBatcher(lambda xs: xs, max_batch=1, max_delay_ms=10_000)
    t0 = time.monotonic()
    assert b("x", timeout=5) == "x"
    assert time.monotonic() - t0 < 1.0
    b.close()


def test_a_per_item_exception_fails_only_that_item():
    def fn(xs):
        return [ValueError(f"bad {x}") if x < 0 else x for x in xs]
    b = MicroBatcher(fn, max_batch=8, max_delay_ms=50)
    futs = [b.submit(x) for x in (1, -2, 3)]
    assert futs[0].result(5) == 1 and futs[2].result(5) == 3
    with pytest.raises(ValueError, match="bad -2"):
        futs[1].result(5)
    b.close()


def test_a_failing_batch_function_fails_every_item_of_the_batch_and_the_worker_goes_on():
    calls = []

    def fn(xs):
        calls.append(list(xs))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return xs
    b = MicroBatcher(fn, max_batch=8, max_delay_ms=50)
    futs = [b.submit(x) for x in range(3)]
    for f in futs:
        with pytest.raises(RuntimeError, match="boom"):
            f.result(5)
    assert b(9, timeout=5) == 9  # the worker survived
    b.close()


def test_a_wrong_number_of_results_is_an_error_for_every_item():
    b = MicroBatcher(lambda xs: xs[:-1], max_batch=4, max_delay_ms=50)
    futs = [b.submit(x) for x in range(2)]
    for f in futs:
        with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
            f.result(5)
    b.close()


def test_concurrent_submitters_are_batched_together_and_all_answered():
    fn, sizes = _recording(lambda xs: [(x, len(xs)) for x in xs])
    b = MicroBatcher(fn, max_batch=16, max_delay_ms=20)
    with ThreadPoolExecutor(32) as pool:
        out = list(pool.map(lambda i: b(i, timeout=10), range(200)))
    b.close()
    assert [x for x, _ in out] == list(range(200))
    assert sum(sizes) == 200 and max(sizes) <= 16
    assert max(sizes) > 1  # 32 threads at once: some batches had company


def test_close_refuses_new_items_and_drains_or_fails_the_queued_ones():
    gate = threading.Event()
    b = MicroBatcher(lambda xs: (gate.wait(5), xs)[1], max_batch=1, max_delay_ms=0)
    futs = [b.submit(i) for i in range(3)]
    closer = threading.Thread(target=b.close)  # drains: waits for the gate
    closer.start()
    time.sleep(0.05)
    with pytest.raises(BatcherClosed):
        b.submit(99)
    gate.set()
    closer.join(5)
    assert [f.result(5) for f in futs] == [0, 1, 2]

    gate.clear()
    b2 = MicroBatcher(lambda xs: (gate.wait(5), xs)[1], max_batch=1, max_delay_ms=0)
    first = b2.submit("running")
    time.sleep(0.05)  # the worker holds the first item
    queued = [b2.submit(i) for i in range(3)]
    closer = threading.Thread(target=b2.close, kwargs={"drain": False})
    closer.start()
    time.sleep(0.05)
    gate.set()
    closer.join(5)
    assert first.result(5) == "running"
    for f in queued:
        with pytest.raises(BatcherClosed):
            f.result(5)


def test_a_cancelled_item_is_left_out_of_its_batch():
    gate = threading.Event()
    seen = []

    def fn(xs):
        gate.wait(5)
        seen.extend(xs)
        return xs
    b = MicroBatcher(fn, max_batch=1, max_delay_ms=0)
    first = b.submit("a")
    time.sleep(0.05)
    second = b.submit("b")
    assert second.cancel()
    gate.set()
    assert first.result(5) == "a"
    b.close()
    assert seen == ["a"]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        MicroBatcher(lambda xs: xs, max_batch=0)
    with pytest.raises(ValueError):
        MicroBatcher(lambda xs: xs, max_delay_ms=-1)


# -- batched generation: left padding, masks and positions --------------------------------------------------------

def _left_padded(prompts):
    """Prompts [1, n_b, D] -> (embeds [B, max n, D] with each prompt at the right end, mask [B, max n]), built
    here by hand so that the model's own padding code is checked against it."""
    import torch
    length = max(p.shape[1] for p in prompts)
    embeds = torch.zeros(len(prompts), length, prompts[0].shape[2])
    mask = torch.zeros(len(prompts), length, dtype=torch.long)
    for b, p in enumerate(prompts):
        embeds[b, length - p.shape[1]:] = p[0]
        mask[b, length - p.shape[1]:] = 1
    return embeds, mask


def test_left_padded_greedy_generation_equals_one_prompt_at_a_time():
    """A random tiny MLLM, prompts of very different lengths: the batched (masked, per-row positions) greedy
    tokens equal the unbatched ones, and the last-position logits agree to float precision."""
    import torch

    from unitocom.mllm.model import MLLM, MLLMConfig
    torch.manual_seed(0)
    model = MLLM(MLLMConfig(vocab=64, hidden=32, layers=2, heads=4, intermediate=64, max_positions=128,
                            token_dim=8, head_width=16, head_depth=1)).eval()
    prompts = [torch.randn(1, n, 32) for n in (3, 17, 9, 30, 1)]
    eos = 10 ** 6  # never produced: every row generates all its tokens
    alone = [model.generate_text(p, 6, eos)[0] for p in prompts]
    embeds, mask = _left_padded(prompts)
    assert model.generate_text(embeds, 6, eos, mask=mask) == alone
    assert model.generate_text(embeds, 6, eos, mask=mask, use_cache=False) == alone
    with torch.no_grad():
        h, _ = model.hidden(embeds, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0))
        for b, p in enumerate(prompts):
            h1, _ = model.hidden(p)
            torch.testing.assert_close(model.logits(h[b, -1]), model.logits(h1[0, -1]), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="left"):
        model.generate_text(embeds, 2, eos, mask=mask.flip(1))


def test_batched_next_token_diffusion_draws_each_rows_own_noise():
    """generate_tokens with left-padded prefixes and one generator per row: each row is what it gives alone with
    its own generator (to float rounding of the batched products), with classifier-free guidance on."""
    import torch

    from unitocom.mllm.model import MLLM, MLLMConfig
    torch.manual_seed(0)
    model = MLLM(MLLMConfig(vocab=64, hidden=32, layers=2, heads=4, intermediate=64, max_positions=128,
                            token_dim=8, head_width=16, head_depth=1, diffusion_sample_steps=5,
                            image_positions=8)).eval()
    prompts = [torch.randn(1, n, 32) for n in (2, 11, 6)]
    uncond = torch.randn(1, 3, 32)
    alone = [model.generate_tokens(p, 4, "image", generator=torch.Generator().manual_seed(s), prefix_uncond=uncond,
                                   guidance=3.0)[0] for s, p in enumerate(prompts)]
    embeds, mask = _left_padded(prompts)
    together = model.generate_tokens(embeds, 4, "image", mask=mask, prefix_uncond=uncond.expand(3, -1, -1),
                                     generator=[torch.Generator().manual_seed(s) for s in range(3)], guidance=3.0)
    for a, b in zip(alone, together):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


# -- on the committed checkpoints ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from unitocom.data.make import make_dataset
    d = tmp_path_factory.mktemp("batching-data")
    make_dataset(d, "tiny", seed=321, scenes=80, clips=3, speech=False, progress=False, workers=1,
                 log=lambda *_: None)
    return d


@pytest.fixture(scope="module")
def vqa_work(scenes):
    """12 VQA requests on fresh scenes (learned scheme, Rayleigh, SNR 0..11 dB: several images and questions of
    different lengths), and their uplinks as the channel would forward them to the base station."""
    from bench.bench_batching import recorded_uplinks, vqa_requests
    from unitocom import config
    reqs = vqa_requests(12, scenes)
    return reqs, recorded_uplinks(reqs, config.load("tiny"))


def _serve_in_process(uplink, cfg):
    """What the base station's Receive does with one recorded uplink, in this process."""
    from unitocom import wire
    from unitocom.stages.basestation import BaseStationCore
    from unitocom.stages.request import from_wire
    core = BaseStationCore(from_wire(uplink[0].header, "header"), cfg)
    for m in uplink[1:]:
        core.add(wire.frame_from_pb(m.frame, csi=True))
    return core.finish()


def _pixels(png: bytes):
    import io

    import numpy as np
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(png))).astype(int)


@pytest.fixture(scope="module")
def unbatched_results(vqa_work):
    from unitocom import config
    _, uplinks = vqa_work
    return [_serve_in_process(u, config.load("tiny")) for u in uplinks]


def test_batched_vqa_equals_unbatched_on_the_committed_checkpoints(vqa_work, unbatched_results):
    """Concurrent requests through the batched receiver and MLLM (in this process): the same answers, the same
    decoded questions and scores as one request at a time, and batches of more than one did run."""
    _, uplinks = vqa_work
    batched, sizes = _batched_concurrently(uplinks)
    assert max(n for s, n in sizes if s == "mllm") > 1 and max(n for s, n in sizes if s == "receiver") > 2
    assert len({r.output_text for r in unbatched_results}) > 1  # not one answer for everything
    for one, many in zip(unbatched_results, batched):
        assert many.output_text == one.output_text
        assert many.quality == one.quality
        assert [o.text for o in many.outputs] == [o.text for o in one.outputs]  # the decoded question
        assert [o.note for o in many.outputs] == [o.note for o in one.outputs]
        assert {t.stage for t in many.timings} == {t.stage for t in one.timings}
        for a, b in zip(one.outputs, many.outputs):
            if a.image_png:  # the received image: a batched convolution may round a pixel the other way
                assert abs(_pixels(a.image_png) - _pixels(b.image_png)).max() <= 1


def _batched_concurrently(uplinks, batch_max=8, delay_ms=100.0):
    """Each uplink served in this process on its own thread, with dynamic batching on; also the batch sizes."""
    import dataclasses

    from unitocom import batching, config
    cfg = config.load("tiny")
    cfg = cfg.replace(limits=dataclasses.replace(cfg.limits, batch_max=batch_max, batch_delay_ms=delay_ms))
    sizes: list[tuple[str, int]] = []
    batching.set_observer(lambda stage, n: sizes.append((stage, n)))
    try:
        with ThreadPoolExecutor(len(uplinks)) as pool:
            return list(pool.map(lambda u: _serve_in_process(u, cfg), uplinks)), sizes
    finally:
        batching.set_observer(None)
        batching.close_all()


@pytest.mark.parametrize("scheme, task, batched_stages", [
    # the LDPC blocks of concurrent requests in one decoder call, the answers batched (the MLLM batcher)
    ("traditional", "vqa", {"mllm", "channel_decode"}),
    ("unitocom", "reconstruct", {"receiver"}),  # the learned receiver batcher alone
    ("vae", "vqa", {"mllm", "receiver"}),  # the other MLLM and tokenizers, batched whole
])
def test_the_other_batched_paths_equal_unbatched(scenes, scheme, task, batched_stages):
    from bench.bench_batching import recorded_uplinks, vqa_requests
    from unitocom import config
    cfg = config.load("tiny")
    uplinks = recorded_uplinks(vqa_requests(6, scenes, scheme=scheme, task=task), cfg)
    alone = [_serve_in_process(u, cfg) for u in uplinks]
    together, sizes = _batched_concurrently(uplinks)
    assert {s for s, n in sizes if n > 1} == batched_stages
    for one, many in zip(alone, together):
        assert many.output_text == one.output_text
        assert many.quality == one.quality
        assert [o.text for o in many.outputs] == [o.text for o in one.outputs]
        for a, b in zip(one.outputs, many.outputs):
            if a.image_png:
                assert abs(_pixels(a.image_png) - _pixels(b.image_png)).max() <= 1


def test_batched_transcripts_equal_one_clip_at_a_time():
    """The committed MLLM on audio token sequences of 1 to 4 chunks (prompts of very different lengths): the
    batched greedy transcripts equal the unbatched ones."""
    import torch

    from unitocom import config
    from unitocom.mllm import tasks
    from unitocom.options import Scheme
    from unitocom.stages import mllm
    a = mllm.assistant(Scheme.UNITOCOM, config.load("tiny"))
    s = a.audio_link.spec
    g = torch.Generator().manual_seed(5)
    clips = [torch.randn(c * s.tokens, s.token_dim, generator=g) for c in (1, 4, 2, 3, 1)]
    assert tasks.transcribe(a.model, a.vocab, clips, max_new=12, batched=True) == \
        tasks.transcribe(a.model, a.vocab, clips, max_new=12)


def test_batched_text_to_image_equals_unbatched():
    """Three captions with their own seeds generated together: the same images (to one grey level) and scores."""
    from bench.bench_batching import recorded_uplinks
    from unitocom import client, config
    cfg = config.load("tiny")
    captions = ["There is a large red square.", "A small blue circle is left of a green triangle.", "Two squares."]
    uplinks = recorded_uplinks([client.build_request(text=c, task="t2i", scheme="unitocom", snr_db=20.0, seed=i)
                                for i, c in enumerate(captions)], cfg)
    alone = [_serve_in_process(u, cfg) for u in uplinks]
    together, sizes = _batched_concurrently(uplinks)
    assert max(n for s, n in sizes if s == "mllm") > 1
    for one, many in zip(alone, together):
        assert many.output_text == one.output_text and many.quality == one.quality
        gen = [[o for o in r.outputs if "generated" in o.note][0] for r in (one, many)]
        assert abs(_pixels(gen[0].image_png) - _pixels(gen[1].image_png)).max() <= 1


# -- through the service ------------------------------------------------------------------------------------------

def test_the_batching_base_station_answers_concurrent_requests_as_unbatched(vqa_work, unbatched_results,
                                                                           tmp_path):
    """A base station with --batch-max 8: 12 concurrent uplinks all answered OK, each answer equal to the
    unbatched one, and unitocom_batch_size shows batches of more than one."""
    import urllib.request

    import grpc

    from bench.bench_batching import start, stop, wait_serving
    from tests.conftest import free_ports
    from unitocom.v1 import unitocom_pb2_grpc as pb_grpc
    _, uplinks = vqa_work
    port, metrics_port = free_ports(2)
    log = tmp_path / "basestation.log"
    svc = start("basestation", port, metrics_port, ["--batch-max", "8", "--batch-delay-ms", "100"], log)
    try:
        wait_serving(svc, "unitocom.v1.BaseStation", log)
        with grpc.insecure_channel(svc.target) as chan:
            stub = pb_grpc.BaseStationStub(chan)
            with ThreadPoolExecutor(len(uplinks)) as pool:
                results = list(pool.map(lambda u: stub.Receive(iter(u), timeout=120), uplinks))
        text = urllib.request.urlopen(svc.metrics_url, timeout=5).read().decode()
    finally:
        stop(svc)
    assert [r.output_text for r in results] == [r.output_text for r in unbatched_results]
    assert [[o.text for o in r.outputs] for r in results] == [[o.text for o in r.outputs] for r in unbatched_results]
    from prometheus_client.parser import text_string_to_metric_families
    samples = [x for f in text_string_to_metric_families(text) if f.name == "unitocom_batch_size"
               for x in f.samples if x.labels.get("stage") == "mllm"]
    count = next(x.value for x in samples if x.name.endswith("_count"))
    ones = next(x.value for x in samples if x.name.endswith("_bucket") and float(x.labels["le"]) == 1.0)
    assert count >= 1
    assert ones < count  # some batch held more than one request

"""Base-station throughput with dynamic batching against without it: VQA, 16 concurrent clients (issue 13).

Starts two base stations on free loopback ports, one batched (--batch-max, --batch-delay-ms) and one with
--no-batching, and drives each in turn (interleaved rounds, so that a neighbour's load on a shared machine
falls on both alike) with N closed-loop clients for T seconds. Every client sends recorded uplinks: VQA
requests (learned scheme `unitocom`, Rayleigh fading) already through the transmitter and the channel in this
process, as the channel service would forward them. So the base station's own work is what is measured; the
transmitter's and the channel's share of the full stack is not (run `--stack full` for the three services).

Prints throughput (requests/s), p50/p99 latency, the mean batch size (from the service's /metrics) and the
ratios side by side, and checks that every answer of the batched service equals the unbatched one for the same
uplink.

    PYTHONPATH=. .venv/bin/python bench/bench_batching.py [--clients 16] [--seconds 10] [--rounds 2]
        [--batch-max 16] [--batch-delay-ms 10] [--stack basestation|full] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from tests.conftest import free_ports  # noqa: E402
from unitocom import client, config, wire  # noqa: E402
from unitocom.procs import stop as stop_process  # noqa: E402
from unitocom.v1 import unitocom_pb2_grpc as pb_grpc  # noqa: E402


# -- the workload ------------------------------------------------------------------------------------------------

def vqa_requests(count: int, data_dir: Path | None = None, scheme: str = "unitocom", task: str = "vqa") -> list:
    """`count` VQA requests (pb.Request) on held-out CLEVR-style scenes: learned scheme, Rayleigh, SNR 0..19 dB
    (another scheme or task, e.g. reconstruct, on the same images and questions when asked)."""
    d = data_dir or ROOT / "data" / "tiny"
    if not (d / "CLEVR_v1.0/questions/CLEVR_test_questions.json").exists():
        from unitocom.data.make import make_dataset
        d = Path(tempfile.mkdtemp(prefix="bench-batching-"))
        # about 5 questions per test scene, and the test split is about 1/13 of the scenes
        make_dataset(d, "tiny", seed=123, scenes=max(80, 3 * count), clips=3, speech=False, progress=False,
                     workers=1, log=lambda *_: None)
    clevr = d / "CLEVR_v1.0"
    qs = json.loads((clevr / "questions/CLEVR_test_questions.json").read_text())["questions"][:count]
    return [client.build_request(image=(clevr / "images/test" / q["image_filename"]).read_bytes(),
                                 question=q["question"], task=task, scheme=scheme, snr_db=float(i % 20),
                                 channel="rayleigh", answer=q["answer"] if task == "vqa" else "", seed=i)
            for i, q in enumerate(qs)]


def recorded_uplinks(requests: list, cfg: config.Config) -> list[list]:
    """Each request through the transmitter and the channel cores in-process: the pb.Uplink messages (header,
    then received frames with their CSI) that the channel service would stream to the base station."""
    from unitocom.stages import transmitter
    from unitocom.stages.channel import ChannelCore
    from unitocom.stages.request import from_wire
    from unitocom.v1 import unitocom_pb2 as pb
    out = []
    for req in requests:
        prep = transmitter.prepare(from_wire(req), cfg)
        ch = ChannelCore(prep.header.link, [s.stream_id for s in prep.header.streams], cfg)
        msgs = [pb.Uplink(header=wire.to_pb(prep.header))]
        for f in prep.frames(cfg.limits.frame_symbols):
            up = pb.Uplink()
            wire.fill_frame(up.frame, ch.apply(f))
            msgs.append(up)
        out.append(msgs)
    return out


# -- the services ------------------------------------------------------------------------------------------------

@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    target: str
    metrics_url: str


def start(module: str, port: int, metrics_port: int, extra: list[str], log: Path) -> Service:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", f"services.{module}.server", "--port", str(port), "--metrics-port",
           str(metrics_port)] + extra
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                                env=env, start_new_session=True)
    return Service(module, proc, f"127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics")


def wait_serving(svc: Service, grpc_name: str, log: Path, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while client.health(svc.target, grpc_name) != "SERVING":
        if svc.proc.poll() is not None:
            raise RuntimeError(f"{svc.name} exited during start-up:\n{log.read_text(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{svc.name} not SERVING after {timeout_s:.0f} s; see {log}")
        time.sleep(0.2)


def stop(svc: Service) -> None:
    stop_process(svc.proc, 15)


def batch_counts(metrics_url: str, stage: str = "mllm") -> tuple[float, float]:
    """(sum, count) of unitocom_batch_size{stage} on the service now (0, 0 when never observed)."""
    from prometheus_client.parser import text_string_to_metric_families
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    got = {"sum": 0.0, "count": 0.0}
    for f in text_string_to_metric_families(text):
        if f.name == "unitocom_batch_size":
            for x in f.samples:
                kind = x.name.rpartition("_")[2]
                if x.labels.get("stage") == stage and kind in got:
                    got[kind] = x.value
    return got["sum"], got["count"]


@dataclass
class Mode:
    """One way of serving: a label, the base station's flags, and where its requests enter."""

    label: str
    flags: list[str]
    services: list[Service] = field(default_factory=list)
    entry: str = ""
    basestation_metrics: str = ""


def bring_up(mode: Mode, stack: str, logs: Path) -> None:
    ports = free_ports(6)
    bs_port, bs_metrics = ports[0], ports[1]
    slug = mode.label.replace(" ", "-")
    bs = start("basestation", bs_port, bs_metrics, mode.flags, logs / f"basestation-{slug}.log")
    mode.services.append(bs)
    mode.basestation_metrics = bs.metrics_url
    mode.entry = bs.target
    if stack == "full":
        ch = start("channel", ports[2], ports[3], ["--basestation", bs.target], logs / f"channel-{slug}.log")
        tx = start("transmitter", ports[4], ports[5], ["--channel", ch.target], logs / f"transmitter-{slug}.log")
        mode.services += [ch, tx]
        mode.entry = tx.target


def wait_up(mode: Mode, logs: Path) -> None:
    names = {"basestation": "unitocom.v1.BaseStation", "channel": "unitocom.v1.Channel",
             "transmitter": "unitocom.v1.Transmitter"}
    slug = mode.label.replace(" ", "-")
    for s in mode.services:
        wait_serving(s, names[s.name], logs / f"{s.name}-{slug}.log")


# -- the load ----------------------------------------------------------------------------------------------------

@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    answers: dict[int, set] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)  # "service stage" -> seconds, summed over requests
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds while loaded
    seconds: float = 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(mode: Mode, stack: str, work: list, clients: int, seconds: float, tally: Tally) -> None:
    """`clients` threads, each sending one request after the other for `seconds` (closed loop)."""
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)

    def worker(k: int) -> None:
        opts = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
        with grpc.insecure_channel(mode.entry, options=opts) as chan:
            if stack == "full":
                stub = pb_grpc.TransmitterStub(chan)
                call = lambda i: stub.Send(work[i], timeout=60)  # noqa: E731
            else:
                stub = pb_grpc.BaseStationStub(chan)
                call = lambda i: stub.Receive(iter(work[i]), timeout=60)  # noqa: E731
            call(k % len(work))  # connect before the clock starts
            start_gate.wait()
            i, stop_at = k, time.monotonic() + seconds
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                try:
                    r = call(i % len(work))
                    with lock:
                        tally.latencies.append(time.perf_counter() - t0)
                        tally.answers.setdefault(i % len(work), set()).add(r.output_text)
                        for st in r.timings:
                            k = f"{st.service} {st.stage}"
                            tally.stages[k] = tally.stages.get(k, 0.0) + st.seconds
                except grpc.RpcError as e:
                    with lock:
                        tally.errors.append(f"{e.code().name}: {e.details()}")
                i += clients

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    cpu0 = {s.name: cpu_seconds(s.proc.pid) for s in mode.services}
    me0 = time.process_time()
    for t in threads:
        t.join()
    tally.seconds += time.perf_counter() - t0
    for s in mode.services:
        tally.cpu[s.name] = tally.cpu.get(s.name, 0.0) + cpu_seconds(s.proc.pid) - cpu0[s.name]
    tally.cpu["clients"] = tally.cpu.get("clients", 0.0) + time.process_time() - me0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0, help="load time per mode and round")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (unbatched, batched, ...)")
    ap.add_argument("--requests", type=int, default=64, help="distinct VQA requests cycled through")
    ap.add_argument("--batch-max", type=int, default=16)
    ap.add_argument("--batch-delay-ms", type=float, default=10.0)
    ap.add_argument("--stack", choices=("basestation", "full"), default="basestation",
                    help="basestation: recorded uplinks straight to the base station; full: requests to the "
                         "transmitter of a whole stack per mode")
    ap.add_argument("--scheme", default="unitocom", choices=("unitocom", "vae", "traditional"),
                    help="scheme of the VQA requests (traditional: JPEG + LDPC, whose code blocks are batched)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    cfg = config.load("tiny")
    reqs = vqa_requests(args.requests, scheme=args.scheme)
    work = reqs if args.stack == "full" else recorded_uplinks(reqs, cfg)
    modes = [Mode("unbatched", ["--no-batching"]),
             Mode("batched", ["--batch-max", str(args.batch_max), "--batch-delay-ms", str(args.batch_delay_ms)])]
    tallies = {m.label: Tally() for m in modes}
    with tempfile.TemporaryDirectory() as d:
        logs = Path(d)
        try:
            for m in modes:
                bring_up(m, args.stack, logs)
            for m in modes:
                wait_up(m, logs)
            print(f"{args.clients} clients, {args.seconds:g} s x {args.rounds} rounds per mode, stack "
                  f"{args.stack}, {len(work)} distinct VQA requests (unitocom, rayleigh)", file=sys.stderr)
            for r in range(args.rounds):
                for m in modes:
                    drive(m, args.stack, work, args.clients, args.seconds, tallies[m.label])
                    print(f"  round {r + 1} {m.label}: {len(tallies[m.label].latencies)} ok so far",
                          file=sys.stderr)
            batches = {m.label: (batch_counts(m.basestation_metrics, "mllm"),
                                 batch_counts(m.basestation_metrics, "receiver")) for m in modes}
        finally:
            for m in modes:
                for s in reversed(m.services):
                    stop(s)

    rows = []
    for m in modes:
        t = tallies[m.label]
        (s, c), (rs, rc) = batches[m.label]
        rows.append({"mode": m.label, "ok": len(t.latencies), "errors": len(t.errors),
                     "throughput_rps": len(t.latencies) / t.seconds if t.seconds else 0.0,
                     "p50_ms": pct(t.latencies, 0.50) * 1e3, "p99_ms": pct(t.latencies, 0.99) * 1e3,
                     "mean_batch": s / c if c else 1.0, "mean_receiver_batch": rs / rc if rc else 1.0,
                     "cpu_ms_per_request": {k: 1e3 * v / max(1, len(t.latencies)) for k, v in t.cpu.items()}})
    un, ba = rows
    a_un, a_ba = tallies["unbatched"].answers, tallies["batched"].answers
    both = set(a_un) & set(a_ba)
    mismatched = sorted(i for i in both if a_un[i] != a_ba[i] or len(a_un[i]) != 1)
    summary = {"throughput_ratio": ba["throughput_rps"] / un["throughput_rps"] if un["throughput_rps"] else 0.0,
               "p50_ratio": ba["p50_ms"] / un["p50_ms"], "p99_ratio": ba["p99_ms"] / un["p99_ms"],
               "answers_compared": len(both), "answers_differing": len(mismatched)}
    if args.json:
        print(json.dumps({"rows": rows, "summary": summary, "args": vars(args)}, indent=2))
    else:
        print(f"{'mode':10s} {'ok':>6s} {'errors':>6s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'mllm batch':>11s} "
              f"{'rx batch':>9s}")
        for row in rows:
            print(f"{row['mode']:10s} {row['ok']:6d} {row['errors']:6d} {row['throughput_rps']:8.1f} "
                  f"{row['p50_ms']:8.1f} {row['p99_ms']:8.1f} {row['mean_batch']:11.2f} "
                  f"{row['mean_receiver_batch']:9.2f}")
        print("(mllm batch: requests per MLLM forward; rx batch: streams, image and text, per receiver forward)")
        print(f"batched / unbatched: throughput {summary['throughput_ratio']:.2f}x, "
              f"p50 {summary['p50_ratio']:.2f}x, p99 {summary['p99_ratio']:.2f}x")
        print(f"answers: {len(both)} requests answered by both, {len(mismatched)} differ")
        print("CPU ms per request (user + system, while loaded; the clients run in this process):")
        procs = list(rows[0]["cpu_ms_per_request"])
        print(f"  {'process':28s} " + " ".join(f"{m.label:>10s}" for m in modes) + f" {'ratio':>7s}")
        for p in procs:
            a, b = (row["cpu_ms_per_request"].get(p, 0.0) for row in rows)
            print(f"  {p:28s} {a:10.2f} {b:10.2f} {a / b if b else 0.0:7.2f}")
        print("stage wall time, mean ms per request (a batched stage counts its whole batch's time; under load "
              "a stage's time includes waiting for a core):")
        names = sorted({k for t in tallies.values() for k in t.stages})
        print(f"  {'service stage':28s} " + " ".join(f"{m.label:>10s}" for m in modes))
        for k in names:
            per = [1e3 * tallies[m.label].stages.get(k, 0.0) / max(1, len(tallies[m.label].latencies)) for m in modes]
            print(f"  {k:28s} " + " ".join(f"{v:10.1f}" for v in per))
    for t in tallies.values():
        for e in sorted(set(t.errors))[:5]:
            print(f"error: {e}", file=sys.stderr)
    return 0 if not mismatched and not any(r["errors"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

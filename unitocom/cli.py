"""`unitocom`: run the testbed (up, down, status, send), and the library's tools (link, data)."""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from unitocom.errors import UserError
from unitocom.report import format_result

EPILOG = """examples:
  unitocom up                                   start transmitter, channel and base station on loopback
  unitocom up --with-prometheus --with-gateway  ... plus Prometheus on :9090 and the HTTP gateway on :8080
  unitocom send --text "three red cubes" --snr-db 20
  unitocom send --image photo.png --scheme traditional --snr-db 5 --channel rayleigh --out out/
  unitocom up --extra-args channel="--log-level DEBUG"   flags appended to one service's command line
  unitocom up --capture iq/ --capture-mode requested   the channel records the requests sent with --capture
  unitocom certs --out tls && unitocom up --tls-dir tls    mutual TLS on every hop, tokens at the transmitter
  unitocom send --tls-dir tls --text "hello"    ... a client then calls with the CA and tls/tokens
  unitocom status --json
  unitocom restart basestation                  stop one service (it drains) and start it again
  unitocom down
"""


def _addr_cfg(args):
    from unitocom import config
    cfg = config.load(args.preset)
    return cfg.replace(host=args.host, transmitter_port=args.base_port, channel_port=args.base_port + 1,
                       basestation_port=args.base_port + 2, metrics_base_port=args.metrics_base_port)


def cmd_up(args) -> int:
    from unitocom import launcher
    d = launcher.run_dir(args.run_dir)
    print(f"starting UniToCom services (preset {args.preset}), state in {d}")
    cfg = _addr_cfg(args)
    if args.with_prometheus:  # fail before starting anything when the server is not installed
        from unitocom import prometheus
        try:
            prometheus.binary()
        except prometheus.PrometheusError as e:
            print(f"error: --with-prometheus: {e}", file=sys.stderr)
            return 1
    try:
        extra = _extra_args(args.extra_args)
        _capture_args(args, extra)
        policy = _policy(args)
        _check_tls_dir(args.tls_dir, args.auth_tokens)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        launcher.up(cfg, args.preset, d, timeout_s=args.timeout, extra_args=extra, policy=policy,
                    tls_dir=args.tls_dir, auth_tokens=args.auth_tokens)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    sup = launcher.supervisor_status(d) or {}
    print(f"all services SERVING, supervised by pid {sup.get('pid')} (it restarts a service that exits; log "
          f"{sup.get('log')}); send with `unitocom send ...`, stop with `unitocom down`")
    return _up_sidecars(args, cfg, d)


def _check_tls_dir(tls_dir: str | None, auth_tokens: str | None) -> None:
    """Fail before anything starts when --tls-dir lacks what the services will ask for."""
    if auth_tokens and not tls_dir:
        raise ValueError("--auth-tokens needs --tls-dir (tokens are only sent over TLS)")
    if not tls_dir:
        print("note: plaintext, no authentication: fine on loopback for experiments; for more, make "
              "certificates with `unitocom certs --out DIR` and start with `unitocom up --tls-dir DIR`")
        return
    d = pathlib.Path(tls_dir)
    names = ["ca.pem"] + [f"{n}{s}" for n in ("transmitter", "channel", "basestation", "client")
                          for s in (".pem", "-key.pem")]
    missing = [n for n in names if not (d / n).is_file()]
    tokens = pathlib.Path(auth_tokens) if auth_tokens else d / "tokens"
    if not tokens.is_file():
        missing.append(str(tokens))
    if missing:
        raise ValueError(f"--tls-dir {d}: missing {', '.join(missing)} (make them with `unitocom certs --out {d}`)")


def _client_security(args):
    """(Tls | None, token | None) of `send`: --tls-dir (or $UNITOCOM_TLS_DIR) and --token-file (default
    <tls-dir>/tokens; the token is read from a file, never given on the command line where `ps` shows it)."""
    import os
    from unitocom import client
    tls_dir = args.tls_dir or os.environ.get("UNITOCOM_TLS_DIR")
    if not tls_dir:
        if args.token_file:
            raise UserError("--token-file needs --tls-dir (tokens are only sent over TLS)")
        return None, None
    token_file = args.token_file or str(pathlib.Path(tls_dir) / "tokens")
    return client.Tls.from_dir(tls_dir, name=None), client.read_token(token_file)


def _extra_args(items: list[str] | None) -> dict[str, list[str]]:
    """`--extra-args SERVICE=FLAGS` (repeatable; SERVICE may be `all`) as {service: [flag, ...]} (shell-split)."""
    import shlex
    from unitocom import launcher
    out: dict[str, list[str]] = {}
    for item in items or []:
        name, sep, flags = item.partition("=")
        if not sep or name not in (*launcher.ORDER, "all"):
            raise ValueError(f"--extra-args {item!r}: expected SERVICE=FLAGS with SERVICE one of "
                             f"{', '.join(launcher.ORDER)}, all")
        out.setdefault(name, []).extend(shlex.split(flags))
    return out


def _capture_args(args, extra: dict[str, list[str]]) -> None:
    """`up --capture DIR [--capture-mode M]` as the channel's flags, added to `extra` (absolute: the service's
    working directory is not ours)."""
    if args.capture:
        extra.setdefault("channel", []).extend(["--capture", str(pathlib.Path(args.capture).resolve()),
                                                "--capture-mode", args.capture_mode])
    elif args.capture_mode != "all":
        raise ValueError("--capture-mode needs --capture DIR")


def _policy(args):
    from unitocom.supervisor import Policy
    return Policy(max_failures=args.max_failures, backoff_initial_s=args.backoff_initial,
                  backoff_max_s=args.backoff_max, stable_after_s=args.stable_after, restart=args.restart)


def _up_sidecars(args, cfg, d) -> int:
    """`--with-prometheus` / `--with-gateway`: started after the services; any failure stops everything."""
    from unitocom import launcher, prometheus, sidecars
    try:
        prom_url = ""
        gateway = f"{args.host}:{args.gateway_port}" if args.with_gateway else None
        if args.with_prometheus:
            sc = prometheus.start(cfg, d, port=args.prometheus_port, host=args.host,
                                  interval_s=args.scrape_interval, gateway=gateway,
                                  gateway_ca=str(pathlib.Path(args.tls_dir) / "ca.pem") if args.tls_dir else None)
            prom_url = sc.url
            print(f"  {'prometheus':12s} READY    {sc.url}  (rules from deploy/prometheus/rules)")
        if gateway:
            token_file = (args.auth_tokens or str(pathlib.Path(args.tls_dir) / "tokens")) if args.tls_dir else None
            sc = sidecars.start_gateway(d, cfg.address("transmitter").grpc, host=args.host,
                                        port=args.gateway_port, prometheus_url=prom_url, tls_dir=args.tls_dir,
                                        token_file=token_file)
            print(f"  {'gateway':12s} READY    {sc.url}  (web page /, API docs /docs)")
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        launcher.down(d)
        return 1
    return 0


def cmd_down(args) -> int:
    from unitocom import launcher
    from unitocom.supervisor import exit_text
    d = launcher.run_dir(args.run_dir)
    before = launcher.status(d)
    names = launcher.down(d)
    print("stopped: " + (", ".join(names) if names else "nothing was running"))
    idle = [r for r in before if r["name"] not in names]
    if idle:  # recorded but not running when `down` came: say so rather than claim to have stopped them
        print("not running: " + ", ".join(f"{r['name']} ({r['state']}, last exit {exit_text(r['last_exit'])})"
                                          for r in idle))
    return 0


def cmd_restart(args) -> int:
    from unitocom import launcher
    d = launcher.run_dir(args.run_dir)
    try:
        p = launcher.restart(d, args.service, timeout_s=args.timeout)
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{p.name} SERVING again: pid {p.pid}, restarts {p.restarts}")
    return 0


def cmd_status(args) -> int:
    from unitocom import launcher, sidecars
    d = launcher.run_dir(args.run_dir)
    from unitocom.supervisor import exit_text
    rows, extra, sup = launcher.status(d), sidecars.status(d), launcher.supervisor_status(d)
    if args.json:
        print(json.dumps({"services": rows, **({"supervisor": sup} if sup else {}),
                          **({"sidecars": extra} if extra else {})}, indent=2))
    elif not rows:
        print("no services started (run `unitocom up`)")
    else:
        if sup:
            note = "" if sup["running"] else " (services are not restarted; `unitocom down` stops what is left)"
            print(f"{'supervisor':12s} {sup['state']:12s} pid {sup['pid']}{note}")
        print(f"{'service':12s} {'health':12s} {'pid':>7s} {'state':9s} {'restarts':>8s} {'last exit':>9s}  grpc")
        for r in rows:
            print(f"{r['name']:12s} {r['status']:12s} {r['pid'] or '-':>7} {r['state']:9s} {r['restarts']:8d} "
                  f"{exit_text(r['last_exit']):>9s}  {r['grpc']}  metrics {r['metrics']}")
        for r in extra:
            print(f"{r['name']:12s} {r['status']:12s} http {r['url']}")
    return 0 if rows and all(r["status"] == "SERVING" for r in rows) else 1


def cmd_send(args) -> int:
    from unitocom import client, options
    if not (args.text or args.image or args.audio):
        print("error: give at least one of --text, --image, --audio", file=sys.stderr)
        return 2
    try:
        values = {o.name: getattr(args, o.name) for o in options.REQUEST_OPTIONS}
        for o in options.REQUEST_OPTIONS:  # file options take a path here
            if o.type is bytes and values[o.name] is not None:
                values[o.name] = pathlib.Path(values[o.name]).read_bytes()
        req = client.build_request(**values)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tls, token = _client_security(args)
    with client.Client(args.target, tls=tls, token=token) as c:
        try:
            result = c.send(req, timeout_s=args.timeout_s)
        except client.RpcError as e:
            code, details = client.error_status(e)
            print(f"error: {code}: {details}", file=sys.stderr)
            return 1
    d = client.result_to_dict(result)
    if args.out:
        d["files"] = [str(p) for p in client.save_outputs(result, pathlib.Path(args.out))]
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        print(format_result(d))
    return 0


def cmd_replay(args) -> int:
    """Send IQ captures (the channel's --capture) to a base station again and print what it answers."""
    from unitocom import capture, client
    src = pathlib.Path(args.path)
    if src.is_dir():
        metas = capture.Recorder(src).recordings() if any(src.glob("*.sigmf-meta")) else []
        if not metas:
            raise UserError(f"{src}: no .sigmf-meta recordings (start the channel with --capture {src})")
    else:
        metas = [src if src.suffix == ".sigmf-meta" else src.with_suffix(".sigmf-meta")]
        if not metas[0].exists():
            raise UserError(f"{metas[0]}: no such recording")
    # a mutual-TLS base station admits only the channel's identity: the replay speaks as the channel
    tls = client.Tls.from_dir(args.tls_dir, "channel") if args.tls_dir else None
    failed = 0
    for m in metas:
        try:
            result = client.replay(args.target, m, timeout_s=args.timeout_s, tls=tls)
        except client.RpcError as e:
            code, details = client.error_status(e)
            print(f"{m.stem}: error: {code}: {details}", file=sys.stderr)
            failed += 1
            continue
        except ValueError as e:  # not a UniToCom capture, or one sigmf refuses
            print(f"{m.stem}: error: {e}", file=sys.stderr)
            failed += 1
            continue
        d = client.result_to_dict(result)
        if args.out:
            d["files"] = [str(p) for p in client.save_outputs(result, pathlib.Path(args.out) / m.stem)]
        print(json.dumps({"recording": str(m), **d}) if args.json else f"{m.stem}:\n{format_result(d)}")
    return 1 if failed else 0


class _Parser(argparse.ArgumentParser):
    """Usage mistakes as one line (`error: ...`, exit 2) like the CLI's other user errors; the subcommands'
    parsers are made of this class too."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def _service_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", default=None, help="state directory (default $UNITOCOM_RUN_DIR or ~/.cache/unitocom/run)")


def parser() -> argparse.ArgumentParser:
    from unitocom.config import PRESETS
    ap = _Parser(prog="unitocom", description="UniToCom token-communication testbed",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("up", help="start the three services as local processes and wait until SERVING")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model preset (default tiny)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    p.add_argument("--base-port", type=int, default=50051, help="transmitter port; channel +1, base station +2")
    p.add_argument("--metrics-base-port", type=int, default=9101, help="first /metrics port (one per service)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for SERVING")
    p.add_argument("--with-prometheus", action="store_true",
                   help="also start a Prometheus server (Debian package `prometheus`) scraping the services, with "
                        "the recording and alert rules of deploy/prometheus/rules; `down` stops it")
    p.add_argument("--prometheus-port", type=int, default=9090, help="Prometheus HTTP port (default 9090)")
    p.add_argument("--scrape-interval", type=float, default=5.0, help="Prometheus scrape interval in seconds")
    p.add_argument("--with-gateway", action="store_true",
                   help="also start the HTTP gateway (JSON / multipart API, OpenAPI docs, web page); with "
                        "--with-prometheus its page charts accuracy versus SNR live")
    p.add_argument("--gateway-port", type=int, default=8080, help="HTTP gateway port (default 8080)")
    p.add_argument("--extra-args", action="append", metavar="SERVICE=FLAGS",
                   help="flags appended to a service's command line (shell-quoted; SERVICE: transmitter, channel, "
                        "basestation or all; repeatable), e.g. --extra-args basestation='--log-level DEBUG'")
    p.add_argument("--capture", default=None, metavar="DIR",
                   help="the channel records IQ (SigMF, one recording per request) in DIR, kept under 1 GiB "
                        "(channel flag --capture-max-mb via --extra-args); replay with `unitocom replay DIR`. "
                        "Without it a request asking for capture (send --capture) is refused")
    p.add_argument("--capture-mode", choices=("all", "requested"), default="all",
                   help="with --capture: record every request (all, default) or only those sent with --capture "
                        "(requested)")
    p.add_argument("--tls-dir", default=None, metavar="DIR",
                   help="mutual TLS on every hop and bearer tokens at the transmitter, with the certificates of "
                        "DIR (make them with `unitocom certs --out DIR`); default: plaintext on loopback")
    p.add_argument("--auth-tokens", default=None, metavar="FILE",
                   help="the transmitter's token file (one per line; default <tls-dir>/tokens)")
    g = p.add_argument_group("supervision", "a supervisor restarts a service that exits, waiting 0.5 s, 1 s, 2 s, "
                             "... before each restart; `unitocom status` shows restarts and the last exit")
    g.add_argument("--max-failures", type=int, default=5,
                   help="quick failures in a row (each within --stable-after of its start) before a service is "
                        "marked failed and left stopped (default 5)")
    g.add_argument("--backoff-initial", type=float, default=0.5, help="seconds before the first restart (0.5)")
    g.add_argument("--backoff-max", type=float, default=10.0, help="the doubling backoff stops here, seconds (10)")
    g.add_argument("--stable-after", type=float, default=30.0,
                   help="seconds up after which a service's failure count and backoff start again (30)")
    g.add_argument("--restart", choices=("always", "on-failure"), default="always",
                   help="always: restart after any exit the supervisor did not ask for (default); on-failure: "
                        "not after exit code 0")
    _service_args(p)
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("restart", help="restart one service started by `up` (it drains, then starts again)")
    p.add_argument("service", choices=("transmitter", "channel", "basestation"))
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for SERVING again")
    _service_args(p)
    p.set_defaults(func=cmd_restart)

    p = sub.add_parser("down", help="stop the supervisor, then the services started by `up` (SIGTERM, then "
                                    "SIGKILL), and say what was stopped")
    _service_args(p)
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="health, pid, state, restarts and last exit of the services started by `up`")
    p.add_argument("--json", action="store_true",
                   help='print {"services": [{"name", "grpc", "metrics", "status", "pid", "state", "restarts", '
                        '"last_exit", ...}], "supervisor": {...}}')
    _service_args(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("send", help="send text / an image / audio through the running services",
                       description="Post payloads to the transmitter; they cross the channel to the base station "
                                   "and the result comes back. Exits non-zero with the gRPC status on failure.")
    from unitocom.options import add_flags
    add_flags(p)  # send's request flags, made from unitocom.options (the gateway and the SDK take the same)
    p.add_argument("--target", default="127.0.0.1:50051", help="transmitter address")
    p.add_argument("--tls-dir", default=None, metavar="DIR",
                   help="call over TLS with the CA of this `unitocom certs` directory (default $UNITOCOM_TLS_DIR)")
    p.add_argument("--token-file", default=None, metavar="FILE",
                   help="bearer token for a transmitter started with tokens: the first token of FILE (default "
                        "<tls-dir>/tokens)")
    p.add_argument("--out", help="directory to write reconstructed images / audio / text")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("replay", help="send IQ captures (the channel's --capture DIR) to a base station again",
                       description="Each recording holds the request header and every frame as the channel "
                                   "delivered it (received symbols and CSI): the base station decodes them again, "
                                   "so the same checkpoints give the same answer. PATH: one .sigmf-meta (or its "
                                   "stem) or a capture directory (every recording in it, oldest first).")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--target", default="127.0.0.1:50053", help="base station address (default 127.0.0.1:50053)")
    p.add_argument("--timeout", dest="timeout_s", type=float, default=120.0, help="deadline per recording, s")
    p.add_argument("--out", help="directory for reconstructed images / audio / text (one folder per recording)")
    p.add_argument("--json", action="store_true", help="one JSON object per line and recording")
    p.add_argument("--tls-dir", default=None, metavar="DIR",
                   help="the stack's `unitocom certs` directory, for a base station with mutual TLS (the replay "
                        "presents the channel's certificate, the only identity it admits)")
    p.set_defaults(func=cmd_replay)

    # `unitocom certs ...` is handed whole to unitocom.certs.main (see main()); listed here for --help
    sub.add_parser("certs", help="make a local CA, certificates for every service and a client, and a token "
                                 "(`unitocom certs --help`)")

    from unitocom import demo
    demo.add_subparser(sub)
    from unitocom import link_eval, task_eval
    from unitocom.data import cli as data_cli
    from unitocom.link import cli as link_cli
    from unitocom.train import cli as train_cli
    link_cli.add_subparser(sub)
    data_cli.add_subparser(sub)
    train_cli.add_subparser(sub)  # tokenizer, mllm, checker, all
    link_eval.add_subparser(sub)
    task_eval.add_subparser(sub)
    from unitocom import fig2
    fig2.add_subparser(sub)  # Fig. 2 as files: results/fig2.{json,csv,png}
    from unitocom import fig3
    fig3.add_subparser(sub)  # Fig. 3 at the task level: results/fig3.{json,csv,png}
    from unitocom import ablation
    ablation.add_subparser(sub)  # issue 12: differently trained MLLMs on the same questions -> results/ablation.*
    from unitocom import loss_sweep
    loss_sweep.add_subparser(sub)  # issue 16: packet loss and token budgets, results/{packet-loss,budget}.*
    from unitocom import access_sweep
    access_sweep.add_subparser(sub)  # issue 17: users sharing the channel, results/multiaccess.*
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["certs"]:  # its own parser, options and --help (unitocom/certs.py)
        from unitocom import certs
        return int(certs.main(argv[1:]) or 0)
    ap = parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, FileNotFoundError) as e:  # the user's to fix: one line, no traceback
        if os.environ.get("UNITOCOM_DEBUG"):
            raise
        print(f"error: {_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _message(e: BaseException) -> str:
    if isinstance(e, OSError) and not isinstance(e, UserError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    return " ".join(str(e).split())  # one line


if __name__ == "__main__":
    rc = main()
    if "WORLD_SIZE" in os.environ:  # started by torchrun (checked first: the other commands need not import torch)
        from unitocom.train.dist import leave
        leave(rc)
    sys.exit(rc)

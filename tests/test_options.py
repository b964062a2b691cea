"""One definition of the send options (unitocom.options), and every front end made from it: `unitocom send`'s
flags, the SDK's build_request, the gateway's JSON body and multipart form (its OpenAPI schema) and the web page."""
from __future__ import annotations

import argparse
import inspect
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import HTTP_STATUS, create_app
from unitocom import cli, client, options
from unitocom.link.modulation import MODULATIONS
from unitocom.link import multiaccess
from unitocom.v1 import unitocom_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
NAMES = [o.name for o in options.OPTIONS]
PROTO_ENUMS = {"task": pb.Task, "scheme": pb.Scheme, "channel": pb.ChannelModel, "fading": pb.Fading,
               "csi": pb.CsiMode}


@pytest.fixture(scope="module")
def spec() -> dict:
    with TestClient(create_app("127.0.0.1:1")) as c:
        return c.get("/openapi.json").json()


def _send_parser() -> argparse.ArgumentParser:
    sub = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["send"]


def _resolve(spec: dict, schema: dict) -> dict:
    """A property's schema with its $ref (or single non-null anyOf branch) followed."""
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        assert len(branches) == 1, schema
        schema = {**schema, **branches[0]}
    if "$ref" in schema:
        schema = {**schema, **spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]}
    return schema


# ---- the definition ----------------------------------------------------------------------------------------------

def test_enum_values_are_the_proto_enum_names():
    """The options' enums are the wire's: unitocom.v1's enum names in lower case, in order, so they cannot drift."""
    for name, enum in PROTO_ENUMS.items():
        wire = [n.lower() for n in enum.keys() if not n.endswith("UNSPECIFIED")]
        assert options.BY_NAME[name].choices == wire, name
    # modulation and variant are strings on the wire: the link's constellations, the learned models' variants
    # (stages.request checks both by these names).
    assert options.BY_NAME["modulation"].choices == list(MODULATIONS)
    assert options.BY_NAME["variant"].choices == ["standard", "resilient"]
    assert options.BY_NAME["packing"].choices == ["sequential", "aggregated"]
    assert options.BY_NAME["access"].choices == list(multiaccess.ACCESS)  # a string on the wire, as these
    assert set(options.ENUMS) == set(PROTO_ENUMS) | {"modulation", "variant", "packing", "access"}
    assert client.choices() == {**{o.name: o.choices for o in options.OPTIONS if o.enum},
                                "modality": ["text", "image", "audio"]}


def test_the_definition_knows_nothing_of_grpc():
    code = ("import sys, unitocom.options; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('grpc', 'google') or m.startswith('unitocom.v1')]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_bounds_and_values_are_checked():
    o = options.BY_NAME
    assert o["snr_db"].check(-50) == -50.0 and o["snr_db"].check(100) == 100.0
    for name, bad in [("snr_db", math.nan), ("snr_db", math.inf), ("snr_db", 100.5), ("jpeg_quality", 96),
                      ("code_rate", 1.0), ("erasure_prob", -0.1), ("block_length", -1), ("pilots", -1),
                      ("seed", -1), ("timeout_s", 0.0), ("timeout_s", 601), ("seed", 1.5), ("scheme", "morse"),
                      ("text", 3), ("image", "a path")]:
        with pytest.raises(ValueError, match=name):
            o[name].check(bad)
    assert o["scheme"].check("vae") is options.Scheme.VAE and o["code_rate"].check(0.5) == 0.5
    assert options.resolve({"snr_db": 3})["snr_db"] == 3.0 and options.resolve({})["task"] == "reconstruct"
    with pytest.raises(TypeError, match="snr"):
        options.resolve({"snr": 3})


# ---- every front end has every option ----------------------------------------------------------------------------

def test_cli_sdk_json_and_form_take_the_same_options(spec):
    # where and how to connect (address, TLS, token) and what to print are the CLI's, not request options
    cli_names = {a.dest for a in _send_parser()._actions} - {"help", "target", "out", "json", "tls_dir", "token_file"}
    sdk_names = set(inspect.signature(client.build_request).parameters) - {"request_id"}
    schemas = spec["components"]["schemas"]
    json_names = {re.sub(r"_b64$", "", k) for k in schemas["SendBody"]["properties"]}
    form_ref = spec["paths"]["/v1/send/form"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    form_names = set(_resolve(spec, form_ref)["properties"])
    assert cli_names == json_names == form_names == set(NAMES)
    # The SDK builds the Request; the deadline is the call's (Client.send(timeout_s=...)).
    assert sdk_names == set(NAMES) - {"timeout_s"}
    # The ones the gateway lacked before the options had one definition.
    assert {"pilots", "rician_k_db", "erasure_prob", "modulation", "code_rate"} <= json_names & form_names


def test_send_help_shows_every_flag_with_its_values():
    text = _send_parser().format_help()
    for o in options.OPTIONS:
        assert o.flag in text, o.name
        if o.enum:
            assert "{" + ",".join(o.choices) + "}" in text, o.name
    assert "--timeout" in text  # the older spelling of --timeout-s still works
    args = _send_parser().parse_args(["--text", "x", "--timeout", "5", "--modulation", "qpsk", "--pilots", "16"])
    assert (args.timeout_s, args.modulation, args.pilots) == (5.0, "qpsk", 16)
    with pytest.raises(SystemExit):
        _send_parser().parse_args(["--scheme", "morse"])
    # a session from the command line: --session (or --session-id), the parts, a switch for a partial answer
    args = _send_parser().parse_args(["--text", "q", "--session", "s1", "--session-parts", "image,text",
                                      "--session-partial", "--session-wait-s", "5"])
    assert (args.session_id, args.session_parts, args.session_partial, args.session_wait_s) == \
           ("s1", "image,text", True, 5.0)
    assert _send_parser().parse_args(["--text", "q"]).session_partial is False


def test_schema_enums_are_enums_with_the_proto_names(spec):
    for model in ("SendBody", "SendForm"):
        props = spec["components"]["schemas"][model]["properties"]
        for o in options.OPTIONS:
            if o.enum:
                assert _resolve(spec, props[o.name])["enum"] == o.choices, (model, o.name)
    # The web page's chart filter too.
    params = {p["name"]: p for p in spec["paths"]["/v1/quality"]["get"]["parameters"]}
    assert params["channel"]["schema"]["enum"] == [""] + options.BY_NAME["channel"].choices


def test_schema_bounds_are_the_options_bounds(spec):
    keys = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
    for model in ("SendBody", "SendForm"):
        props = spec["components"]["schemas"][model]["properties"]
        for o in options.OPTIONS:
            if o.type in (int, float):
                s = props[o.name]
                assert s["type"] == ("integer" if o.type is int else "number"), (model, o.name)
                assert {keys[k]: getattr(o, k) for k in keys if getattr(o, k) is not None} == \
                       {v: s[v] for v in keys.values() if v in s}, (model, o.name)
                assert s["default"] == o.default


def test_schema_describes_files_as_files(spec):
    form = spec["components"]["schemas"]["SendForm"]["properties"]
    body = spec["components"]["schemas"]["SendBody"]["properties"]
    for name in ("image", "audio"):
        assert form[name]["type"] == "string" and form[name]["format"] == "binary"
        b64 = _resolve(spec, body[f"{name}_b64"])
        assert b64["contentEncoding"] == "base64" and b64["type"] == "string" and "pattern" in b64
    assert list(spec["paths"]["/v1/send/form"]["post"]["requestBody"]["content"]) == ["multipart/form-data"]


def test_every_error_status_is_documented_with_the_error_body(spec):
    ops = spec["paths"]
    want = {str(s) for s in set(HTTP_STATUS.values()) | {413, 422}}
    for path in ("/v1/send", "/v1/send/form"):
        responses = ops[path]["post"]["responses"]
        assert set(responses) == want | {"200"}, path
        for code in want:
            ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorBody"), (path, code)
        assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/SendResult")
    assert {"400", "422", "503"} <= set(ops["/v1/quality"]["get"]["responses"])
    assert "503" in ops["/readyz"]["get"]["responses"]
    err = spec["components"]["schemas"]["ErrorBody"]
    detail = _resolve(spec, err["properties"]["error"])
    assert set(detail["properties"]) == {"status", "message"} and set(detail["required"]) == {"status", "message"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # 422 has the one error body too


# ---- the SDK puts every option on the wire -----------------------------------------------------------------------

def test_build_request_puts_every_option_on_the_wire():
    values = {"text": "t", "question": "q?", "image": b"img", "audio": b"wav", "task": "vqa", "scheme": "vae",
              "snr_db": 7.5, "channel": "rician", "fading": "fast", "block_length": 64, "rician_k_db": 6.0,
              "csi": "estimated", "pilots": 16, "erasure_prob": 0.25, "jpeg_quality": 60, "modulation": "qpsk",
              "code_rate": 0.4, "seed": 9, "answer": "yes", "transcript": "one two", "packet_loss": 0.2,
              "packet_burst": 3.0, "tokens_per_packet": 8, "variant": "resilient", "token_budget": 12,
              "packing": "aggregated", "lossy_modalities": "image", "session_id": "kitchen-1",
              "session_parts": "image,text", "session_partial": True, "session_wait_s": 12.5,
              "users": 2, "access": "superposed", "user_powers": "0.6, 0.4", "capture": True,
              "text_copies": 3}
    assert set(values) == set(NAMES) - {"timeout_s"}  # a new option must be added here too
    req = client.build_request(request_id="r1", **values)
    link = req.link
    assert (req.request_id, req.task, link.scheme, link.channel, link.fading, link.csi) == \
           ("r1", pb.VQA, pb.VAE, pb.RICIAN, pb.FAST, pb.ESTIMATED)
    for name in ("snr_db", "block_length", "rician_k_db", "pilots", "erasure_prob", "jpeg_quality", "modulation",
                 "code_rate", "seed", "packet_loss", "packet_burst", "tokens_per_packet", "variant", "token_budget",
                 "packing", "lossy_modalities", "text_copies"):
        assert getattr(link, name) == pytest.approx(values[name]), name
    assert (link.users, link.access, list(link.user_powers)) == (2, "superposed", [0.6, 0.4])
    assert link.capture is True and client.build_request(text="x").link.capture is False  # asked / not asked
    # users=2: each device sends every payload given
    assert [p.WhichOneof("content") for p in req.payloads] == ["image", "audio", "text", "text"] * 2
    assert [p.user for p in req.payloads] == [0] * 4 + [1] * 4
    assert [p.text for p in req.payloads[2:4]] == ["t", "q?"]
    # users=2: each user's answer is scored against the label given (user_labels), the request's label is unset
    assert [(lb.answer, lb.transcript) for lb in req.user_labels] == [("yes", "one two")] * 2
    assert not req.HasField("label")
    one = client.build_request(text="x", answer="yes", transcript="one two")
    assert (one.label.answer, one.label.transcript, len(one.user_labels)) == ("yes", "one two", 0)
    assert (req.session.id, list(req.session.parts), req.session.partial, req.session.wait_s) == \
           ("kitchen-1", [pb.IMAGE, pb.TEXT], True, 12.5)
    assert not client.build_request(text="x").HasField("session")  # no id given: no session
    assert client.build_request(text="x", session_id="").HasField("session")  # given empty: the services refuse it
    with pytest.raises(ValueError, match="give session_id too"):
        client.build_request(text="x", session_partial=True)
    with pytest.raises(ValueError, match="unknown value 'smell'"):
        client.build_request(text="x", session_id="s", session_parts="image,smell")
    # Defaults: the CLI's; "" modulation (older callers) and None both mean the service's.
    d = client.build_request(text="x", modulation="")
    assert (d.task, d.link.scheme, d.link.snr_db, d.link.modulation) == (pb.RECONSTRUCT, pb.TRADITIONAL, 20.0, "")
    with pytest.raises(ValueError, match="unknown value 'morse'"):
        client.build_request(text="x", scheme="morse")
    with pytest.raises(TypeError, match="snr"):
        client.build_request(text="x", snr=3)


# ---- the web page ------------------------------------------------------------------------------------------------

def test_the_page_offers_every_option():
    with TestClient(create_app("127.0.0.1:1")) as c:
        got = c.get("/v1/options").json()
    assert got["options"] == json.loads(json.dumps(options.describe()))
    assert [o["name"] for o in got["options"]] == NAMES
    html = (ROOT / "services/gateway/static/index.html").read_text()
    on_page = set(re.findall(r'name="(\w+)"', html))
    made_by_app_js = {o.name for o in options.OPTIONS if o.advanced}
    # image/audio: one file input posted under the right name; transcript: the ground-truth field doubles as it
    # for asr; timeout_s: the page waits as long as the server lets it.
    elsewhere = {"image", "audio", "transcript", "timeout_s"}
    assert set(NAMES) - on_page - made_by_app_js == elsewhere
    js = (ROOT / "services/gateway/static/app.js").read_text()
    assert "o.advanced" in js and "opts.options" in js

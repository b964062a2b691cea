"""The HTTP gateway's API in front of the real services: JSON and multipart mirror `unitocom send`, gRPC statuses
become HTTP statuses, OpenAPI describes it all, and it exports its own metrics."""
from __future__ import annotations

import base64
import io
import json

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from services.gateway.app import create_app
from tests.conftest import free_ports, need, scene_png
from unitocom import cli


@pytest.fixture(scope="module")
def api(services):
    cfg, _ = services
    with TestClient(create_app(cfg.address("transmitter").grpc)) as c:
        yield c


def test_json_send_mirrors_the_cli(services, api, capsys):
    cfg, _ = services
    body = {"text": "two green cylinders", "snr_db": 25.0, "seed": 3}
    r = api.post("/v1/send", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["output"] == "two green cylinders" and got["quality"]["exact_match"] == 1.0
    assert got["scheme"] == "traditional" and got["snr_db"] == 25.0 and got["channel_uses"] > 0
    # The same request through `unitocom send --json`: the same keys, the same answer.
    assert cli.main(["send", "--text", body["text"], "--snr-db", "25", "--seed", "3", "--json",
                     "--target", cfg.address("transmitter").grpc]) == 0
    want = json.loads(capsys.readouterr().out)
    assert set(want) == set(got)
    assert [set(o) for o in want["outputs"]] == [set(o) - {"image_png_b64", "audio_wav_b64"} for o in got["outputs"]]
    assert (want["output"], want["quality"], want["channel_uses"]) == (got["output"], got["quality"],
                                                                       got["channel_uses"])


def test_json_image_comes_back_as_png(api):
    png = scene_png(48)
    r = api.post("/v1/send", json={"image_b64": base64.b64encode(png).decode(), "snr_db": 30, "channel": "rayleigh"})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["modality"] == "image" and out["decoded"]
    img = Image.open(io.BytesIO(base64.b64decode(out["image_png_b64"])))
    assert img.size == (48, 48) and out["image_png_bytes"] == len(base64.b64decode(out["image_png_b64"]))
    assert r.json()["quality"]["psnr_db"] > 15


def test_multipart_upload(api):
    files = {"image": ("scene.png", scene_png(32), "image/png")}
    r = api.post("/v1/send/form", data={"snr_db": "28", "text": "a caption", "seed": "1"}, files=files)
    assert r.status_code == 200, r.text
    mods = {o["modality"] for o in r.json()["outputs"]}
    assert mods == {"image", "text"}


def test_multipart_audio(api):
    from unitocom.demo import speech_clip
    wav = speech_clip("one two three")
    need(wav is not None, "espeak-ng is not installed (scripts/setup_system.sh installs it)")
    r = api.post("/v1/send/form", data={"snr_db": "30"}, files={"audio": ("clip.wav", wav, "audio/wav")})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["modality"] == "audio" and out["audio_wav_b64"]


@pytest.mark.parametrize("body, status, grpc_status, words", [
    ({"text": "x", "scheme": "semcom"}, 501, "UNIMPLEMENTED", "semcom"),
    ({"image_b64": base64.b64encode(b"not an image").decode()}, 400, "INVALID_ARGUMENT",
     "payloads[0].image: not an image Pillow can read (12 bytes, starts with 0x6e6f7420616e2069...)"),
    ({"text": "x", "code_rate": 0.2}, 400, "INVALID_ARGUMENT", "link.code_rate: Turbo rate must be in [1/3, 0.9]"),
])
def test_errors_become_http_statuses_with_the_service_message(api, body, status, grpc_status, words):
    r = api.post("/v1/send", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["status"] == grpc_status and words in err["message"]
    assert "object at 0x" not in err["message"]


@pytest.mark.parametrize("body, words", [
    ({"text": "x", "jpeg_quality": 200}, "jpeg_quality: Input should be less than or equal to 95"),
    ({"text": "x", "scheme": "morse"}, "scheme: Input should be 'traditional', 'unitocom', 'vae' or 'semcom'"),
    ({"text": "x", "modulation": "qam256"}, "modulation: Input should be 'bpsk', 'qpsk', 'qam16' or 'qam64'"),
    ({"text": "x", "snr": 3}, "snr: is not an option"),
    ({"image_b64": "***"}, "image_b64: not valid base64 (the standard alphabet, padded with =)"),
    ({}, "give at least one of text, image_b64, audio_b64"),
])
def test_schema_violations_are_422_with_the_one_error_body(api, body, words):
    r = api.post("/v1/send", json=body)
    assert r.status_code == 422, r.text
    assert r.json() == {"error": {"status": "INVALID_ARGUMENT", "message": words}}


def test_non_finite_numbers_are_422(api):
    r = api.post("/v1/send", content=b'{"text": "x", "snr_db": NaN}', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["message"] == "snr_db: Input should be a finite number"


def test_the_options_the_gateway_lacked_reach_the_services(api):
    """pilots, Rician K, frame erasures, modulation and code rate, as `unitocom send` takes them, JSON and form."""
    link = {"snr_db": 30, "channel": "rician", "rician_k_db": 6, "csi": "estimated", "pilots": 16,
            "modulation": "qpsk", "code_rate": 0.4}
    r = api.post("/v1/send", json={"text": "pilots and fades", **link})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "pilots and fades" and r.json()["channel"] == "rician"
    r = api.post("/v1/send/form", data={"text": "pilots and fades", **{k: str(v) for k, v in link.items()}},
                 files={"image": ("", b"", "application/octet-stream")})  # a browser's empty file input
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "pilots and fades"
    r = api.post("/v1/send", json={"text": "lost", "erasure_prob": 1})
    out = r.json()["outputs"][0]
    assert out["erased"] and out["block_errors"] == out["blocks"]
    # Each one is really applied: a rate the code cannot do is refused by the services, naming it.
    r = api.post("/v1/send/form", data={"text": "x", "code_rate": "0.2"})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("link.code_rate")


def test_a_file_part_without_a_file_name_is_read_as_the_file(api):
    """The schema says `format: binary`; a client may send that part without a file name."""
    r = api.post("/v1/send/form", data={"snr_db": "30"}, files={"image": (None, scene_png(32), "image/png")})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["modality"] == "image" and r.json()["outputs"][0]["decoded"]


def test_an_infinite_psnr_comes_back_as_null(api):
    """A flat picture survives JPEG exactly: its PSNR is infinite, which JSON cannot say (it was a 500)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 128, 128)).save(buf, format="PNG")
    r = api.post("/v1/send", json={"image_b64": base64.b64encode(buf.getvalue()).decode(), "snr_db": 40})
    assert r.status_code == 200, r.text
    assert r.json()["quality"]["psnr_db"] is None and r.json()["quality"]["decoded"] == 1.0


def test_the_app_serves_again_after_its_lifespan_ended(services):
    """A server (or test client) that enters the app anew gets a working transmitter client, not a closed one."""
    cfg, _ = services
    app = create_app(cfg.address("transmitter").grpc)
    for _ in range(2):
        with TestClient(app) as c:
            r = c.post("/v1/send", json={"text": "again", "snr_db": 30})
            assert r.status_code == 200 and r.json()["output"] == "again", r.text


def test_a_body_over_the_limit_is_413(api):
    r = api.post("/v1/send", content=b"{}", headers={"content-type": "application/json",
                                                      "content-length": str(10**9)})
    assert r.status_code == 413 and r.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_a_missing_transmitter_is_503():
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    with TestClient(create_app(dead)) as c:
        r = c.post("/v1/send", json={"text": "x", "timeout_s": 5})
        assert r.status_code == 503 and r.json()["error"]["status"] == "UNAVAILABLE"
        assert c.get("/readyz").status_code == 503
        assert c.get("/healthz").json() == {"status": "ok"}


def test_openapi_docs_and_options(api):
    spec = api.get("/openapi.json").json()
    assert {"/v1/send", "/v1/send/form", "/v1/quality", "/readyz"} <= set(spec["paths"])
    props = spec["components"]["schemas"]["SendBody"]["properties"]
    assert {"text", "image_b64", "audio_b64", "scheme", "snr_db", "channel", "answer", "pilots"} <= set(props)
    form = spec["paths"]["/v1/send/form"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in form
    assert api.get("/docs").status_code == 200
    opts = api.get("/v1/options").json()
    assert "traditional" in opts["scheme"] and "rayleigh" in opts["channel"] and opts["prometheus"] is False
    assert "pilots" in {o["name"] for o in opts["options"]}
    assert api.get("/readyz").json()["status"] == "SERVING"
    page = api.get("/")
    assert page.status_code == 200 and 'id="send-form"' in page.text and api.get("/static/app.js").status_code == 200
    assert api.get("/v1/samples/image.png").content[:8] == b"\x89PNG\r\n\x1a\n"


def test_quality_needs_prometheus(api, services):
    r = api.get("/v1/quality")
    assert r.status_code == 503 and "--prometheus-url" in r.json()["error"]["message"]
    cfg, _ = services
    with TestClient(create_app(cfg.address("transmitter").grpc, f"http://127.0.0.1:{free_ports(1)[0]}")) as c:
        assert c.get("/v1/quality", params={"metric": "x\"}"}).status_code == 422
        r = c.get("/v1/quality")
        assert r.status_code == 503 and "unreachable" in r.json()["error"]["message"]


def test_gateway_exports_its_own_metrics(api):
    api.post("/v1/send", json={"text": "metered", "snr_db": 30})
    text = api.get("/metrics").text
    assert 'unitocom_http_requests_total{method="POST",route="/v1/send",status="200"}' in text
    assert "unitocom_http_request_seconds_bucket" in text

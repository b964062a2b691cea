"""The gateway's web page in headless Chromium (Debian `chromium`), against the real gateway process, the real
services and a real Prometheus: a user types text or picks an image, sends, sees the result and the live chart."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

from services.gateway import browser
from tests.conftest import free_ports, scene_png
from unitocom import prometheus, sidecars


@pytest.fixture(scope="module")
def gateway(services, tmp_path_factory):
    """(gateway URL, Prometheus URL): both real processes on free loopback ports, stopped at the end."""
    try:
        browser.executable()
    except browser.BrowserError as e:
        pytest.fail(str(e))
    cfg, _ = services
    d = tmp_path_factory.mktemp("gateway-run")
    prom_port, gw_port = free_ports(2)
    prom = prometheus.start(cfg, d, port=prom_port, interval_s=1.0, gateway=f"127.0.0.1:{gw_port}")
    try:
        gw = sidecars.start_gateway(d, cfg.address("transmitter").grpc, port=gw_port, prometheus_url=prom.url)
        yield gw.url, prom.url
    finally:
        sidecars.stop(d)


@pytest.fixture(scope="module")
def chromium():
    with browser.Chromium(1200, 900, timeout_s=60) as b:
        yield b


def test_typed_text_is_sent_and_the_answer_and_chart_appear(gateway, chromium, tmp_path):
    url, _ = gateway
    b = chromium
    b.goto(url + "/")
    b.wait("document.body.dataset.state === 'ready'")
    text = "a small rubber cube behind the metal sphere"
    b.eval(f"document.getElementById('text').value = {text!r}")
    b.eval("document.getElementById('answer').value = document.getElementById('text').value")
    b.eval("const s = document.getElementById('snr'); s.value = 24; s.dispatchEvent(new Event('input'))")
    assert b.eval("document.getElementById('snr-value').textContent") == "24 dB"
    b.eval("document.getElementById('send').click()")
    b.wait("document.body.dataset.state === 'done'")
    assert b.eval("document.getElementById('output-text').textContent").startswith(text)
    assert "at 24 dB over awgn" in b.eval("document.getElementById('summary').textContent")
    assert b.eval("[...document.querySelectorAll('#quality td')].map(t => t.textContent).join(' ')").startswith(
        "decoded 1 exact_match 1")
    # The chart reads accuracy per SNR bucket back from Prometheus (scraped every second here).
    b.wait("document.querySelector('#chart circle[data-snr=\"20\"]') !== null", timeout_s=30)
    assert b.eval("document.querySelector('#chart g.series').dataset.scheme") == "traditional"
    value = float(b.eval("document.querySelector('#chart circle[data-snr=\"20\"]').dataset.value"))
    assert 0.0 < value <= 1.0  # this request matched; the session's other tests may share the bucket
    assert b.console_errors() == []


def test_uploaded_image_comes_back_as_a_picture(gateway, chromium, tmp_path):
    url, _ = gateway
    b = chromium
    b.goto(url + "/?snr_db=30&channel=rayleigh")
    b.wait("document.body.dataset.state === 'ready'")
    png = tmp_path / "scene.png"
    png.write_bytes(scene_png(64))
    b.set_files("#file", [str(png)])
    b.wait("document.getElementById('file-name').textContent.includes('scene.png')")
    b.eval("document.getElementById('send').click()")
    b.wait("document.body.dataset.state === 'done'")
    b.wait("document.getElementById('result-image').naturalWidth === 64")
    assert b.eval("document.getElementById('image-figure').hidden") is False
    assert "image decoded" in b.eval("document.getElementById('output-text').textContent")
    shot = b.screenshot(tmp_path / "page.png")
    assert Image.open(shot).size[0] == 1200


def test_a_service_error_is_shown_not_hidden(gateway, chromium):
    url, _ = gateway
    b = chromium
    b.goto(url + "/?scheme=semcom&text=hello")
    b.wait("document.body.dataset.state === 'ready'")
    b.eval("document.getElementById('send').click()")
    b.wait("document.body.dataset.state === 'error'")
    assert b.eval("document.getElementById('status').textContent").startswith("UNIMPLEMENTED: ")
    assert b.eval("document.getElementById('result').hidden") is True


def test_screenshot_command_shows_a_result_and_the_chart(gateway, tmp_path):
    url, _ = gateway
    out = tmp_path / "gateway.png"
    cmd = [sys.executable, "-m", "services.gateway.browser", f"{url}/?sample=image&snr_db=25&run=1", str(out),
           "--timeout", "60"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    img = Image.open(out)
    assert img.size[0] == 1200 and img.size[1] >= 700
    # Not a blank page: the rendered result and chart have many colours.
    assert len(img.convert("RGB").getcolors(1 << 20) or []) > 500

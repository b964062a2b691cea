"""Headless Chromium driven over the DevTools protocol: load the gateway's page, let its JavaScript run, fill and
click like a user, wait for a condition, take a PNG screenshot. The page tests use it; so does the command

    python -m services.gateway.browser "http://127.0.0.1:8080/?sample=image&snr_db=25&run=1" page.png

which waits until the page shows a result (or an error) and its chart has points, then writes the screenshot.
Chromium is the Debian package `chromium` (scripts/setup_system.sh installs it when missing).
"""
from __future__ import annotations

import argparse
import base64
import itertools
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from unitocom.procs import stop as stop_process

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "--remote-debugging-port=0"]


class BrowserError(RuntimeError):
    pass


def executable() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    raise BrowserError("no Chromium on PATH: install the Debian package `chromium` (scripts/setup_system.sh)")


class Chromium:
    """One headless browser with one page. Use as a context manager; every wait is bounded."""

    def __init__(self, width: int = 1200, height: int = 900, timeout_s: float = 30.0):
        import websocket  # PyPI websocket-client
        self.timeout_s = timeout_s
        self.profile = tempfile.mkdtemp(prefix="unitocom-chromium-")
        self.proc = subprocess.Popen([executable(), *FLAGS, f"--user-data-dir={self.profile}",
                                      f"--window-size={width},{height}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            port = self._devtools_port()
            pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
            page = next(p for p in pages if p.get("type") == "page")
            self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout_s,
                                                  suppress_origin=True)
        except Exception:
            self.close()
            raise
        self.ids = itertools.count(1)
        self.events: list[dict] = []
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def _devtools_port(self) -> int:
        f = pathlib.Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout_s
        while not f.exists() or not f.read_text().strip():
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited with {self.proc.returncode}: "
                                   f"{self.proc.stderr.read().decode(errors='replace')[-1500:]}")
            if time.monotonic() > deadline:
                raise BrowserError(f"chromium did not open its DevTools port within {self.timeout_s:g} s")
            time.sleep(0.05)
        return int(f.read_text().split()[0])

    def call(self, method: str, **params) -> dict:
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == i:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error'].get('message')}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def goto(self, url: str) -> None:
        self.events.clear()
        r = self.call("Page.navigate", url=url)
        if r.get("errorText"):
            raise BrowserError(f"cannot load {url}: {r['errorText']}")
        self.wait("location.href !== 'about:blank' && document.readyState === 'complete'")

    def eval(self, expression: str):
        """Evaluate in the page (promises awaited); the value as JSON. Page exceptions raise BrowserError."""
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise BrowserError(f"{expression!r}: {d.get('exception', {}).get('description') or d.get('text')}")
        return r["result"].get("value")

    def wait(self, condition: str, timeout_s: float | None = None) -> None:
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while not self.eval(f"Boolean({condition})"):
            if time.monotonic() > deadline:
                state = self.eval("document.body ? document.body.innerText.slice(0, 600) : ''")
                raise BrowserError(f"timed out waiting for {condition}; the page shows: {state!r}")
            time.sleep(0.1)

    def set_files(self, selector: str, paths: list[str]) -> None:
        """Choose files in an <input type=file>, as a user would in the file dialog (fires `change`)."""
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise BrowserError(f"no element matches {selector!r}")
        self.call("DOM.setFileInputFiles", nodeId=node, files=[str(pathlib.Path(p).resolve()) for p in paths])

    def console_errors(self) -> list[str]:
        out = []
        for e in self.events:
            if e["method"] == "Runtime.exceptionThrown":
                out.append(e["params"]["exceptionDetails"].get("text", "exception"))
            elif e["method"] == "Runtime.consoleAPICalled" and e["params"].get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in e["params"]["args"]))
        return out

    def screenshot(self, path: str | pathlib.Path, full_page: bool = True) -> pathlib.Path:
        params: dict = {"format": "png"}
        if full_page:
            w, h = self.eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": w, "height": h, "scale": 1})
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        p = pathlib.Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return p

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            try:
                ws.close()
            except OSError:
                pass
        stop_process(self.proc, 10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Screenshot the gateway's web page in headless Chromium, after its "
                                             "request (run=1 in the URL) has answered and its chart has drawn.")
    ap.add_argument("url", help='page URL, e.g. "http://127.0.0.1:8080/?sample=image&snr_db=25&run=1"')
    ap.add_argument("out", help="PNG file to write")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the page")
    ap.add_argument("--wait-for", default="document.body.dataset.state === 'done' || "
                                          "document.body.dataset.state === 'error'",
                    help="JavaScript condition to wait for before the screenshot")
    ap.add_argument("--chart-points", type=int, default=1,
                    help="also wait until the chart draws at least this many points (0: do not wait)")
    args = ap.parse_args(argv)
    try:
        with Chromium(args.width, args.height, args.timeout) as b:
            b.goto(args.url)
            b.wait(args.wait_for)
            if args.chart_points:
                b.wait(f"Number(document.getElementById('chart').dataset.points || 0) >= {args.chart_points}")
            print(b.screenshot(args.out))
    except BrowserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

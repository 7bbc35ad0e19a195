"""Regenerate the README's MLflow UI screenshots (`make screenshots`): a tool, not a test.

Trains two short demo runs (a learning-rate sweep) in a scratch folder with its own MLflow store,
evaluates both, starts `mlflow server` on a free 127.0.0.1 port and photographs, with headless
Chromium (Debian: `apt-get install chromium`) driven over the DevTools pipe, into docs/images/:
mlflow_runs.png (the runs table), mlflow_compare.png (the chart view: validation dice of both runs),
mlflow_epoch_images.png (the epoch images of both runs with the step slider).

Usage: `.venv/bin/python docs/screenshots.py [--epochs 4] [--workdir DIR]` (about 6 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger("screenshots")
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WIDTH, HEIGHT = 1600, 1000  # CSS pixels of the browser window
MAX_BYTES = 300_000


class Browser:
    """Headless Chromium driven through the DevTools protocol on a pipe (fds 3/4; no extra packages)."""

    def __init__(self, profile: Path) -> None:
        cmd_r, self._cmd_w = os.pipe()
        self._resp_r, resp_w = os.pipe()
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (cmd_r, resp_w)]  # clear of 3 and 4
        os.close(cmd_r), os.close(resp_w)
        args = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--remote-debugging-pipe", f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}"]
        shell = f'exec 3<&{high[0]} 4>&{high[1]} {high[0]}<&- {high[1]}>&-; exec "$@"'
        self.proc = subprocess.Popen(["bash", "-c", shell, "bash", *args], pass_fds=high,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(high[0]), os.close(high[1])
        self._buf, self._id, self.session = b"", 0, ""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self._buf:
                chunk = os.read(self._resp_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium exited; is it installed (apt-get install chromium)?")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def js(self, expr: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"].get("exception", {}).get("description", expr))
        return result.get("result", {}).get("value")

    def wait(self, cond: str, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if self.js(f"!!({cond})"):
                    return
            except RuntimeError:
                pass  # the page is still loading
            time.sleep(0.5)
        raise TimeoutError(f"the UI never showed: {cond}")

    def goto(self, url: str, ready: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait(f"document.readyState === 'complete' && ({ready})")

    def mouse(self, kind: str, x: float, y: float, buttons: int = 1) -> None:
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", buttons=buttons, clickCount=1)

    def box(self, element: str) -> tuple[float, float, float, float]:
        """(left, top, width, height) of the element the JS expression `element` finds (waits for it)."""
        expr = f"(() => {{const e = {element}; if (!e) return null; const r = e.getBoundingClientRect(); " \
               "return [r.left, r.top, r.width, r.height];})()"
        self.wait(expr)  # React re-renders: the element can come and go while the page settles
        time.sleep(0.5)
        self.wait(expr)
        return tuple(self.js(expr))

    def drag(self, x: float, y: float, dx: float = 0) -> None:
        """Press at (x, y), move by dx, release (dx=0: a click); then move the mouse out of the way."""
        self.mouse("mouseMoved", x, y, 0)
        self.mouse("mousePressed", x, y)
        for i in range(1, 11 if dx else 1):
            self.mouse("mouseMoved", x + dx * i / 10, y)
        self.mouse("mouseReleased", x + dx, y, 0)
        self.mouse("mouseMoved", 5, HEIGHT - 5, 0)

    def click(self, element: str) -> None:
        """Click the centre of the element the JS expression `element` finds."""
        left, top, width, height = self.box(element)
        self.drag(left + width / 2, top + height / 2)

    def type(self, element: str, text: str) -> None:
        self.js(f"({element}).focus()")
        self.call("Input.insertText", text=text)

    def shot(self, path: Path, height: int = HEIGHT) -> None:
        clip = {"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1}
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png", clip=clip)["data"])
        save_small(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), path)

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.proc.wait(timeout=20)
        except (RuntimeError, subprocess.TimeoutExpired, OSError):
            self.proc.kill()


def save_small(image: np.ndarray, path: Path) -> None:
    """Write a PNG, downscaled until it is under MAX_BYTES."""
    while True:
        ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if ok and (len(data) <= MAX_BYTES or image.shape[1] < 600):
            path.write_bytes(data.tobytes())
            log.info("%s: %dx%d, %d KB", path, image.shape[1], image.shape[0], len(data) // 1024)
            return
        image = cv2.resize(image, None, fx=0.85, fy=0.85, interpolation=cv2.INTER_AREA)


def flexseg(workdir: Path, *args: str) -> None:
    log.info("flexseg %s", " ".join(args))
    subprocess.run([str(BIN / "flexseg"), *args], cwd=workdir, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def start_server(workdir: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db",
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=(workdir / "server.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).close()
            return proc, url
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise TimeoutError(f"mlflow server did not start; see {workdir / 'server.log'}")


def api(url: str, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/{endpoint}", data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def hide_run_params(browser: Browser, card: int) -> None:
    """Image cards list every param under the run name (about 150 for flexseg): switch that off."""
    browser.click(f"document.querySelectorAll('[data-testid=experiment-view-compare-runs-card-menu]')[{card}]")
    browser.click("[...document.querySelectorAll('[role=menuitem]')].find(e => e.innerText.includes('Configure'))")
    browser.wait("document.querySelector('[role=dialog] [role=switch]')")
    browser.click("document.querySelector('[role=dialog] [role=switch]')")
    browser.click("[...document.querySelectorAll('[role=dialog] button')].find(e => e.innerText.includes('Save'))")
    browser.wait("!document.querySelector('[role=dialog] [role=switch]')")


def prepare(browser: Browser, url: str, exp_id: str, train_ids: list[str]) -> None:
    """Close the assistant panel; the runs table's columns; training runs expanded (their eval runs shown)."""
    browser.goto(f"{url}/#/", "true")
    state = {"selectedColumns": ["metrics.`val_dice`", "metrics.`test_mean_foreground_dice`",
                                 "params.`train.learning_rate`"],
             "runsExpanded": {run_id: True for run_id in train_ids}, "autoRefreshEnabled": False}
    settings = {"mlflow.assistant.panelOpen_v1": "false", "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
                f'MLflowLocalStorage-1.1-ExperimentPage-["{exp_id}"]-ReactComponentState': json.dumps(state)}
    for key, value in settings.items():
        browser.js(f"localStorage.setItem({json.dumps(key)}, {json.dumps(value)})")


def shoot_runs_table(browser: Browser, url: str, exp_id: str, out: Path) -> None:
    browser.goto(f"{url}/#/experiments/{exp_id}?workflowType=machine_learning",
                 "document.body.innerText.includes('matching runs')")
    for column, dx in (("attributes.`Run Name`", 170), ("metrics.`test_mean_foreground_dice`", 90)):
        handle = f"document.querySelector('[role=columnheader][col-id=\"{column}\"] .ag-header-cell-resize')"
        left, top, width, height = browser.box(handle)
        browser.drag(left + width / 2 - 2, top + height / 2, dx)  # the column's resize handle
    time.sleep(1)
    browser.shot(out / "mlflow_runs.png", height=400)


def shoot_charts(browser: Browser, url: str, exp_id: str, out: Path) -> None:
    """The chart view: validation dice curves of the runs, then the epoch images of both side by side."""
    browser.goto(f"{url}/#/experiments/{exp_id}/runs?workflowType=machine_learning&compareRunsMode=CHART",
                 "document.querySelector('input[placeholder*=\"Search metric\"]')")
    browser.js("document.head.appendChild(Object.assign(document.createElement('style'), "
               "{textContent: '.modebar-container {display: none !important}'}))")  # plotly's hover toolbar
    rows = "[...document.querySelectorAll('[role=row]')].filter(r => r.innerText.includes('Hide run'))"
    shown_eval = f"{rows}.filter(r => /\\/eval /.test(r.innerText))"
    browser.wait(f"{rows}.length >= 2")
    for _ in range(browser.js(f"{shown_eval}.length")):  # eval runs have no curves: off the charts (their eye)
        browser.click(f"[...{shown_eval}[0].querySelectorAll('*')].filter(e => e.innerText === 'Hide run').pop()")
    search = "document.querySelector('input[placeholder*=\"Search metric\"]')"
    browser.type(search, "val_dice")
    browser.wait("document.querySelectorAll('.js-plotly-plot').length >= 3")
    time.sleep(3)
    browser.shot(out / "mlflow_compare.png", height=660)  # the first row of charts

    browser.js(f"(() => {{const e = {search}; Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value')"
               ".set.call(e, ''); e.dispatchEvent(new Event('input', {bubbles: true}));})()")
    browser.type(search, "epoch_change_infer")
    browser.wait("document.querySelectorAll('[data-testid=experiment-view-compare-runs-card-menu]').length >= 1")
    hide_run_params(browser, 0)
    browser.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=620, deviceScaleFactor=1, mobile=False)
    browser.click("document.querySelector('[data-testid=experiment-view-compare-runs-card-menu]')"
                  ".parentElement.querySelector('button')")  # the card's full-screen button
    slider = "[...document.querySelectorAll('[role=dialog] [role=slider]')].pop()"
    browser.wait(slider)
    left, top, width, height = browser.box(f"{slider}.parentElement.parentElement")
    browser.drag(left + width - 3, top + height / 2)  # the track's end: the last epoch
    browser.wait("[...document.querySelectorAll('[role=dialog] img')].filter(i => i.naturalWidth).length >= 2")
    time.sleep(2)
    browser.shot(out / "mlflow_epoch_images.png", height=620)


def photograph(url: str, exp_id: str, train_ids: list[str], out: Path, profile: Path) -> None:
    browser = Browser(profile)
    try:
        prepare(browser, url, exp_id, train_ids)
        shoot_runs_table(browser, url, exp_id, out)
        shoot_charts(browser, url, exp_id, out)
    finally:
        browser.close()


def runs_of(url: str, exp_id: str, mode: str) -> list[dict[str, Any]]:
    found = api(url, "runs/search", {"experiment_ids": [exp_id], "filter": f"tags.mode = '{mode}'"})
    return found.get("runs", [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new temp one); its runs are reused")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="flexseg-shots-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    if not (workdir / "mlflow.db").exists():
        flexseg(workdir, "-m", "experiment=demo", f"train.epochs={args.epochs}", "train.learning_rate=0.003,0.001")
    server, url = start_server(workdir)
    try:
        exp_id = api(url, "experiments/get-by-name?experiment_name=demo")["experiment"]["experiment_id"]
        train_ids = [r["info"]["run_id"] for r in runs_of(url, exp_id, "train")]
        evaluated = {t["value"] for r in runs_of(url, exp_id, "eval") for t in r["data"]["tags"]
                     if t["key"] == "mlflow.parentRunId"}
        for run_id in train_ids:
            if run_id not in evaluated:
                flexseg(workdir, "experiment=demo", "mode=eval", f"ckpt=runs:/{run_id}")
        photograph(url, exp_id, train_ids, args.out, workdir / "chromium-profile")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    log.info("screenshots in %s (runs and store in %s)", args.out, workdir)


if __name__ == "__main__":
    main()

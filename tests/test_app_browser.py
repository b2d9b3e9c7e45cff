"""The app in a real browser: Playwright drives the system Chromium (Debian package; never a Playwright
browser download) against ``streamlit run app`` on a free localhost port.

* upload a CIF, wait for the 3Dmol view to draw (non-white pixels), save a screenshot; no console error,
  and no request to any host but localhost (all JavaScript is inlined or served by the app);
* the camera stays where the user put it when a widget changes;
* clicking an atom in the Atom inspector's 3D view picks it.

Skips (with the reason) when /usr/bin/chromium or the playwright package is missing.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from conftest import save_tiny_model

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
START_TIMEOUT = 180  # s: streamlit start on a busy 2-core machine
UI_TIMEOUT = 120_000  # ms: first script run imports torch and builds the model
LOCAL_HOSTS = {"localhost", "127.0.0.1"}
# Console noise that is not an app error: Chromium's feature-policy warnings are warnings, and a 404 of
# a page-scoped health / host-config probe happens when a page URL is opened directly.
ALLOWED_404 = ("/_stcore/health", "/_stcore/host-config")

pytestmark = pytest.mark.browser

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium; .ci/run does it)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


def make_tiny_bec(folder: Path) -> Path:
    return save_tiny_model(folder, "aa_tiny_bec", ["born_charges", "dielectric"], [7, 8, 13, 14, 30],
                           max_neighbors=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models = tmp_path_factory.mktemp("browser_models")
    make_tiny_bec(models)
    port = free_port()
    log_path = tmp_path_factory.mktemp("browser_log") / "streamlit.log"
    env = dict(os.environ, ETGNN_PRETRAINED=str(models), ETGNN_DEFAULT_MODEL="aa_tiny_bec", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "streamlit", "run", "app", "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer within {START_TIMEOUT} s: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"http://localhost:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


class Recorder:
    """Every request, failed response, console message and page error of one page (all its frames)."""

    def __init__(self, page):
        self.requests: list[str] = []
        self.bad_responses: list[tuple[int, str]] = []
        self.console: list[tuple[str, str]] = []
        self.page_errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("response", lambda r: r.status >= 400 and self.bad_responses.append((r.status, r.url)))
        page.on("console", lambda m: self.console.append((m.type, m.text)))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    def foreign_requests(self) -> list[str]:
        out = []
        for url in self.requests:
            u = urlparse(url)
            if u.scheme in ("data", "about"):
                continue
            if u.scheme == "blob":  # blob:http://localhost:port/uuid -- created by the page itself
                u = urlparse(u.path)
            if u.hostname not in LOCAL_HOSTS:
                out.append(url)
        return out

    def console_errors(self) -> list[str]:
        expected_404 = all(s == 404 and urlparse(u).path.endswith(ALLOWED_404) for s, u in self.bad_responses)
        errs = []
        for kind, text in self.console:
            if kind != "error":
                continue
            if text.startswith("Failed to load resource") and "404" in text and expected_404:
                continue
            errs.append(text)
        return errs + self.page_errors


def new_page(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    rec = Recorder(page)
    page.goto(server + "/", timeout=UI_TIMEOUT)
    page.get_by_role("heading", name="Predict").first.wait_for(timeout=UI_TIMEOUT)
    return page, rec


def viewer_frame(page, predicate: str = "true", timeout_s: float = 120):
    """The frame holding a drawn 3Dmol viewer (library loaded, WebGL canvas present) satisfying ``predicate``."""
    deadline = time.monotonic() + timeout_s
    test = (f"() => typeof $3Dmol !== 'undefined' && !!window.etgnnViewer && !!document.querySelector('canvas') "
            f"&& ({predicate})")
    while time.monotonic() < deadline:
        for frame in page.frames:
            try:
                if frame.evaluate(test):
                    return frame
            except Exception:  # a frame being replaced
                pass
        time.sleep(0.25)
    raise AssertionError(f"no drawn 3Dmol view ({predicate}) within {timeout_s} s")


def drawn_fraction(frame) -> float:
    """Fraction of non-white pixels in a screenshot of the viewer's iframe."""
    from PIL import Image

    png = frame.frame_element().screenshot()
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)
    return float((img.min(axis=2) < 235).mean())


def get_view(frame) -> np.ndarray:
    return np.asarray(frame.evaluate("() => window.etgnnViewer.getView()"), dtype=float)


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the Streamlit selectbox labelled ``label``."""
    page.get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_upload_cif_draws_3d_view_offline(browser, server, tmp_path):
    page, rec = new_page(browser, server)
    page.get_by_text("Upload a file", exact=True).click()
    cif = tmp_path / "quartz.cif"
    shutil.copy(ROOT / "assets" / "demo" / "SiO2_alpha_quartz.cif", cif)
    page.locator('input[type="file"]').set_input_files(str(cif))
    page.get_by_role("heading", name="quartz.cif").wait_for(timeout=UI_TIMEOUT)
    frame = viewer_frame(page, "document.querySelector('.etgnn-caption').innerText.includes('ellipsoid')")
    time.sleep(1.0)  # let WebGL finish the first frames
    assert drawn_fraction(frame) > 0.02, "the 3D view is blank"
    page.get_by_role("tab", name="born_charges (e)").wait_for()
    shot = tmp_path / "predict_quartz.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert not rec.foreign_requests(), rec.foreign_requests()
    assert not rec.console_errors(), rec.console_errors()
    assert any(urlparse(u).path.startswith("/_stcore/stream") or "/static/" in u for u in rec.requests)
    page.close()


def test_camera_stays_when_a_widget_changes(browser, server):
    page, rec = new_page(browser, server)
    frame = viewer_frame(page, "document.querySelector('.etgnn-caption').innerText.includes('ellipsoid')")
    time.sleep(0.5)
    before = get_view(frame)
    box = frame.frame_element().bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 140, y + 60, steps=12)
    page.mouse.up()
    time.sleep(0.5)
    rotated = get_view(frame)
    assert not np.allclose(rotated, before, atol=1e-3), "the drag did not rotate the view"
    # a widget changes what is drawn: the page is rebuilt, the camera is kept
    choose(page, "3D view", "structure only")
    frame = viewer_frame(page, "document.querySelector('.etgnn-caption').innerText === ''")
    np.testing.assert_allclose(get_view(frame), rotated, atol=1e-3)
    # and back to the ellipsoids
    choose(page, "3D view", "born_charges: one ellipsoid per atom")
    frame = viewer_frame(page, "document.querySelector('.etgnn-caption').innerText.includes('ellipsoid')")
    np.testing.assert_allclose(get_view(frame), rotated, atol=1e-3)
    assert not rec.foreign_requests(), rec.foreign_requests()
    page.close()


def test_inspector_click_picks_an_atom(browser, server):
    page, rec = new_page(browser, server)
    page.get_by_role("link", name="Atom inspector").click()
    page.get_by_role("heading", name="Tensor: born_charges of atom #0 (e)").wait_for(timeout=UI_TIMEOUT)
    frame = viewer_frame(page)
    time.sleep(0.5)
    x, y = frame.evaluate("""() => {
        const v = window.etgnnViewer, a = v.getModel(0).selectedAtoms({})[4];
        const s = v.modelToScreen({x: a.x, y: a.y, z: a.z});
        return [s.x, s.y];
    }""")
    box = frame.frame_element().bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.get_by_role("heading", name="Tensor: born_charges of atom #4 (e)").wait_for(timeout=60_000)
    page.get_by_text("Contributions, largest first").wait_for()
    assert not rec.foreign_requests(), rec.foreign_requests()
    assert not rec.console_errors(), rec.console_errors()
    page.close()

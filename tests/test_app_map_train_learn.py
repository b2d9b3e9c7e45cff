"""App: Embedding map, Train and Learn pages (AppTest), and a real-browser click on the map (Playwright).

No shipped model is needed: a tiny model folder is written to a temporary $ETGNN_PRETRAINED.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from conftest import save_tiny_model

ROOT = Path(__file__).resolve().parents[1]
ENTRY = str(ROOT / "app" / "streamlit_app.py")
TIMEOUT = 240  # s per AppTest run: 2 shared CPU cores, model construction included
CHROMIUM = "/usr/bin/chromium"
MODEL = "0_tiny_bec"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """$ETGNN_PRETRAINED with one tiny (untrained, random) BEC + dielectric model, any element.

    Named "0_tiny_bec" so that it sorts before any model in the repository's pretrained/: the browser
    test (which cannot set session state) gets it as the default choice."""
    d = tmp_path_factory.mktemp("pretrained")
    save_tiny_model(d, MODEL, ["born_charges", "dielectric"])
    return d


@pytest.fixture
def env(pretrained, tmp_path, monkeypatch):
    monkeypatch.setenv("ETGNN_PRETRAINED", str(pretrained))
    monkeypatch.setenv("ETGNN_APP_RUNS", str(tmp_path / "runs"))
    return tmp_path


def app(page: str | None = None, **state):
    """The app on ``page`` with the tiny model chosen (shipped models in pretrained/ may exist too)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(ENTRY, default_timeout=TIMEOUT)
    at.session_state["etgnn_model"] = str((Path(os.environ["ETGNN_PRETRAINED"]) / MODEL).resolve())
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    if page:
        at.switch_page(f"views/{page}").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at) -> str:
    parts = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "subheader", "header", "title"):
        parts += [str(e.value) for e in at.get(kind)]
    return "\n".join(parts)


def errors(at) -> list[str]:
    return [str(e.value) for e in at.error]


def by_key(elements, key):
    return next(e for e in elements if e.key == key)


# ------------------------------------------------------------------------------------- embedding map
def test_embedding_map_draws_demo_atoms_and_opens_one(env):
    at = app("embedding_map.py", etgnn_emap_source="Demo structures")
    assert not errors(at), errors(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    n_points = sum(len(_values(t["x"])) for t in spec["data"])
    demos = json.loads((ROOT / "assets" / "demo" / "index.json").read_text())
    from etgnn_core.structure import read_structures

    assert n_points == sum(len(read_structures(ROOT / "assets" / "demo" / d["file"])[0]) for d in demos)
    # a BEC model colours by the predicted mean diagonal of the Born charges (the paper's Figure 5b)
    assert len(spec["data"]) == 1 and spec["data"][0]["marker"]["showscale"]
    assert "PC 1 explains" in texts(at)
    at.selectbox(key="emap_color").set_value("element").run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t["name"] for t in spec["data"]} >= {"O", "Si", "Zn"}
    # open structure 1, atom 2 by index: the 3D view of that structure with the atom highlighted
    by_key(at.number_input, "emap_pick_structure").set_value(1)
    by_key(at.number_input, "emap_pick_atom").set_value(2)
    by_key(at.button, "emap_pick_open").click().run()
    assert not at.exception and not errors(at), errors(at)
    assert "atom #2" in texts(at) and "Gold halo" in texts(at)
    frames = at.get("iframe")
    assert frames and "3Dmol" in frames[0].proto.srcdoc
    assert "cdn" not in frames[0].proto.srcdoc.lower().split("3dmol.js 2.5.5")[0]


def _values(v):
    if isinstance(v, dict) and "bdata" in v:
        import base64

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return v


# ---------------------------------------------------------------------------------------------- learn
def test_learn_page_edges_decomposition_and_rotation(env):
    at = app("learn.py")
    assert not errors(at), errors(at)
    assert len(at.get("latex")) >= 3
    txt = texts(at)
    assert "t_{kj}" in txt and "isotropic" in txt
    assert "equal up to float32 rounding" in txt, txt[-2000:]
    # reflect: still equivariant (polar tensors)
    at.checkbox(key="learn_mirror").check().run()
    assert any(r"\det R = -1" in str(e.value) for e in at.get("latex"))
    assert "equal up to float32 rounding" in texts(at)
    # random O(3)
    at.radio(key="learn_mode").set_value("Random element of O(3)").run()
    by_key(at.button, "learn_random").click().run()
    assert not at.exception and "equal up to float32 rounding" in texts(at)
    # pick another edge: the equation pieces are shown for it
    at.selectbox(key="learn_edge").set_value(1).run()
    assert not at.exception and not errors(at)


# ---------------------------------------------------------------------------------------------- train
def labelled_xyz(n=6, bad: str | None = None) -> bytes:
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        a = bulk("MgO", "rocksalt", a=4.2)
        a.rattle(0.05, seed=i)
        z = rng.normal(size=(len(a), 3, 3))
        z -= z.mean(0)
        if bad == "huge" and i == 3:
            z[1, 0, 0] = 500.0
        a.arrays["born_charges"] = z.reshape(len(a), 9)
        a.info["dielectric"] = (3 * np.eye(3)).ravel()
        frames.append(a)
    buf = io.StringIO()
    ase.io.write(buf, frames, format="extxyz")
    text = buf.getvalue()
    if bad == "nan":
        lines = text.splitlines()
        n_at = int(lines[0])
        k = 2 * (n_at + 2) + 2 + 1  # frame 2, atom 1
        fields = lines[k].split()
        fields[4] = "nan"
        lines[k] = " ".join(fields)
        text = "\n".join(lines) + "\n"
    return text.encode()


def upload(at, files):
    at.get("file_uploader")[0].set_value(files).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_train_page_refuses_bad_labels_with_frame_and_key(env):
    at = app("train.py")
    upload(at, ("bad.xyz", labelled_xyz(bad="nan"), "text/plain"))
    msg = " ".join(errors(at))
    assert "upload refused" in msg and "frame 2" in msg and "born_charges" in msg, msg
    assert not at.session_state["etgnn_train_uploads"]
    upload(at, ("huge.xyz", labelled_xyz(bad="huge"), "text/plain"))
    msg = " ".join(errors(at))
    assert "'3'" in msg and "born_charges" in msg and "500" in msg, msg
    # a zip of POSCARs without its CSV is refused too
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("s0.vasp", "x\n1.0\n4 0 0\n0 4 0\n0 0 4\nMg O\n1 1\nDirect\n0 0 0\n0.5 0.5 0.5\n")
    upload(at, ("set.zip", zbuf.getvalue(), "application/zip"))
    assert "CSV" in " ".join(errors(at))
    assert not at.session_state["etgnn_train_uploads"]


def poscar_zip_upload(n=4):
    """ETGNN layout: a zip of <id>.vasp POSCARs and a headerless id_prop_born.csv (9 numbers per atom)."""
    rng = np.random.default_rng(1)
    zbuf, rows = io.BytesIO(), []
    with zipfile.ZipFile(zbuf, "w") as zf:
        for i in range(n):
            x = 0.5 + 0.02 * rng.normal(size=3)
            zf.writestr(f"s{i}.vasp", "MgO\n1.0\n0 2.1 2.1\n2.1 0 2.1\n2.1 2.1 0\nMg O\n1 1\nDirect\n0 0 0\n"
                                      f"{x[0]:.5f} {x[1]:.5f} {x[2]:.5f}\n")
            z = rng.normal(size=(2, 3, 3))
            z -= z.mean(0)
            rows.append(f"s{i}," + ",".join(f"{v:.6f}" for v in z.ravel()))
    return [("set.zip", zbuf.getvalue(), "application/zip"),
            ("id_prop_born.csv", ("\n".join(rows) + "\n").encode(), "text/csv")]


def test_train_page_keeps_a_poscar_zip_upload_until_removed_and_maps_it(env):
    at = app("train.py")
    upload(at, poscar_zip_upload())
    assert not errors(at), errors(at)
    ups = at.session_state["etgnn_train_uploads"]
    assert list(ups) == ["set.zip"] and ups["set.zip"]["targets"] == ["born_charges"]
    assert "4 structures, 8 atoms" in texts(at)
    # the labelled upload is offered on the embedding map, with the labels as a colouring
    at.switch_page("views/embedding_map.py")
    at.session_state["etgnn_emap_source"] = "My uploads"
    at.run()
    assert not at.exception and not errors(at), errors(at)
    colors = at.selectbox(key="emap_color").options
    assert "mean diagonal born_charges (label)" in colors
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert sum(len(_values(t["x"])) for t in spec["data"]) == 8
    # back on the Train page it is still there, until removed
    at.switch_page("views/train.py").run()
    assert "set.zip" in at.session_state["etgnn_train_uploads"]
    by_key(at.button, "train_remove_set.zip").click().run()
    assert not at.session_state["etgnn_train_uploads"]


def _start(at, epochs: int, minutes: float):
    by_key(at.number_input, "train_epochs").set_value(epochs)
    by_key(at.number_input, "train_minutes").set_value(minutes)
    by_key(at.number_input, "train_batch").set_value(2)
    at.slider(key="train_val").set_value(0.2)
    at.slider(key="train_test").set_value(0.0)
    at.run()
    by_key(at.button, "train_start").click().run()
    assert not at.exception and not errors(at), errors(at)
    return at.session_state["etgnn_train_job"]


def test_train_page_finishes_registers_and_offers_download(env):
    at = app("train.py")
    upload(at, ("mgo.xyz", labelled_xyz(), "text/plain"))
    assert "mgo.xyz" in at.session_state["etgnn_train_uploads"]
    assert "labels: dielectric, born_charges" in texts(at)
    job = _start(at, epochs=2, minutes=5)
    assert job.wait(TIMEOUT), job.message
    at.run()
    assert job.status == "finished", job.message
    txt = texts(at)
    assert "is ready" in txt and "finished after" in txt, txt[-1500:]
    assert at.get("download_button"), "no download button"
    # the upload is kept, and the model is offered on the other pages at once
    assert "mgo.xyz" in at.session_state["etgnn_train_uploads"]
    (name, path), = at.session_state["etgnn_user_models"].items()
    from etgnn_core.api import load_model

    assert load_model(path, device="cpu").units["born_charges"] == "e"
    at.switch_page("views/embedding_map.py").run()
    assert any(path in opt for opt in at.sidebar.selectbox[0].options) or \
        any("(yours)" in str(o) for o in at.sidebar.selectbox[0].options)
    # the zip holds a folder load_model reads
    data = _download_bytes(job.model_dir, name)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert {f"{name}/config.json", f"{name}/weights.pt"} <= set(zf.namelist())


def _download_bytes(model_dir, name):
    from app.views.train import zip_folder  # noqa: PLC0415 - the page's own helper

    return zip_folder(model_dir, name)


def test_train_page_cancel(env):
    at = app("train.py")
    upload(at, ("mgo.xyz", labelled_xyz(), "text/plain"))
    job = _start(at, epochs=5000, minutes=10)
    deadline = time.monotonic() + TIMEOUT
    while not job.history and not job.done and time.monotonic() < deadline:
        time.sleep(0.2)
    at.run()
    by_key(at.button, "train_cancel").click().run()
    assert job.wait(TIMEOUT), job.message
    at.run()
    assert job.status == "cancelled", job.message
    assert "cancelled after" in texts(at) and "checkpoint" in texts(at)
    assert at.session_state["etgnn_user_models"], "a cancelled run's model is usable too"


# ------------------------------------------------------------------------------------------ browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (apt-get install -y chromium)")
def test_browser_click_on_map_opens_structure(pretrained, tmp_path):
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    port = _free_port()
    env = {**os.environ, "ETGNN_PRETRAINED": str(pretrained), "ETGNN_APP_RUNS": str(tmp_path / "runs")}
    cmd = [sys.executable, "-m", "streamlit", "run", ENTRY, "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    hosts = set()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 1100})
                page.on("request", lambda r: hosts.add(r.url.split("/")[2]) if "://" in r.url else None)
                url = f"http://127.0.0.1:{port}/"  # the entry script, then its navigation (as a user does)
                deadline = time.monotonic() + 60
                while True:
                    try:
                        page.goto(url, timeout=10_000)
                        break
                    except Exception:
                        if time.monotonic() > deadline or server.poll() is not None:
                            raise
                        time.sleep(1)
                # exact title of the st.navigation page (not the lower-case name Streamlit derives from the file)
                nav = page.locator("[data-testid='stSidebarNav']")
                nav.get_by_text("Embedding map", exact=True).click(timeout=TIMEOUT * 1000)
                page.get_by_text("Demo structures", exact=True).click(timeout=TIMEOUT * 1000)
                page.wait_for_selector(".js-plotly-plot .scatterlayer .point", timeout=TIMEOUT * 1000)
                page.wait_for_timeout(1000)  # let the chart settle after the rerun
                point = page.locator(".js-plotly-plot .scatterlayer .point").nth(3)
                box = point.bounding_box()
                assert box is not None
                page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                page.get_by_text("Gold halo: the selected atom").wait_for(timeout=TIMEOUT * 1000)
                frame = page.frame_locator("iframe[srcdoc*='3Dmol']").first
                frame.locator("canvas").first.wait_for(timeout=60_000)
                assert page.get_by_text("atom #").count() >= 1
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
        log.close()
    assert hosts <= {f"127.0.0.1:{port}"}, f"requests to other hosts: {hosts}"
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)

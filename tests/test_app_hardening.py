"""The app survives hostile uploads (issue 12): a thin cell is refused in one line, and a native crash in a
prediction ends only the worker process, never the server (AppTest runs the app in this process: had
the crash reached it, pytest itself would have died)."""

from __future__ import annotations

from pathlib import Path

import test_app_map_train_learn as part2
from test_app_map_train_learn import env, pretrained  # noqa: F401
from test_app_predict import DEMO, errors, new_app, ok, tab_labels, tiny_models, upload  # noqa: F401

THIN_XYZ = (b'2\nLattice="1000 0 0 0 0.001 0 0 0 1000" Properties=species:S:1:pos:R:3 pbc="T T T"\n'
            b"Si 0 0 0\nO 1.6 0 0\n")


def rattled_quartz() -> bytes:
    import io

    import ase.io

    atoms = ase.io.read(DEMO / "SiO2_alpha_quartz.cif")
    atoms.rattle(0.02, seed=3)
    buf = io.StringIO()
    ase.io.write(buf, atoms, format="extxyz")
    return buf.getvalue().encode()


def test_thin_cell_upload_is_refused_and_the_app_keeps_answering(tiny_models):  # noqa: F811
    at = new_app(tiny_models)
    upload(at, "quartz.cif", (DEMO / "SiO2_alpha_quartz.cif").read_bytes())
    ok(at)
    upload(at, "thin.xyz", THIN_XYZ)
    (msg,) = errors(at)
    assert msg.startswith("thin.xyz, frame 0: the cell is only 0.001 A thick along b") and "\n" not in msg
    assert at.selectbox(key="structure_upload_pick").value == "quartz.cif"  # the refused file is not kept
    assert tab_labels(at) == ["born_charges (e)", "dielectric (dimensionless)"]


def test_a_crash_in_the_prediction_worker_leaves_the_server_answering(tiny_models, monkeypatch):  # noqa: F811
    from app import worker

    worker.worker().close()  # the next worker starts with the crash hook in its environment
    monkeypatch.setenv(worker.CRASH_HOOK, "1")
    at = new_app(tiny_models)
    upload(at, "quartz.xyz", rattled_quartz())  # not the demo quartz, whose prediction the session has
    (msg,) = errors(at)
    assert "the prediction process crashed (SIGSEGV)" in msg and "the app is fine" in msg
    assert at.selectbox(key="structure_upload_pick").value == "quartz.xyz"

    monkeypatch.delenv(worker.CRASH_HOOK)  # the next worker is healthy: the same upload now predicts
    worker.worker().close()  # (a worker warmed up while the hook was set would still crash)
    at.radio(key="structure_source").set_value("Demo structures").run()
    ok(at)  # in-process demo predictions were never affected
    at.radio(key="structure_source").set_value("Upload a file").run()
    at.selectbox(key="structure_upload_pick").set_value("quartz.xyz").run()
    ok(at)
    assert tab_labels(at) == ["born_charges (e)", "dielectric (dimensionless)"]


# ------------------------------------------------------------------------------------ 3. trainings
def test_training_uploads_have_an_atom_limit(env, monkeypatch):  # noqa: F811
    import app.settings

    monkeypatch.setattr(app.settings, "APP_MAX_ATOMS", 1)
    at = part2.app("train.py")
    part2.upload(at, ("mgo.xyz", part2.labelled_xyz(), "text/plain"))
    (msg,) = part2.errors(at)
    assert "mgo.xyz, structure 0 (id 0): 2 atoms, more than the limit of 1 atoms per structure" in msg
    assert not at.session_state["etgnn_train_uploads"]


def test_trainings_get_their_own_folders_and_a_server_wide_limit(env, monkeypatch):  # noqa: F811
    import app.settings

    monkeypatch.setattr(app.settings, "APP_MAX_TRAININGS", 1)
    first, second = part2.app("train.py"), part2.app("train.py")  # two sessions of one server
    for at in (first, second):
        part2.upload(at, ("mgo.xyz", part2.labelled_xyz(), "text/plain"))
    job = part2._start(first, epochs=5000, minutes=10)
    for w, v in (("train_epochs", 5000), ("train_minutes", 10.0), ("train_batch", 2)):
        part2.by_key(second.number_input, w).set_value(v)
    second.run()
    part2.by_key(second.button, "train_start").click().run()
    (msg,) = part2.errors(second)
    assert "this server already runs 1 training(s), its limit" in msg
    job.cancel()
    assert job.wait(part2.TIMEOUT), job.message
    other = part2._start(second, epochs=5000, minutes=10)  # admitted once the first one ended
    other.cancel()
    assert other.wait(part2.TIMEOUT), other.message
    assert job.config.output != other.config.output  # same name, same second or not: two folders
    assert Path(job.config.output).parent == Path(other.config.output).parent == env / "runs"

"""TrainingJob: a tiny model trained in a background thread finishes, can be cancelled, and refuses bad labels."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from ase.build import bulk
from conftest import TINY as SIZES

from etgnn_core.api import load_model
from etgnn_core.data import DataError, Sample
from etgnn_core.train import TrainConfig
from etgnn_core.train.background import CANCELLED, FAILED, FINISHED, TrainingJob

TINY = {**SIZES, "max_neighbors": 8}


def samples(n=8, seed=0):
    """Rattled rock-salt MgO cells with random Born charges (ASR) and dielectric tensors."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = bulk("MgO", "rocksalt", a=4.2)
        a.rattle(0.05, seed=seed * 100 + i)
        z = rng.normal(size=(len(a), 3, 3))
        z -= z.mean(0)
        eps = 3 * np.eye(3) + 0.1 * rng.normal(size=(3, 3))
        out.append(Sample(atoms=a, targets={"born_charges": z, "dielectric": eps}, id=str(i)))
    return out


def config(tmp_path, epochs=2, **optim):
    return TrainConfig.from_dict({
        "name": "bg", "targets": ["born_charges"], "data": {"dataset": "unused"}, "model": dict(TINY),
        "optim": {"max_epochs": epochs, "batch_size": 2, "patience": 0, **optim},
        "split": {"seed": 0, "train": 0.75, "val": 0.25, "test": 0.0}, "output": str(tmp_path / "run"),
    })


def test_job_finishes_with_history_and_a_loadable_model(tmp_path):
    job = TrainingJob(config(tmp_path), samples()).start()
    assert job.status in ("running", "finished")
    assert job.wait(120), "the tiny run did not finish in 120 s"
    snap = job.snapshot()
    assert snap.status == FINISHED, snap.message
    assert snap.progress == 1.0
    assert [r["epoch"] for r in snap.history] == [1, 2]
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"]) for r in snap.history)
    assert snap.model_dir is not None and (snap.model_dir / "weights.pt").exists()
    assert load_model(str(snap.model_dir), device="cpu").units == {"born_charges": "e"}
    assert "finished" in snap.message
    with pytest.raises(RuntimeError):
        job.start()


def test_job_cancel_stops_early_and_keeps_a_model(tmp_path):
    job = TrainingJob(config(tmp_path, epochs=500), samples()).start()
    deadline = time.monotonic() + 60
    while not job.history and time.monotonic() < deadline:  # at least one epoch, so a checkpoint exists
        time.sleep(0.05)
    job.cancel()
    assert job.wait(60), "cancel did not stop the run"
    snap = job.snapshot()
    assert snap.status == CANCELLED, snap.message
    assert 1 <= snap.epoch < 500
    assert "cancelled" in snap.message and "checkpoint" in snap.message
    assert (snap.model_dir / "weights.pt").exists()
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_bad_labels_are_refused_before_any_thread_starts(tmp_path):
    bad = samples(4)
    bad[2].targets["born_charges"][1, 0, 0] = np.nan
    before = threading.active_count()
    with pytest.raises(DataError, match=r"sample id '2'.*born_charges.*non-finite"):
        TrainingJob(config(tmp_path), bad)
    del bad[1].targets["born_charges"]
    with pytest.raises(DataError, match=r"sample id '1', key 'born_charges': missing"):
        TrainingJob(config(tmp_path), bad)
    assert threading.active_count() == before


def test_failure_in_the_thread_is_reported_not_raised(tmp_path):
    cfg = config(tmp_path)
    cfg.finetune_from = str(tmp_path / "no_such_model")
    job = TrainingJob(cfg, samples()).start()
    assert job.wait(60)
    assert job.status == FAILED
    assert job.error.startswith("ModelLoadError") and "\n" not in job.error


def test_cancel_before_start(tmp_path):
    job = TrainingJob(config(tmp_path), samples())
    job.cancel()
    assert job.done and job.status == CANCELLED

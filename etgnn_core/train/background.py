"""Training in a background thread with a live loss history, progress, and cancellation.

>>> job = TrainingJob(config, samples).start()      # doctest: +SKIP
>>> job.status, job.progress, job.history[-1]      # doctest: +SKIP
('running', 0.35, {'epoch': 3, 'train_loss': 0.41, 'val_loss': 0.44})
>>> job.cancel(); job.wait()                        # doctest: +SKIP
>>> job.model_dir                                   # doctest: +SKIP
PosixPath('runs/app/my_model/model')

Labels are checked (:func:`etgnn_core.data.validate_samples`) in the constructor, in the caller's
thread: a :class:`~etgnn_core.data.DataError` naming the frame/id and key is raised before any
thread starts.  Everything else that goes wrong in the thread ends the job with status
``"failed"`` and a one-line ``error``.  A cancelled job stops at the next training step; ``train``
then writes the model folder from the best checkpoint saved so far (or from the weights at the
moment of cancellation when no checkpoint exists yet) and ``message`` says which.

No Streamlit here; the app polls :attr:`TrainingJob.snapshot` from an ``st.fragment``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import lightning as L

from etgnn_core.train.config import TrainConfig
from etgnn_core.train.trainer import TrainResult, train

log = logging.getLogger(__name__)

PENDING, RUNNING, FINISHED, CANCELLED, FAILED = "pending", "running", "finished", "cancelled", "failed"
DONE = (FINISHED, CANCELLED, FAILED)


class JobCancelled(Exception):
    """Raised inside the worker when a job is cancelled before training started."""


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's state (what a page draws)."""

    status: str
    progress: float  # 0..1
    history: list[dict]  # [{"epoch", "train_loss", "val_loss"}], one per finished epoch
    epoch: int  # epochs finished
    message: str
    error: str | None
    model_dir: Path | None
    elapsed_s: float
    stage: str  # "preparing" | "training" | "saving" | "" once done


class _LiveCallback(L.Callback):
    """Feeds the job's history and progress; stops the trainer when the job is cancelled."""

    def __init__(self, job: TrainingJob):
        self.job = job

    def _check_cancel(self, trainer):
        if self.job._cancel.is_set():
            trainer.should_stop = True

    def on_train_start(self, trainer, pl_module):
        self.job._set(stage="training")
        self._check_cancel(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.job._set(progress=_progress(pl_module))
        self._check_cancel(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._check_cancel(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        m = trainer.callback_metrics
        row = {
            "epoch": int(trainer.current_epoch) + 1,
            "train_loss": _float(m.get("train_loss")),
            "val_loss": _float(m.get("val_loss")),
        }
        # validation (when run) finishes before on_train_epoch_end in Lightning 2, so val_loss is this epoch's
        self.job._add_epoch(row, _progress(pl_module))
        self._check_cancel(trainer)


def _progress(pl_module) -> float:
    try:
        return float(pl_module.progress())
    except Exception:  # noqa: BLE001 - a progress estimate must never break training
        return 0.0


def _float(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


class TrainingJob:
    """One call of :func:`etgnn_core.train.train` in a daemon thread.

    ``config``: a :class:`TrainConfig` (its ``output`` folder gets ``model/``, ``checkpoints/`` and
    ``logs/``); ``samples``: labelled samples (validated here, before the thread starts).
    Thread-safe read-only properties: ``status``, ``progress``, ``history``, ``message``,
    ``error``, ``model_dir``, ``result``; :meth:`snapshot` returns all of them at once.
    """

    def __init__(self, config: TrainConfig, samples: list, data_description: str | None = None,
                 callbacks: list | None = None):
        from etgnn_core.data import validate_samples

        validate_samples(samples, config.targets)  # DataError (frame/id + key) in the caller's thread
        self.config = config
        self.samples = samples
        self.data_description = data_description
        self.extra_callbacks = list(callbacks or [])
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = PENDING
        self._stage = ""
        self._progress = 0.0
        self._history: list[dict] = []
        self._message = "not started"
        self._error: str | None = None
        self._result: TrainResult | None = None
        self._model_dir: Path | None = None
        self._t0: float | None = None
        self._t1: float | None = None

    # ------------------------------------------------------------------ control
    def start(self) -> TrainingJob:
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("this job was already started")
            self._status, self._stage, self._message = RUNNING, "preparing", "building the model and the graphs"
            self._t0 = time.monotonic()
            self._thread = threading.Thread(target=self._run, name=f"etgnn-train-{self.config.name}", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the run to stop at the next training step (returns at once; see :meth:`wait`)."""
        self._cancel.set()
        with self._lock:
            if self._status == PENDING:
                self._status, self._message = CANCELLED, "cancelled before it started"
                self._done.set()
            elif self._status == RUNNING:
                self._message = "cancelling: stopping after the current step"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is done (True) or ``timeout`` seconds passed (False)."""
        return self._done.wait(timeout)

    # ------------------------------------------------------------------ state
    def _set(self, **kw) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, f"_{k}", v)

    def _add_epoch(self, row: dict, progress: float) -> None:
        with self._lock:
            self._history.append(row)
            self._progress = progress
            if self._status == RUNNING and not self._cancel.is_set():
                self._message = f"epoch {row['epoch']} of at most {self.config.optim.max_epochs}"

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    @property
    def progress(self) -> float:
        with self._lock:
            return self._progress

    @property
    def history(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._history]

    @property
    def message(self) -> str:
        with self._lock:
            return self._message

    @property
    def error(self) -> str | None:
        with self._lock:
            return self._error

    @property
    def model_dir(self) -> Path | None:
        with self._lock:
            return self._model_dir

    @property
    def result(self) -> TrainResult | None:
        with self._lock:
            return self._result

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            end = self._t1 if self._t1 is not None else time.monotonic()
            return JobSnapshot(
                status=self._status,
                progress=self._progress,
                history=[dict(r) for r in self._history],
                epoch=len(self._history),
                message=self._message,
                error=self._error,
                model_dir=self._model_dir,
                elapsed_s=(end - self._t0) if self._t0 is not None else 0.0,
                stage=self._stage,
            )

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        try:
            if self._cancel.is_set():
                raise JobCancelled
            callbacks = [_LiveCallback(self), *self.extra_callbacks]
            result = train(self.config, samples=self.samples, callbacks=callbacks, progress_bar=False,
                           resume=False, data_description=self.data_description)
            ckpt = Path(self.config.output) / "checkpoints"
            with self._lock:
                self._result, self._model_dir = result, Path(result.model_dir)
                self._stage = ""
                if self._cancel.is_set():
                    self._status = CANCELLED
                    kept = "best" if (ckpt / "best.ckpt").exists() else ("last" if (ckpt / "last.ckpt").exists()
                                                                            else None)
                    n = len(self._history)
                    self._message = (f"cancelled after {n} epoch{'s' if n != 1 else ''}; the model folder holds "
                                     + (f"the {kept} checkpoint ({ckpt / (kept + '.ckpt')})" if kept else
                                        "the weights at cancellation (no checkpoint had been saved yet)"))
                else:
                    self._status, self._progress = FINISHED, 1.0
                    self._message = f"finished after {result.epochs} epochs in {result.minutes:.2f} min"
        except JobCancelled:
            with self._lock:
                self._status, self._stage, self._message = CANCELLED, "", "cancelled before training started"
        except Exception as exc:  # noqa: BLE001 - reported as the job's error, never raised in the page
            log.debug("training job failed:\n%s", traceback.format_exc())
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            with self._lock:
                self._status, self._stage = FAILED, ""
                self._error = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
                self._message = "failed: " + self._error
        finally:
            with self._lock:
                self._t1 = time.monotonic()
            self._done.set()


__all__ = ["CANCELLED", "DONE", "FAILED", "FINISHED", "PENDING", "RUNNING", "JobSnapshot", "TrainingJob"]

"""Predictions of uploaded structures in a separate, persistent process, so a native crash cannot kill the app.

An uploaded file is untrusted input: a structure that trips a bug in a compiled library (a SIGFPE
or SIGSEGV in a neighbour search, an out-of-memory kill) would end the Streamlit server, with every
session and every running training in it.  :func:`predict_contained` sends the structure to one
worker subprocess per server (``python -m app.worker``) that keeps the models it has loaded; if the
worker dies, the caller gets a :class:`WorkerCrashed` (a ValueError, shown as one line) and the
next call starts a fresh worker.  Validation (:func:`etgnn_core.structure.validate_atoms`) still
runs first; this is the second line of defence.

Cost: one spawn (imports torch and loads the model, a few seconds) on the first upload, then
pickling the structure and the prediction both ways (a few ms for the app's 1000-atom limit).
Calls are serialised by a lock (one worker); a call that takes longer than
``$ETGNN_WORKER_TIMEOUT`` seconds (default 300) kills the worker and fails with one line.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from multiprocessing.connection import Connection
from pathlib import Path

log = logging.getLogger("etgnn_studio")
ROOT = Path(__file__).resolve().parents[1]

#: Test hook: when this variable is set in the worker's environment, the worker kills itself with
#: SIGSEGV on every prediction (the tests prove that the server survives).  Never set in production.
CRASH_HOOK = "ETGNN_TEST_WORKER_CRASH"
_MODELS_KEPT = 4


class WorkerCrashed(ValueError):
    """The prediction process died (native crash, killed, out of memory) or took too long."""


def _serve(conn) -> None:  # runs in the worker process
    from collections import OrderedDict

    from etgnn_core.api import load_model

    models: OrderedDict = OrderedDict()
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        path, stamp, atoms, kwargs = request
        try:
            if os.environ.get(CRASH_HOOK):
                os.kill(os.getpid(), signal.SIGSEGV)
            key = (path, stamp)
            if key not in models:
                models[key] = load_model(path)
                while len(models) > _MODELS_KEPT:
                    models.popitem(last=False)
            models.move_to_end(key)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                pred = models[key].predict(atoms, **kwargs)
            notes = [" ".join(str(w.message).split()) for w in caught
                     if w.category.__name__ == "StructureWarning"]
            reply = ("ok", pred, notes)
        except Exception as exc:  # noqa: BLE001 - sent back as the caller's exception
            reply = ("error", _portable(exc), [])
        conn.send(reply)


def _portable(exc: Exception) -> Exception:
    """The exception itself when it survives pickling, else a ValueError with its one-line message."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return ValueError(" ".join(str(exc).split()) or type(exc).__name__)


class PredictionWorker:
    """One persistent worker process; thread-safe :meth:`predict` (calls are serialised)."""

    def __init__(self, timeout: float | None = None):
        self.timeout = timeout if timeout is not None else float(os.environ.get("ETGNN_WORKER_TIMEOUT", "300"))
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._sock: socket.socket | None = None

    def _start(self) -> None:
        # A plain subprocess, not multiprocessing's spawn: spawn re-imports the parent's __main__ (the
        # streamlit or pytest entry script), and fork would copy a threaded server.
        parent, child = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen([sys.executable, "-m", "app.worker", str(child.fileno())], cwd=str(ROOT), env=env,
                                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL)
        child.close()
        self._sock = parent
        self._proc, self._conn = proc, Connection(os.dup(parent.fileno()))

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _stop(self) -> None:
        if self._alive():
            self._proc.kill()
        if self._proc is not None:
            self._proc.wait(5)
        for handle in (self._conn, self._sock):
            if handle is not None:
                handle.close()
        self._proc = self._conn = self._sock = None

    def predict(self, model_path: str, stamp: float, atoms, label: str = "structure", **kwargs):
        """``Model.predict(atoms, **kwargs)`` in the worker: (Prediction, [warning lines])."""
        with self._lock:
            if not self._alive():
                self._stop()
                self._start()
            try:
                self._conn.send((model_path, stamp, atoms, kwargs))
                if not self._conn.poll(self.timeout):
                    self._stop()
                    raise WorkerCrashed(f"{label}: the prediction took longer than {self.timeout:g} s and was "
                                        "stopped; the app is fine")
                status, value, notes = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                code = None
                if self._proc is not None:
                    try:
                        code = self._proc.wait(5)
                    except subprocess.TimeoutExpired:
                        pass
                self._stop()
                raise WorkerCrashed(f"{label}: the prediction process crashed ({_describe(code)}) on this "
                                    "structure; the app is fine, but this structure cannot be predicted") from exc
        if status == "error":
            raise value
        return value, notes

    def warm(self) -> None:
        """Start the worker now (it imports torch for a few seconds), without waiting for it."""
        if self._lock.acquire(blocking=False):
            try:
                if not self._alive():
                    self._stop()
                    self._start()
            finally:
                self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._stop()


def _describe(code) -> str:
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


_WORKER: PredictionWorker | None = None
_WORKER_LOCK = threading.Lock()


def worker() -> PredictionWorker:
    """The server's prediction worker (created on first use)."""
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            _WORKER = PredictionWorker()
        return _WORKER


def predict_contained(model_path: str, atoms, label: str = "structure", **kwargs):
    """(Prediction, warning lines) of ``atoms`` by the model folder ``model_path``, computed in the worker."""
    weights = Path(model_path) / "weights.pt"
    stamp = weights.stat().st_mtime if weights.exists() else 0.0
    t0 = time.perf_counter()
    pred, notes = worker().predict(str(model_path), stamp, atoms, label=label, **kwargs)
    log.debug("contained prediction of %s in %.3f s", label, time.perf_counter() - t0)
    return pred, notes


if __name__ == "__main__":  # the worker: python -m app.worker FD
    os.dup2(2, 1)  # stray prints of libraries go to stderr; the protocol has its own socket
    _serve(Connection(int(sys.argv[1])))

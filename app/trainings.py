"""Trainings running on this server, all sessions together, and their limit ($ETGNN_APP_MAX_TRAININGS)."""

from __future__ import annotations

import threading

from app import settings

_TRAININGS: list = []  # TrainingJobs admitted on this server (all sessions); finished ones are dropped
_TRAININGS_LOCK = threading.Lock()


def admit_training(job, limit: int | None = None) -> None:
    """Count ``job`` among the server's running trainings, or raise ValueError when the limit is reached."""
    limit = settings.APP_MAX_TRAININGS if limit is None else limit
    with _TRAININGS_LOCK:
        _TRAININGS[:] = [j for j in _TRAININGS if not j.done]
        if len(_TRAININGS) >= limit:
            raise ValueError(f"this server already runs {len(_TRAININGS)} training(s), its limit "
                             f"($ETGNN_APP_MAX_TRAININGS = {limit}): start yours when one has finished")
        _TRAININGS.append(job)


def running_trainings() -> int:
    with _TRAININGS_LOCK:
        return sum(1 for j in _TRAININGS if not j.done)

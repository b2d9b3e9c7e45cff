"""Paths and limits of the ETGNN Studio app.

The limits are read from the environment when the server starts.  Library code reads them as
``settings.APP_MAX_ATOMS`` when it runs (not ``from app.settings import ...`` at import), so a test
can lower one with ``monkeypatch.setattr(app.settings, "APP_MAX_ATOMS", 1)``; page scripts may
import the names, as they are executed again on every run.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
DEMO_DIR = ASSETS / "demo"

#: Largest structure the app predicts and draws (an upload above it gets a message saying so).
APP_MAX_ATOMS = int(os.environ.get("ETGNN_APP_MAX_ATOMS", "1000"))
#: Atoms in all of a labelled upload on the Train page ($ETGNN_APP_MAX_TRAIN_ATOMS).
APP_MAX_TRAIN_ATOMS = int(os.environ.get("ETGNN_APP_MAX_TRAIN_ATOMS", "200000"))
#: Trainings this server runs at once, all sessions together ($ETGNN_APP_MAX_TRAININGS).
APP_MAX_TRAININGS = int(os.environ.get("ETGNN_APP_MAX_TRAININGS", "2"))

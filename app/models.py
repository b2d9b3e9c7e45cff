"""Models of the app: the shipped ones (:func:`etgnn_core.registry.list_models`) plus models trained in
this session, all addressed by their folder path.

``add_user_model(name, path)``, ``user_models() -> {name: path}``, ``model_choices() -> [ModelChoice]``,
``get_model(path) -> etgnn_core.api.Model`` (loaded once per process with ``st.cache_resource``, keyed
by folder path and weights mtime), ``select_model(container=st.sidebar, key="model") -> Model | None``:
the model picker (shared choice across pages; says how to get a model when there is none).
Committees (several members, ``etgnn_core.committee.Committee``) are listed like models;
``committee_note(model)`` is the sentence a page shows for one ("" for a single model).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from ase.data import chemical_symbols

from app.errors import show_error
from app.widgets import keep_widget
from etgnn_core.registry import CONFIG_FILE, WEIGHTS_FILE, ModelInfo, list_models, pretrained_dirs
from etgnn_core.registry import read_info as _read_info

log = logging.getLogger("etgnn_studio")

#: The model picked on first open: $ETGNN_DEFAULT_MODEL, else the first of these that is installed
#: (a general BEC + dielectric model rather than, say, an ablation model), else the first listed.
PREFERRED_MODELS = ("perturbed_sio2", "multi_element_bec", "piezo_aln", "water_dipole_polarizability")

HOW_TO_GET_A_MODEL = (
    "No model found. Train the shipped models with "
    "`.venv/bin/python benchmarks/train_pretrained.py configs/perturbed_sio2.yaml` (they are installed "
    "into `pretrained/`), put a model folder (config.json + weights.pt) into `pretrained/` or into the "
    "folder named by `$ETGNN_PRETRAINED`, or train one on the Train page."
)


@dataclass(frozen=True)
class ModelChoice:
    path: str  # resolved model folder: the key of a model everywhere in the app
    name: str
    targets: dict  # tensor name -> unit
    elements: tuple  # atomic numbers ([] = any)
    user: bool = False  # trained in this session

    @property
    def label(self) -> str:
        who = " (yours)" if self.user else ""
        return f"{self.name}{who} — {', '.join(self.targets)}"


def add_user_model(name: str, path) -> None:
    """Register a model folder trained in this session; it is listed with the shipped models."""
    st.session_state.setdefault("etgnn_user_models", {})[str(name)] = str(Path(path).resolve())


def user_models() -> dict[str, str]:
    """Models trained in this session: name -> model folder path."""
    return dict(st.session_state.get("etgnn_user_models", {}))


def _shipped_infos() -> tuple[list[ModelInfo], list[str]]:
    """list_models(), tolerant of a half-written folder (a model being installed right now)."""
    try:
        return list_models(), []
    except Exception:
        infos, problems = [], []
        for d in pretrained_dirs():
            for sub in sorted(d.iterdir()):
                if (sub / CONFIG_FILE).exists() and (sub / WEIGHTS_FILE).exists():
                    try:
                        infos.append(_read_info(sub))
                    except Exception as exc:
                        problems.append(f"{sub.name}: {exc}")
        return infos, problems


def model_choices() -> list[ModelChoice]:
    """Shipped models (sorted by name), then this session's models."""
    infos, problems = _shipped_infos()
    for p in problems:
        log.warning("skipping model folder %s", p)
    out = [ModelChoice(str(Path(i.path).resolve()), i.name, dict(i.targets), tuple(i.elements)) for i in infos]
    for name, path in user_models().items():
        try:
            i = _read_info(Path(path))
        except Exception as exc:
            log.warning("user model %s at %s is unreadable: %s", name, path, exc)
            continue
        out.append(ModelChoice(str(Path(path).resolve()), name, dict(i.targets), tuple(i.elements), user=True))
    return out


@st.cache_resource(max_entries=6, show_spinner="Loading the model…")
def _load_model(path: str, stamp: float):
    from etgnn_core.api import load_model

    return load_model(path)


def get_model(path):
    """The loaded :class:`etgnn_core.api.Model` of a model folder (cached; reloaded when its weights change)."""
    from etgnn_core.registry import COMMITTEE_FILE

    p = Path(path).resolve()
    weights = p / WEIGHTS_FILE
    if not weights.exists() and (p / COMMITTEE_FILE).exists():  # a committee: reloaded when it is re-assembled
        weights = p / COMMITTEE_FILE
    stamp = weights.stat().st_mtime if weights.exists() else 0.0
    return _load_model(str(p), stamp)


def select_model(container=None, key: str = "model"):
    """Model picker (a selectbox); returns the loaded Model, or None (with a message) when none can be used."""
    box = container if container is not None else st.sidebar
    choices = model_choices()
    if not choices:
        box.info(HOW_TO_GET_A_MODEL, icon=":material/info:")
        return None
    by_path = {c.path: c for c in choices}
    options = list(by_path)
    preferred = [os.environ.get("ETGNN_DEFAULT_MODEL", ""), *PREFERRED_MODELS]
    default = next((c.path for name in preferred for c in choices if name and c.name == name), options[0])
    path = box.selectbox("Model", options, format_func=lambda p: by_path[p].label,
                         help="Shipped models from pretrained/ (and $ETGNN_PRETRAINED), then models you trained.",
                         **keep_widget(f"{key}_select", "etgnn_model", options, default=default))
    choice = by_path[path]
    try:
        model = get_model(path)
    except Exception as exc:
        with box:
            show_error(exc, f"model {choice.name}")
        return None
    elems = ", ".join(chemical_symbols[z] for z in model.elements) or "any"
    box.caption(f"Predicts {', '.join(f'{k} ({u})' for k, u in model.units.items())}; "
                f"elements: {elems}; device: **{model.device_description}**")
    return model


def committee_note(model, atoms=None) -> str:
    """One sentence for pages showing a committee's prediction ("" for a single model); ``atoms``: the
    structure shown, so that a known part that depends on it (a multiple per point group) says its value."""
    n = len(getattr(model, "nets", []))
    parts = getattr(model, "known_parts", {})
    known = "; ".join(f"{name} = network + {part.describe(atoms)} (per-edge contributions show the network's part)"
                      for name, part in parts.items() if hasattr(part, "describe"))
    if n < 2:
        return known
    return (f"a committee of {n} models: tensors and per-edge contributions are the mean of the members' "
            "(they share one graph); embeddings are member 0's" + (f"; {known}" if known else ""))


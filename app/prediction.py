"""Predictions of the app, memoised per session, and a memo for expensive drawings.

``predict(model, entry) -> Prediction`` with per-edge contributions and embeddings, memoised per
session (a widget change never predicts again); ``selected_prediction()`` for the sidebar's model and
structure; ``memo(name, key, make)`` for a drawing keyed by ``prediction_key(model, entry)``.
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict

import streamlit as st

from app import settings
from app.errors import show_error
from app.models import committee_note, select_model
from app.structures import Entry, explain_no_structure, select_structure
from etgnn_core.structure import StructureWarning

_PREDICTION_CACHE = 8


def prediction_key(model, entry: Entry) -> tuple:
    return (str(model.info.path), id(model.net), entry.fingerprint)


def predict(model, entry: Entry):
    """Prediction of every tensor of ``model`` for ``entry`` (contributions and embeddings included).

    Memoised per session (the last few); raises StructureError with a one-line message when the
    model cannot handle the structure (element outside its training set, too many atoms,
    overlapping atoms).
    """
    cache: OrderedDict = st.session_state.setdefault("etgnn_predictions", OrderedDict())
    k = prediction_key(model, entry)
    if k in cache:
        cache.move_to_end(k)
        return cache[k]
    t0 = time.perf_counter()
    kwargs = dict(contributions=True, embeddings=True, max_atoms=settings.APP_MAX_ATOMS)
    if entry.kind == "upload":  # untrusted: in the worker process, where a native crash cannot end the server
        from app.worker import predict_contained

        pred, notes = predict_contained(str(model.info.path), entry.atoms, label=entry.label, **kwargs)
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StructureWarning)
            pred = model.predict(entry.atoms, **kwargs)
        notes = [" ".join(str(w.message).split()) for w in caught if issubclass(w.category, StructureWarning)]
    pred.atoms.info["etgnn_predict_seconds"] = time.perf_counter() - t0
    pred.atoms.info["etgnn_warnings"] = notes  # one line each, shown above the tensors
    cache[k] = pred
    while len(cache) > _PREDICTION_CACHE:
        cache.popitem(last=False)
    return pred


def selected_prediction(committee_detail: str = ""):
    """(model, entry, prediction) for the sidebar's model and structure, or None after telling the user why.

    Shared by the pages that need a prediction before they can show anything.  For a committee the
    page says so first (``committee_detail`` adds what that means on the page).
    """
    model = select_model()
    entry = select_structure(model=model)
    if entry is None or model is None:
        explain_no_structure("Pick a model and a structure in the sidebar.")
        return None
    try:
        with st.spinner(f"Predicting with {model.name}…"):
            pred = predict(model, entry)
    except Exception as exc:
        show_error(exc, f"{model.name} cannot predict this structure")
        return None
    if note := committee_note(model, entry.atoms):
        st.info(f"{model.name} is {note}{committee_detail}.", icon=":material/groups:")
    return model, entry, pred


def memo(name: str, key: tuple, make):
    """Session-scoped memo of an expensive drawing (e.g. a 3D page) for ``key``; keeps the last 16."""
    cache: OrderedDict = st.session_state.setdefault("etgnn_memo", OrderedDict())
    k = (name, *key)
    if k not in cache:
        cache[k] = make()
        while len(cache) > 16:
            cache.popitem(last=False)
    cache.move_to_end(k)
    return cache[k]

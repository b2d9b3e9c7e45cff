"""Shared state and helpers of the ETGNN Studio app.  Every page imports from here.

Import it as ``from app.state import ...`` (the entry script ``app/streamlit_app.py`` puts the
repository root on ``sys.path``; test pages through the entry script, see
``tests/test_app_predict.py``).  Public API, kept small and stable:

Errors
    ``show_error(exc, context="")``: one ``st.error`` line for StructureError / DataError /
    ModelLoadError / ValueError (their message is already one line); anything else becomes
    "Unexpected error ..." and its traceback goes to the server log, never to the page.
    ``page_guard(context="")``: ``with page_guard("..."):`` wraps a page's work with show_error.

Models (shipped ones from :func:`etgnn_core.registry.list_models` plus models trained in this
session, all addressed by their folder path)
    ``add_user_model(name, path)``, ``user_models() -> {name: path}``,
    ``model_choices() -> [ModelChoice]``, ``get_model(path) -> etgnn_core.api.Model`` (loaded once
    per process with ``st.cache_resource``, keyed by folder path and weights mtime),
    ``select_model(container=st.sidebar, key="model") -> Model | None``: the model picker (shared
    choice across pages; says how to get a model when there is none).  Committees (several
    members, ``etgnn_core.committee.Committee``) are listed like models; ``committee_note(model)``
    is the sentence a page shows for one ("" for a single model).

Structures
    ``Entry``: one structure (ase.Atoms) with a label and, for reference-data picks, its DFT
    labels and units.  ``add_upload(name, frames)``, ``uploads() -> {name: [Atoms]}``,
    ``demo_entries()``, ``load_demo(file)``, ``dataset_samples(name)``,
    ``select_structure(container=st.sidebar, model=None, key="structure") -> Entry | None``: the
    structure picker (upload / demo / reference data; shared choice across pages).

Predictions
    ``predict(model, entry) -> Prediction`` with per-edge contributions and embeddings, memoised
    per session (a widget change never predicts again).  ``APP_MAX_ATOMS``: the app's atom limit
    (``$ETGNN_APP_MAX_ATOMS``, default 1000).

Widgets
    ``st.selectbox(label, options, **keep_widget(widget_key, store_key, options, default))``: the
    choice survives a page switch (stored in ``st.session_state[store_key]``).

Session-state keys owned by this module start with ``etgnn_``; widget keys passed to the pickers
are prefixed by the ``key`` argument.  Widgets keep their value across pages (Streamlit forgets the
state of widgets not drawn on a page; the pickers copy it to ``etgnn_*`` keys).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st
from ase import Atoms
from ase.data import chemical_symbols

from etgnn_core.data import DataError, data_root, list_datasets, load_dataset
from etgnn_core.registry import CONFIG_FILE, WEIGHTS_FILE, ModelInfo, ModelLoadError, list_models, pretrained_dirs
from etgnn_core.registry import read_info as _read_info
from etgnn_core.structure import StructureError, StructureWarning, is_periodic, read_structures, validate_atoms

log = logging.getLogger("etgnn_studio")

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
DEMO_DIR = ASSETS / "demo"

#: Largest structure the app predicts and draws (an upload above it gets a message saying so).
APP_MAX_ATOMS = int(os.environ.get("ETGNN_APP_MAX_ATOMS", "1000"))
#: Atoms in all of a labelled upload on the Train page ($ETGNN_APP_MAX_TRAIN_ATOMS).
APP_MAX_TRAIN_ATOMS = int(os.environ.get("ETGNN_APP_MAX_TRAIN_ATOMS", "200000"))
#: Trainings this server runs at once, all sessions together ($ETGNN_APP_MAX_TRAININGS).
APP_MAX_TRAININGS = int(os.environ.get("ETGNN_APP_MAX_TRAININGS", "2"))
#: Samples of a reference data set offered in the picker (the first ones of the file).
DATASET_LIMIT = 200
_PREDICTION_CACHE = 8

#: The model picked on first open: $ETGNN_DEFAULT_MODEL, else the first of these that is installed
#: (a general BEC + dielectric model rather than, say, an ablation model), else the first listed.
PREFERRED_MODELS = ("perturbed_sio2", "multi_element_bec", "piezo_aln", "water_dipole_polarizability")

HOW_TO_GET_A_MODEL = (
    "No model found. Train the shipped models with "
    "`.venv/bin/python benchmarks/train_pretrained.py configs/perturbed_sio2.yaml` (they are installed "
    "into `pretrained/`), put a model folder (config.json + weights.pt) into `pretrained/` or into the "
    "folder named by `$ETGNN_PRETRAINED`, or train one on the Train page."
)


# ------------------------------------------------------------------------------------------ errors
_EXPECTED = (StructureError, DataError, ModelLoadError, ValueError)  # WorkerCrashed is a ValueError


def show_error(exc: BaseException, context: str = "") -> None:
    """Show ``exc`` as one ``st.error`` line; log the traceback (never shown in the page)."""
    prefix = f"{context}: " if context else ""
    if isinstance(exc, _EXPECTED):
        msg = " ".join(str(exc).split()) or exc.__class__.__name__
        log.info("%s%s", prefix, msg, exc_info=exc)
        st.error(prefix + msg, icon=":material/error:")
    else:
        log.error("%sunexpected %s", prefix, exc.__class__.__name__, exc_info=exc)
        detail = " ".join(str(exc).split())[:300]
        st.error(
            f"{prefix}Unexpected error ({exc.__class__.__name__}: {detail}). The rest of the app keeps "
            "working; the details are in the server log.",
            icon=":material/error:",
        )


@contextlib.contextmanager
def page_guard(context: str = ""):
    """``with page_guard(): ...`` -- any exception in the block becomes a :func:`show_error` line."""
    try:
        yield
    except Exception as exc:  # Streamlit's stop / rerun are BaseExceptions and pass through
        show_error(exc, context)


def keep_widget(widget_key: str, store_key: str, options: list | None = None, default=None) -> dict:
    """Keep a widget's value across pages: ``st.selectbox(..., **keep_widget("k", "etgnn_k", options))``.

    Streamlit forgets a widget's state on a page that does not draw it; the value lives in
    ``st.session_state[store_key]`` instead, is given to the widget before it is drawn (falling back
    to ``default`` or the first option when it is not among ``options``), and is copied back by the
    returned ``on_change`` callback.  Returns the widget's ``key``, ``on_change`` and ``args``.
    """
    value = st.session_state.get(store_key, default)
    if options is not None and value not in options:
        value = default if default in options else (options[0] if options else None)
    st.session_state[store_key] = value
    st.session_state[widget_key] = value
    return {"key": widget_key, "on_change": _copy_state, "args": (widget_key, store_key)}


def kept(key: str, default, options: list | None = None) -> dict:
    """Widget kwargs that keep its value across pages (stored as ``etgnn_<key>``)."""
    return keep_widget(key, f"etgnn_{key}", options, default)



def _copy_state(widget_key: str, store_key: str) -> None:
    st.session_state[store_key] = st.session_state.get(widget_key)


# ------------------------------------------------------------------------------------------ models
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


def committee_note(model) -> str:
    """One sentence for pages showing a committee's prediction ("" for a single model)."""
    n = len(getattr(model, "nets", []))
    if n < 2:
        return ""
    return (f"a committee of {n} models: tensors and per-edge contributions are the mean of the members' "
            "(they share one graph); embeddings are member 0's")


# ------------------------------------------------------------------------------------- trainings
_TRAININGS: list = []  # TrainingJobs admitted on this server (all sessions); finished ones are dropped
_TRAININGS_LOCK = threading.Lock()


def admit_training(job, limit: int | None = None) -> None:
    """Count ``job`` among the server's running trainings, or raise ValueError when the limit is reached."""
    limit = APP_MAX_TRAININGS if limit is None else limit
    with _TRAININGS_LOCK:
        _TRAININGS[:] = [j for j in _TRAININGS if not j.done]
        if len(_TRAININGS) >= limit:
            raise ValueError(f"this server already runs {len(_TRAININGS)} training(s), its limit "
                             f"($ETGNN_APP_MAX_TRAININGS = {limit}): start yours when one has finished")
        _TRAININGS.append(job)


def running_trainings() -> int:
    with _TRAININGS_LOCK:
        return sum(1 for j in _TRAININGS if not j.done)


# -------------------------------------------------------------------------------------- structures
@dataclass
class Entry:
    """One structure picked in the app."""

    key: str  # unique: "demo:<file>", "upload:<name>#<frame>", "data:<set>#<index>"
    label: str
    atoms: Atoms
    kind: str  # "demo" | "upload" | "dataset"
    reference: dict = field(default_factory=dict)  # DFT labels (reference data only): name -> array
    reference_units: dict = field(default_factory=dict)
    masks: dict = field(default_factory=dict)  # per-atom label masks of the reference

    @property
    def fingerprint(self) -> str:
        return structure_fingerprint(self.atoms)


def structure_fingerprint(atoms: Atoms) -> str:
    h = hashlib.sha1()
    for arr in (atoms.numbers.astype(np.int64), np.round(atoms.positions, 8), np.round(np.asarray(atoms.cell), 8),
                np.asarray(atoms.pbc, dtype=bool)):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def add_upload(name: str, frames: list[Atoms]) -> None:
    """Keep uploaded structures (all frames of one file) in this session; re-uploading a name replaces it."""
    ups = st.session_state.setdefault("etgnn_uploads", {})
    ups.pop(name, None)
    ups[name] = frames


def uploads() -> dict[str, list[Atoms]]:
    """Structures uploaded in this session: file name -> frames."""
    return dict(st.session_state.get("etgnn_uploads", {}))


def demo_entries() -> list[dict]:
    """The demo structures shipped in assets/demo (index.json: file, name, description)."""
    try:
        return json.loads((DEMO_DIR / "index.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("no demo index: %s", exc)
        return []


@st.cache_resource(max_entries=32)
def _read_demo(file: str) -> Atoms:
    return read_structures(DEMO_DIR / file, name=file)[0]


def load_demo(file: str) -> Atoms:
    return _read_demo(file).copy()


@st.cache_resource(max_entries=4, show_spinner="Reading the reference data…")
def _dataset(name: str, limit: int):
    return load_dataset(name, limit=limit)


def dataset_samples(name: str, limit: int = DATASET_LIMIT):
    """(samples, DatasetInfo) of the first ``limit`` structures of a reference set (cached; do not mutate)."""
    return _dataset(name, limit)


def has_data() -> bool:
    try:
        return data_root() is not None
    except DataError:
        return False


def _supported(atoms: Atoms, model) -> bool:
    return model is None or not model.elements or set(atoms.numbers.tolist()) <= set(model.elements)


OPENED = "Opened from another page"


def open_entry(entry: Entry, atom: int | None = None) -> None:
    """Make ``entry`` the structure of every page (e.g. before ``st.switch_page("views/inspector.py")``).

    The structure picker then shows an extra source, "Opened from another page", selected;
    ``atom`` preselects that atom in the Atom inspector.
    """
    st.session_state["etgnn_opened_entry"] = entry
    st.session_state["etgnn_source"] = OPENED
    st.session_state["etgnn_entry"] = entry
    if atom is not None:
        st.session_state["etgnn_atom"] = int(atom)


def current_entry() -> Entry | None:
    """The structure last picked on any page (None before the first pick)."""
    return st.session_state.get("etgnn_entry")


def select_structure(container=None, model=None, key: str = "structure") -> Entry | None:
    """Structure picker: demo structures, uploads (any format ASE reads) and reference data sets."""
    box = container if container is not None else st.sidebar
    opened = st.session_state.get("etgnn_opened_entry")
    sources = ["Demo structures", "Upload a file"] + (["Reference data"] if has_data() else [])
    sources += [OPENED] if opened is not None else []
    source = box.radio("Structure", sources, **keep_widget(f"{key}_source", "etgnn_source", sources))
    entry = None
    if source == OPENED:
        entry = opened
        box.caption(f"{opened.label} (opened from the {opened.kind})")
    elif source == "Upload a file":
        entry = _upload_picker(box, model, key)
    elif source == "Demo structures":
        entry = _demo_picker(box, model, key)
    else:
        entry = _dataset_picker(box, model, key)
    st.session_state["etgnn_entry"] = entry
    return entry


def _upload_picker(box, model, key):
    from app.worker import worker

    worker().warm()  # its start-up (torch import) overlaps with choosing a file
    f = box.file_uploader("Structure file (CIF, POSCAR/CONTCAR, extended XYZ, pymatgen JSON, …)",
                          key=f"{key}_upload", help="The format is found from the content; "
                          f"at most {APP_MAX_ATOMS} atoms per structure.")
    if f is not None and st.session_state.get("etgnn_upload_id") != f.file_id:
        st.session_state["etgnn_upload_id"] = f.file_id
        try:
            frames = read_structures(f.getvalue(), name=f.name, max_atoms=APP_MAX_ATOMS)
            for frame in frames:  # cell, coordinates, elements: refused here, before any neighbour search
                validate_atoms(frame, max_atoms=APP_MAX_ATOMS, min_distance=0)
        except Exception as exc:
            st.session_state["etgnn_upload_error"] = exc
        else:
            st.session_state.pop("etgnn_upload_error", None)
            add_upload(f.name, frames)
            st.session_state["etgnn_upload_name"] = f.name
            st.session_state["etgnn_upload_frame"] = 0
    if f is None:
        st.session_state.pop("etgnn_upload_id", None)
        st.session_state.pop("etgnn_upload_error", None)
    if st.session_state.get("etgnn_upload_error") is not None:
        with box:
            show_error(st.session_state["etgnn_upload_error"])
    ups = uploads()
    if not ups:
        box.caption("Upload a file to predict its tensors.")
        return None
    names = list(ups)
    name = box.selectbox("Uploaded in this session", names,
                         **keep_widget(f"{key}_upload_pick", "etgnn_upload_name", names, default=names[-1]))
    frames = ups[name]
    frame = 0
    if len(frames) > 1:
        frame = int(box.number_input(f"Frame (0–{len(frames) - 1})", 0, len(frames) - 1,
                                     **keep_widget(f"{key}_upload_frame", "etgnn_upload_frame",
                                                   list(range(len(frames))), default=0)))
    atoms = frames[frame]
    label = name if len(frames) == 1 else f"{name}, frame {frame}"
    return Entry(f"upload:{name}#{frame}", label, atoms, "upload")


def _demo_picker(box, model, key):
    demos = demo_entries()
    if not demos:
        box.warning("No demo structures found in assets/demo.")
        return None
    files = [d["file"] for d in demos]
    meta = {d["file"]: d for d in demos}
    ok = {f: _supported(load_demo(f), model) for f in files}
    default = next((f for f in files if ok[f]), files[0])
    file = box.selectbox("Demo structure", files,
                         format_func=lambda f: meta[f]["name"] + ("" if ok[f] else " — elements not in this model"),
                         **keep_widget(f"{key}_demo", "etgnn_demo", files, default=default))
    box.caption(meta[file].get("description", ""))
    return Entry(f"demo:{file}", meta[file]["name"], load_demo(file), "demo")


def _dataset_picker(box, model, key):
    infos = list_datasets()
    targets = set(model.units) if model is not None else set()
    names = sorted((i.name for i in infos), key=lambda n: 0 if targets & set(_targets(infos, n)) else 1)
    name = box.selectbox("Reference data set", names,
                         format_func=lambda n: f"{n} ({', '.join(_targets(infos, n))})",
                         **keep_widget(f"{key}_dataset", "etgnn_dataset", names))
    try:
        samples, info = dataset_samples(name)
    except Exception as exc:
        with box:
            show_error(exc, f"data set {name}")
        return None
    if not samples:
        box.warning(f"{name}: no structures")
        return None
    i = int(box.number_input(f"Structure (0–{len(samples) - 1}, the first {len(samples)} of the set)",
                             0, len(samples) - 1,
                             **keep_widget(f"{key}_dataset_index", f"etgnn_dataset_index:{name}",
                                           list(range(len(samples))), default=0)))
    s = samples[i]
    label = f"{name} #{i} ({s.atoms.get_chemical_formula()}, id {s.id})"
    units = {k: v for k, v in info.units.items() if k in s.targets}
    return Entry(f"data:{name}#{i}", label, s.atoms.copy(), "dataset", dict(s.targets), units, dict(s.masks))


def _targets(infos, name):
    return next((tuple(i.targets) for i in infos if i.name == name), ())


# ------------------------------------------------------------------------------------- predictions
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
    kwargs = dict(contributions=True, embeddings=True, max_atoms=APP_MAX_ATOMS)
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


def selected_prediction():
    """(model, entry, prediction) for the sidebar's model and structure, or None after telling the user why.

    Shared by the pages that need a prediction before they can show anything.
    """
    model = select_model()
    entry = select_structure(model=model)
    if entry is None or model is None:
        st.info("Pick a model and a structure in the sidebar.", icon=":material/arrow_back:")
        return None
    try:
        with st.spinner(f"Predicting with {model.name}…"):
            return model, entry, predict(model, entry)
    except Exception as exc:
        show_error(exc, f"{model.name} cannot predict this structure")
        return None


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


# ------------------------------------------------------------------------------ click-to-pick view
_PICK_SCRIPT = """<script>
(function () {
  var v = window.etgnnViewer;
  if (!v) return;
  v.getModel(0).setClickable({}, true, function (atom) {
    try { window.parent.postMessage({etgnnPick: atom.index, etgnnView: %(view)s}, "*"); } catch (err) {}
  });
  v.render();
})();
</script>
"""

_PICKER_JS = """
export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let frame = parentElement.querySelector("iframe");
  if (!frame) {
    frame = document.createElement("iframe");
    frame.setAttribute("title", "3D structure: click an atom to inspect it");
    frame.style.border = "0";
    frame.style.width = "100%";
    parentElement.appendChild(frame);
  }
  frame.style.height = data.height + "px";
  if (frame.dataset.etgnnHash !== data.hash) {  // same page: keep the iframe (and the camera)
    frame.dataset.etgnnHash = data.hash;
    frame.srcdoc = data.html;
  }
  const onMessage = (ev) => {
    if (ev.source !== frame.contentWindow || !ev.data || ev.data.etgnnView !== data.view) return;
    if (Number.isInteger(ev.data.etgnnPick)) setTriggerValue("picked", ev.data.etgnnPick);
  };
  window.addEventListener("message", onMessage);
  return () => window.removeEventListener("message", onMessage);
}
"""

_picker = None


def clickable_viewer(html: str, *, view_id: str, height: int, key: str, on_pick=None):
    """Show a page of :func:`etgnn_core.viz.viewer_html` (built with ``view_id``) in a small custom
    component where clicking an atom reports its index (plotly cannot pick points in 3D).

    ``on_pick(index)`` is called (before the rerun's script) when the user clicks an atom; the return
    value's ``picked`` is that index in the run that follows a click, else None.  The camera is kept
    while ``html`` is unchanged, and restored by the viewer itself when the page changes.
    """
    global _picker
    if _picker is None:
        _picker = st.components.v2.component("etgnn_atom_picker", js=_PICKER_JS)
    page = html.replace("</body>", _PICK_SCRIPT % {"view": json.dumps(view_id)} + "</body>", 1)
    digest = hashlib.sha1(page.encode()).hexdigest()

    def changed():
        value = st.session_state.get(key)
        picked = getattr(value, "picked", None) if value is not None else None
        if picked is None and isinstance(value, dict):
            picked = value.get("picked")
        if picked is not None and on_pick is not None:
            on_pick(int(picked))

    return _picker(key=key, data={"html": page, "hash": digest, "height": height, "view": view_id},
                   height=height, on_picked_change=changed)


# ------------------------------------------------------------------------------- 3Dmol overlays
POSITIVE_COLOR, NEGATIVE_COLOR = "#c0392b", "#2166ac"  # red / blue, as in etgnn_core.viz
CRYSTAL_COLOR, NON_PD_COLOR = "#8e44ad", "#e67e22"

_OVERLAY_SCRIPT = """<script>
(function () {
  var v = window.etgnnViewer;
  if (!v) return;
  var d = %(data)s;
  function pts(flat) {
    var out = [];
    for (var i = 0; i < flat.length; i += 3) out.push({x: flat[i], y: flat[i + 1], z: flat[i + 2]});
    return out;
  }
  function cols(flat) {
    var out = [];
    for (var i = 0; i < flat.length; i += 3) out.push(new $3Dmol.Color(flat[i], flat[i + 1], flat[i + 2]));
    return out;
  }
  function P(a) { return {x: a[0], y: a[1], z: a[2]}; }
  function hover(text, at) {
    return {
      hoverable: true,
      hover_callback: function (s, viewer) {
        if (!s.etgnnLabel) s.etgnnLabel = viewer.addLabel(text, {position: P(at), backgroundColor: "black",
          fontColor: "white", fontSize: 11});
      },
      unhover_callback: function (s, viewer) {
        if (s.etgnnLabel) { viewer.removeLabel(s.etgnnLabel); delete s.etgnnLabel; }
      }
    };
  }
  d.meshes.forEach(function (m) {
    var spec = {vertexArr: pts(m.v), normalArr: pts(m.n), faceArr: m.f, opacity: m.opacity};
    if (m.c) spec.colorArr = cols(m.c); else spec.color = m.color;
    var shape = v.addCustom(spec);
    if (m.c) delete shape.color;  // 3Dmol paints a shape's single colour over its per-vertex colours
  });
  d.arrows.forEach(function (a) {
    v.addArrow(Object.assign({start: P(a.start), end: P(a.end), radius: a.radius, radiusRatio: 2.2, mid: 0.78,
                              color: a.color}, hover(a.label, a.end)));
  });
  d.cylinders.forEach(function (c) {
    v.addCylinder(Object.assign({start: P(c.start), end: P(c.end), radius: c.radius, color: c.color,
                                 fromCap: 1, toCap: 1}, hover(c.label, c.end)));
  });
  d.spheres.forEach(function (s) {
    v.addSphere(Object.assign({center: P(s.center), radius: s.radius, color: s.color, opacity: s.opacity},
                              hover(s.label, s.center)));
  });
  v.render();
})();
</script>
"""


def _flat(a, digits: int = 4) -> list:
    return np.round(np.asarray(a, dtype=float), digits).ravel().tolist()


def with_overlay(html: str, *, meshes=(), arrows=(), cylinders=(), spheres=()) -> str:
    """Add shapes to a page of :func:`etgnn_core.viz.viewer_html` (drawn after its atoms; its camera
    handling is unchanged).  ``meshes``: dicts ``v`` [V, 3], ``n`` [V, 3] normals, ``f`` [F, 3]
    triangles, ``color`` and ``opacity``, optional ``c`` [V, 3] RGB in 0..1 per vertex; ``arrows`` /
    ``cylinders``: ``start``, ``end``, ``radius``, ``color``, ``label`` (shown on hover);
    ``spheres``: ``center``, ``radius``, ``color``, ``opacity``, ``label``.
    """
    data = {
        "meshes": [{"v": _flat(m["v"]), "n": _flat(m["n"], 3), "f": np.asarray(m["f"], dtype=int).ravel().tolist(),
                    "color": m.get("color", "#888888"), "opacity": float(m.get("opacity", 1.0)),
                    **({"c": _flat(m["c"], 3)} if m.get("c") is not None else {})} for m in meshes],
        "arrows": [_shape(a) for a in arrows],
        "cylinders": [_shape(c) for c in cylinders],
        "spheres": [{**s, "center": _flat(s["center"]), "label": str(s.get("label", ""))} for s in spheres],
    }
    script = _OVERLAY_SCRIPT % {"data": json.dumps(data, separators=(",", ":")).replace("</", "<\\/")}
    return html.replace("</body>", script + "</body>", 1)


def _shape(s: dict) -> dict:
    return {**s, "start": _flat(s["start"]), "end": _flat(s["end"]), "radius": float(s["radius"]),
            "label": str(s.get("label", ""))}


def structure_frame(atoms: Atoms) -> tuple[np.ndarray, float]:
    """(centre, size) of a structure: the cell centre and largest extent of atoms + cell for a
    crystal, the centroid and extent of the atoms for a molecule (Angstrom; size >= 1)."""
    pts = np.asarray(atoms.positions, dtype=float)
    cell = np.asarray(atoms.cell[:], dtype=float)
    if is_periodic(atoms):
        corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float) @ cell
        pts = np.concatenate([pts, corners])
        center = 0.5 * cell.sum(axis=0)
    else:
        center = pts.mean(axis=0)
    return center, max(float(np.ptp(pts, axis=0).max()), 1.0)


def mesh_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit vertex normals averaged from the triangles around each vertex (zero-area ones ignored)."""
    v = np.asarray(vertices, dtype=float)
    t = np.asarray(triangles, dtype=int)
    fn = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, t[:, k], fn)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    fallback = v - v.mean(axis=0)
    n = np.where(norm > 1e-12, n / np.maximum(norm, 1e-300), fallback)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def diverging_rgb(values: np.ndarray, vmax: float) -> np.ndarray:
    """RGB in 0..1: blue (negative) - white (zero) - red (positive), |value| / vmax clipped to 1."""
    x = np.clip(np.asarray(values, dtype=float) / max(vmax, 1e-300), -1.0, 1.0)[..., None]
    red, blue, white = np.array([0.753, 0.224, 0.169]), np.array([0.129, 0.4, 0.675]), np.ones(3)
    return np.where(x >= 0, white + x * (red - white), white - x * (blue - white))

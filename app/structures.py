"""Structures of the app: demo structures, uploads and reference data, and the picker shared by the pages.

``Entry``: one structure (ase.Atoms) with a label and, for reference-data picks, its DFT labels and
units.  ``add_upload(name, frames)``, ``uploads() -> {name: [Atoms]}``, ``demo_entries()``,
``load_demo(file)``, ``dataset_samples(name)``, ``select_structure(container=st.sidebar, model=None,
key="structure") -> Entry | None``: the structure picker (upload / demo / reference data; shared
choice across pages).  ``open_entry(entry, atom=None)`` makes a structure the one of every page.

Session-state keys owned here start with ``etgnn_``; widget keys are prefixed by the ``key`` argument.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

import numpy as np
import streamlit as st
from ase import Atoms

from app import settings
from app.errors import show_error
from app.settings import DEMO_DIR
from app.widgets import keep_widget
from etgnn_core.data import DataError, data_root, list_datasets, load_dataset
from etgnn_core.structure import read_structures, validate_atoms

log = logging.getLogger("etgnn_studio")

#: Samples of a reference data set offered in the picker (the first ones of the file).
DATASET_LIMIT = 200


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


def explain_no_structure(hint: str) -> None:
    """Why a page has no structure to show: the upload that failed (its error, in the page too, not only
    in the sidebar), else ``hint`` (where to pick one)."""
    exc = st.session_state.get("etgnn_upload_error")
    if exc is not None and st.session_state.get("etgnn_source") == "Upload a file":
        show_error(exc, "The uploaded file was not loaded")
    else:
        st.info(hint, icon=":material/arrow_back:")


def _upload_picker(box, model, key):
    from app.worker import worker

    worker().warm()  # its start-up (torch import) overlaps with choosing a file
    f = box.file_uploader("Structure file (CIF, POSCAR/CONTCAR, extended XYZ, pymatgen JSON, …)",
                          key=f"{key}_upload", help="The format is found from the content; "
                          f"at most {settings.APP_MAX_ATOMS} atoms per structure.")
    if f is not None and st.session_state.get("etgnn_upload_id") != f.file_id:
        st.session_state["etgnn_upload_id"] = f.file_id
        try:
            frames = read_structures(f.getvalue(), name=f.name, max_atoms=settings.APP_MAX_ATOMS)
            for frame in frames:  # cell, coordinates, elements: refused here, before any neighbour search
                validate_atoms(frame, max_atoms=settings.APP_MAX_ATOMS, min_distance=0)
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

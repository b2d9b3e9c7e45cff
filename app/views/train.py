"""Train page: upload a labelled data set, train (or fine-tune) in the background with a live loss curve,
then use the model on the other pages at once or download its model folder."""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from ase.data import chemical_symbols

from app.errors import page_guard, show_error
from app.models import add_user_model, model_choices, user_models
from app.settings import APP_MAX_ATOMS, APP_MAX_TRAIN_ATOMS, ROOT
from app.structures import dataset_samples, has_data
from app.trainings import admit_training
from app.widgets import kept
from etgnn_core.data import DataError, list_datasets, load_labelled_extxyz, load_poscar_zip, validate_samples
from etgnn_core.structure import StructureError, validate_atoms
from etgnn_core.tensors.specs import DEFAULT_SPECS
from etgnn_core.train import TrainConfig
from etgnn_core.train.background import CANCELLED, DONE, FAILED, FINISHED, TrainingJob
from etgnn_core.train.config import slugify

UPLOADS = "etgnn_train_uploads"  # name -> {"samples", "targets", "kind", "description"}
JOB = "etgnn_train_job"  # the TrainingJob of this session (one at a time)
JOB_META = "etgnn_train_job_meta"  # {"name", "registered", "source"}
SEEN = "etgnn_train_seen"  # file ids already read (an upload is read once)
RUNS = Path(os.environ.get("ETGNN_APP_RUNS") or Path(ROOT) / "runs" / "app")  # a run folder per training
POLL_S = 1.0
SIZES = {  # model presets: CPU-friendly first
    "tiny (hidden 32, 2 blocks; CPU-friendly)": dict(hidden=32, int_emb=16, out_emb=32,
                                                                       triplet_hidden=16, num_blocks=2,
                                                                       max_neighbors=12),
    "small (hidden 64, 3 blocks)": dict(hidden=64, int_emb=32, out_emb=64, triplet_hidden=32, num_blocks=3,
                                        max_neighbors=12),
    "paper (hidden 128, 4 blocks; use a GPU)": dict(hidden=128, num_blocks=4, max_neighbors=16),
}
HELP_FORMATS = """
**Labelled extended XYZ** (one file, any number of frames): per-atom arrays `born_charges` (9 numbers per
atom, row-major, row = field direction), `forces`, `shielding`; per-frame info `dielectric` (9 numbers),
`dipole`, `polarizability`, `piezoelectric` (27 numbers, e[i,j,k] = v[9i+3j+k]), `energy`.

**ETGNN layout**: a zip of `<id>.vasp` POSCAR files **plus** one or more headerless CSV files `id,v1,v2,…` whose
name says the target: `…born…` (9 × atoms numbers), `…dielectric…` (9), `…piezo…` (27).  Upload the zip and the
CSV files together.
"""


# ----------------------------------------------------------------------------------------- uploads
def train_uploads() -> dict:
    """Labelled data uploaded on this page (kept until removed): name -> dict(samples, targets, ...)."""
    return st.session_state.setdefault(UPLOADS, {})


def present_targets(samples) -> list[str]:
    """Targets every sample carries, in the project's order."""
    if not samples:
        return []
    common = set.intersection(*(set(s.targets) for s in samples))
    return [t for t in DEFAULT_SPECS if t in common]


def read_upload(files) -> tuple[str, list, str]:
    """(name, samples, kind) from the uploaded files: one extended XYZ, or one zip plus its CSV files.

    Every label is validated here (DataError naming the file, frame / id and key).
    """
    by_ext: dict[str, list] = {}
    for f in files:
        by_ext.setdefault(Path(f.name).suffix.lower(), []).append(f)
    xyz = by_ext.get(".xyz", []) + by_ext.get(".extxyz", [])
    zips, csvs = by_ext.get(".zip", []), by_ext.get(".csv", [])
    other = [f.name for ext, fs in by_ext.items() if ext not in (".xyz", ".extxyz", ".zip", ".csv") for f in fs]
    if other:
        raise DataError(f"{', '.join(other)}: not a labelled data file (expected .xyz/.extxyz, or .zip + .csv)")
    if xyz and (zips or csvs):
        raise DataError("upload either an extended XYZ file or a zip of POSCARs with CSV labels, not both")
    if len(xyz) > 1 or len(zips) > 1:
        raise DataError("upload one data set at a time (one .xyz file, or one .zip with its .csv files)")
    if xyz:
        f = xyz[0]
        samples, name, kind = load_labelled_extxyz(f.getvalue(), name=f.name), f.name, "extended XYZ"
    elif zips:
        if not csvs:
            raise DataError(f"{zips[0].name}: add the CSV label file(s) (id_prop_born.csv, …) to the same upload")
        f = zips[0]
        samples = load_poscar_zip(f.getvalue(), {c.name: c.getvalue() for c in csvs}, name=f.name)
        name, kind = f.name, f"POSCAR zip + {', '.join(c.name for c in csvs)}"
    else:
        raise DataError(f"{', '.join(c.name for c in csvs)}: CSV labels need the zip of POSCAR files next to them")
    check_upload_size(name, samples)
    targets = present_targets(samples)
    if not targets:
        raise DataError(f"{name}: no target is labelled on every structure")
    validate_samples(samples, targets)  # frame / id and key of the first bad label
    return name, samples, kind


def check_upload_size(name: str, samples) -> None:
    """Atoms per structure (the Predict page's limit) and in all; cells checked before any neighbour search."""
    total = 0
    for i, s in enumerate(samples):
        n = len(s.atoms)
        if n > APP_MAX_ATOMS:
            raise DataError(f"{name}, structure {i} (id {s.id}): {n} atoms, more than the limit of "
                            f"{APP_MAX_ATOMS} atoms per structure")
        total += n
        try:
            validate_atoms(s.atoms, min_distance=0, name=f"{name}, structure {i} (id {s.id})")
        except StructureError as exc:
            raise DataError(str(exc)) from exc
    if total > APP_MAX_TRAIN_ATOMS:
        raise DataError(f"{name}: {total} atoms in all, more than the limit of {APP_MAX_TRAIN_ATOMS} atoms for "
                        "training in the app (train larger sets with `etgnn train`)")


def upload_section() -> None:
    st.subheader("1 · Data")
    with st.expander("Accepted files", expanded=False):
        st.markdown(HELP_FORMATS)
    files = st.file_uploader("Labelled extended XYZ, or a zip of POSCARs + CSV label files",
                             type=["xyz", "extxyz", "zip", "csv"], accept_multiple_files=True, key="train_upload")
    seen = st.session_state.setdefault(SEEN, {})
    ids = tuple(sorted(f.file_id for f in files or []))
    if files and ids not in seen:
        try:
            with st.spinner("Reading and checking the labels…"):
                name, samples, kind = read_upload(files)
        except Exception as exc:  # refused: nothing is kept, the message names frame / id and key
            seen[ids] = {"error": exc}
        else:
            seen[ids] = {"name": name}
            train_uploads()[name] = {"samples": samples, "targets": present_targets(samples), "kind": kind}
            st.session_state["etgnn_train_source"] = f"upload: {name}"
    if files and "error" in seen.get(ids, {}):
        show_error(seen[ids]["error"], "upload refused")
    ups = train_uploads()
    for name, up in list(ups.items()):
        c1, c2 = st.columns([5, 1])
        n_atoms = sum(len(s.atoms) for s in up["samples"])
        elems = sorted({int(z) for s in up["samples"] for z in s.atoms.numbers})
        c1.markdown(f"**{name}** ({up['kind']}): {len(up['samples'])} structures, {n_atoms} atoms, "
                    f"elements {' '.join(chemical_symbols[z] for z in elems)}; labels: {', '.join(up['targets'])}")
        if c2.button("Remove", key=f"train_remove_{name}", icon=":material/delete:"):
            ups.pop(name, None)
            st.rerun()


def choose_source():
    """(display name, samples, description) of the data to train on, or None."""
    ups = train_uploads()
    options = [f"upload: {n}" for n in ups]
    if has_data():
        options += [f"reference: {i.name}" for i in list_datasets()]
    if not options:
        st.info("Upload a labelled data set to train on.", icon=":material/upload_file:")
        return None
    src = st.selectbox("Train on", options, **kept("train_source", options[0], options),
                       help="Your uploads (kept until you remove them), or the first structures of a reference set.")
    if src.startswith("upload: "):
        name = src.removeprefix("upload: ")
        up = ups[name]
        return name, up["samples"], f"upload {name} ({up['kind']})"
    name = src.removeprefix("reference: ")
    limit = int(st.number_input("Structures from the reference set", 10, 5000, step=50,
                                **kept("train_ref_limit", 200)))
    samples, info = dataset_samples(name, limit)
    return name, samples, f"{info.name} (first {len(samples)}): {info.description}"


# ----------------------------------------------------------------------------------------- settings
def slug(text: str) -> str:
    """A plain model name (letters, digits, '_', '-'): TrainConfig refuses anything path-like."""
    return slugify(text)


def settings_section(source):
    name, samples, description = source
    targets_here = present_targets(samples)
    if not targets_here:
        st.warning(f"{name}: no target is labelled on every structure.")
        return None
    default_t = [t for t in targets_here if t in ("born_charges", "piezoelectric")][:1] or targets_here[:1]
    stored = st.session_state.get("etgnn_train_targets")
    if not isinstance(stored, list) or not set(stored) <= set(targets_here):
        st.session_state["etgnn_train_targets"] = default_t
    targets = st.multiselect("Target tensor(s)", targets_here, **kept("train_targets", default_t),
                             format_func=lambda t: f"{t} ({DEFAULT_SPECS[t].unit or 'dimensionless'})")
    if not targets:
        st.info("Choose at least one target.")
        return None
    modes = ["a fresh model", "a pretrained model (fine-tune)"]
    mode = st.radio("Start from", modes, horizontal=True, **kept("train_mode", modes[0], modes))
    finetune = None
    model_kw = {}
    if mode.startswith("a pretrained"):
        fits = [c for c in model_choices() if set(targets) <= set(c.targets)]
        if not fits:
            st.warning(f"No pretrained model predicts {', '.join(targets)}; start from a fresh model.")
            return None
        by_path = {c.path: c for c in fits}
        paths = list(by_path)
        finetune = st.selectbox("Pretrained model", paths, **kept("train_base", paths[0], paths),
                                format_func=lambda p: by_path[p].label)
        st.caption("Fine-tuning keeps the backbone (and the output heads when the targets are the same) and "
                   "continues from its weights; the architecture is the pretrained one.")
    else:
        size = st.selectbox("Model size", list(SIZES), **kept("train_size", next(iter(SIZES)), list(SIZES)))
        model_kw = dict(SIZES[size])
    c1, c2, c3, c4 = st.columns(4)
    epochs = int(c1.number_input("Epochs (at most)", 1, 10_000, **kept("train_epochs", 20)))
    minutes = float(c2.number_input("Minutes (at most)", 0.1, 600.0, step=0.5, **kept("train_minutes", 2.0),
                                    help="Wall-clock budget; the learning rate follows a cosine over it."))
    batch = int(c3.number_input("Batch size", 1, 256, **kept("train_batch", 8)))
    lr = float(c4.number_input("Learning rate", 1e-5, 1e-1, step=1e-4, format="%.0e", **kept("train_lr", 1e-3)))
    c5, c6, c7 = st.columns(3)
    val = float(c5.slider("Validation fraction", 0.05, 0.5, step=0.05, **kept("train_val", 0.1)))
    test = float(c6.slider("Test fraction", 0.0, 0.5, step=0.05, **kept("train_test", 0.1)))
    auto = f"{slug(Path(name).stem)}_{'_'.join(targets)}"
    if st.session_state.get("etgnn_train_name") in (None, "", st.session_state.get("etgnn_train_name_auto")):
        st.session_state["etgnn_train_name"] = auto  # follows the data and targets until the user edits it
    st.session_state["etgnn_train_name_auto"] = auto
    model_name = c7.text_input("Model name", **kept("train_name", auto))
    if val + test >= 0.95:
        st.warning("Leave at least 5% of the structures for training.")
        return None
    if len(samples) < 3:
        st.warning("Need at least 3 labelled structures (training, validation, test).")
        return None
    cfg = TrainConfig.from_dict({
        "name": slug(model_name),
        "targets": list(targets),
        "data": {"dataset": name},  # informative only: samples are passed directly
        "model": model_kw,
        "optim": {"max_epochs": epochs, "max_minutes": minutes, "batch_size": batch, "lr": lr,
                  "patience": max(10, epochs // 5)},
        "split": {"seed": 0, "train": round(1 - val - test, 6), "val": val, "test": test},
        "finetune_from": finetune,
        "output": str(RUNS / slug(model_name)),  # made unique by start_job
        "description": f"trained in ETGNN Studio on {description}",
    })
    return cfg, samples, description


# ------------------------------------------------------------------------------------------- job
def start_job(cfg, samples, description) -> None:
    # a fresh folder per run, created atomically: two sessions starting in the same second never share one
    RUNS.mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}-", dir=RUNS)
    cfg = dataclasses.replace(cfg, output=folder)
    job = TrainingJob(cfg, samples, data_description=description)  # DataError here, before the thread
    admit_training(job)  # ValueError naming the limit when the server runs as many trainings as it may
    job.start()
    st.session_state[JOB] = job
    st.session_state[JOB_META] = {"name": cfg.name, "registered": False}


def loss_figure(history: list[dict]) -> go.Figure:
    ep = [r["epoch"] for r in history]
    fig = go.Figure()
    for key, label, color in (("train_loss", "train", "#1f77b4"), ("val_loss", "validation", "#ff7f0e")):
        y = [r[key] for r in history]
        if any(np.isfinite(v) for v in y):
            fig.add_trace(go.Scatter(x=ep, y=y, mode="lines+markers", name=label, line=dict(color=color)))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="epoch",
                      yaxis_title="loss (L1 / target scale)", yaxis_type="log", uirevision="loss",
                      legend=dict(orientation="h", y=1.1))
    return fig


def zip_folder(folder: Path, top: str) -> bytes:
    """The model folder as a zip whose single top folder ``top`` is what load_model reads."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(Path(folder).iterdir()):
            if p.is_file():
                zf.write(p, f"{top}/{p.name}")
    return buf.getvalue()


def register(job: TrainingJob) -> str | None:
    """Put a finished (or cancelled) job's model into the session's user models once; returns its name."""
    meta = st.session_state.get(JOB_META, {})
    if job.model_dir is None:
        return None
    name = meta.get("model_name")
    if not meta.get("registered"):
        name = meta.get("name", "model")
        taken = set(user_models())
        base, k = name, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        add_user_model(name, job.model_dir)
        meta.update(registered=True, model_name=name)
        st.session_state[JOB_META] = meta
    return name


def result_section(job: TrainingJob) -> None:
    snap = job.snapshot()
    if snap.status not in (FINISHED, CANCELLED) or snap.model_dir is None:
        return
    name = register(job)
    st.success(f"Model **{name}** is ready: choose it in the Model picker of the Predict, Atom inspector, "
               "Embedding map and Learn pages.", icon=":material/check_circle:")
    res = job.result
    if res is not None and res.metrics:
        rows = [{"tensor": t, "MAE": m["mae"], "species-mean baseline MAE": m["baseline_mae"], "unit": m["unit"],
                 "split": m["split"]} for t, m in res.metrics.items()]
        st.dataframe(rows, hide_index=True)
        st.caption("MAE on the held-out split (test, or validation when there is no test split), against the "
                   "prediction of the mean label of each element.")
    st.download_button("Download the model folder (zip)", data=zip_folder(snap.model_dir, name),
                       file_name=f"{name}.zip", mime="application/zip", icon=":material/download:",
                       key="train_download",
                       help="Unzip and load it with etgnn_core.api.load_model('<folder>') or "
                            "`etgnn predict --model <folder>`; config.json, weights.pt, card.md inside.")


def live_body() -> None:
    """Progress, loss curve, status and the cancel button of this session's job."""
    job: TrainingJob | None = st.session_state.get(JOB)
    if job is None:
        return
    snap = job.snapshot()
    st.subheader("3 · Training")
    running = snap.status not in DONE
    label = f"{snap.status}: {snap.message} — {snap.elapsed_s:.0f} s"
    st.progress(min(max(snap.progress, 0.0), 1.0), text=label)
    if running:
        if st.button("Cancel", key="train_cancel", icon=":material/stop_circle:", disabled=job.cancelled):
            job.cancel()
            st.toast("Cancelling after the current step…")
    if snap.history:
        st.plotly_chart(loss_figure(snap.history), key="train_loss_chart", config={"displaylogo": False})
    elif running:
        st.caption("The loss curve appears after the first epoch.")
    if snap.status == FAILED:
        st.error(f"Training failed: {snap.error}", icon=":material/error:")
    elif snap.status == CANCELLED:
        st.warning(snap.message, icon=":material/stop_circle:")
    elif snap.status == FINISHED:
        st.info(snap.message, icon=":material/check:")
    meta = st.session_state.get(JOB_META, {})
    if snap.status in DONE and not meta.get("shown"):
        meta["shown"] = True  # one full rerun: register the model, show the download, re-enable the form
        st.session_state[JOB_META] = meta
        st.rerun(scope="app")


#: polled every second while a run is in progress (the rest of the page is not rerun)
live_section = st.fragment(run_every=POLL_S)(live_body)


def page() -> None:
    st.title("Train")
    st.caption("Train an ETGNN on your labelled structures (or fine-tune a pretrained one) in the background. "
               "The page stays usable while it runs; the model can be used on the other pages as soon as it is done.")
    with page_guard("data"):
        upload_section()
    job: TrainingJob | None = st.session_state.get(JOB)
    busy = job is not None and job.status not in DONE
    st.subheader("2 · Model and budget")
    source = None
    with page_guard("data"):
        source = choose_source()
    prepared = None
    if source is not None:
        with page_guard("settings"):
            prepared = settings_section(source)
    if prepared is not None:
        cfg, samples, description = prepared
        if busy:
            st.caption("A training run is in progress: cancel it or wait for it to end to start another.")
        if st.button("Start training", type="primary", key="train_start", disabled=busy,
                     icon=":material/play_arrow:"):
            try:
                start_job(cfg, samples, description)
            except Exception as exc:  # label problems: refused before any training
                show_error(exc, "training refused")
    job = st.session_state.get(JOB)
    if job is not None and job.status not in DONE:
        live_section()
    elif job is not None:
        live_body()
    if job is not None:
        with page_guard("result"):
            result_section(job)


with page_guard():
    page()

"""Spectra page: Γ phonons (universal potential or phonopy file) + predicted Born charges -> IR spectrum,
ε∞ / ε_ionic / ε0, LO-TO splitting; click a mode to see its displacements and each atom's share."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app.errors import page_guard, show_error
from app.models import select_model
from app.structures import explain_no_structure, select_structure
from app.widgets import keep_widget
from etgnn_core.io import to_json
from etgnn_core.spectra import INTENSITY_UNIT, SpectraConfig, compute_spectrum
from etgnn_core.spectra.phonons import POTENTIALS, PhononConfig
from etgnn_core.spectra.plots import is_silent, mode_arrows, mode_shares_table, spectrum_figure
from etgnn_core.structure import is_periodic
from etgnn_core.viz import tensor_table, viewer_html, with_overlay

VIEW_HEIGHT = 440
PHONOPY_FILE = "phonopy file (upload)"
SOURCES = {"sevenn": "SevenNet 7net-l3i5 (default, closest to DFT)", "sevenn-0": "SevenNet 7net-0 (faster)",
           "chgnet": "CHGNet 0.3.0 (softer phonons)", PHONOPY_FILE: "phonopy file: phonopy_params.yaml (upload)"}
RELAX = {"positions": "relax positions (fixed cell)", "cell": "relax cell and positions", "none": "no relaxation"}
RESULTS = "etgnn_spectra_results"


def options() -> tuple[str, str, float, object]:
    c1, c2, c3 = st.columns([2, 2, 1])
    names = [s for s in SOURCES if s in POTENTIALS or s == PHONOPY_FILE]
    source = c1.selectbox("Phonons from", names, format_func=SOURCES.get,
                          **keep_widget("spectra_source", "etgnn_spectra_source", names))
    relax = c2.selectbox("Before the phonons", list(RELAX), format_func=RELAX.get,
                         disabled=source == PHONOPY_FILE, **keep_widget("spectra_relax", "etgnn_spectra_relax",
                                                                        list(RELAX)))
    fwhm = c3.number_input("FWHM (cm⁻¹)", 0.5, 200.0, step=1.0,
                           **keep_widget("spectra_fwhm", "etgnn_spectra_fwhm", None, default=10.0))
    upload = None
    if source == PHONOPY_FILE:
        upload = st.file_uploader("phonopy_params.yaml (force constants or displacements with forces)",
                                  type=["yaml", "yml"], key="spectra_phonopy")
    return source, relax, float(fwhm), upload


def compute(model, entry, source: str, relax: str, upload):
    bar = st.progress(0.0, text="Starting…")

    def progress(stage, done, total):
        bar.progress(min(done / max(total, 1), 1.0), text=f"{stage}: {done}/{total}")

    if source == PHONOPY_FILE:
        folder = Path(tempfile.mkdtemp(prefix="etgnn_phonopy_"))
        path = folder / "phonopy_params.yaml"
        path.write_bytes(upload.getvalue())
        cfg, atoms, label = PhononConfig(source=str(path)), None, upload.name
    else:
        cfg, atoms, label = PhononConfig(source=source, relax=relax), entry.atoms, entry.label
    res = compute_spectrum(atoms, model, SpectraConfig(cfg), progress=progress, source=label)
    if source == PHONOPY_FILE:
        res.phonons = f"phonopy file {upload.name}"
    bar.empty()
    return res


def pick_mode(res, fwhm: float, key: tuple) -> int | None:
    """The spectrum with clickable sticks, and a selectbox of the optical modes (the same choice)."""
    optical = [int(m) for m in np.nonzero(~res.selection.acoustic)[0]]
    if not optical:
        return None
    state = f"etgnn_spectra_mode:{hash(key)}"
    default = max(optical, key=lambda m: res.ir_intensities[m])
    chosen = st.session_state.get(state, default)
    fig = spectrum_figure(res, fwhm, chosen)
    event = st.plotly_chart(fig, key="spectra_chart", on_select="rerun", selection_mode="points",
                            config={"displaylogo": False, "scrollZoom": True})
    points = list(((getattr(event, "selection", None) or {}).get("points", [])) or [])
    clicked = next((int(np.ravel(p["customdata"])[0]) for p in points if p.get("customdata") is not None), None)
    if clicked is not None and clicked != st.session_state.get(state + ":click"):
        st.session_state[state + ":click"] = clicked
        st.session_state[state] = chosen = clicked
        st.session_state["spectra_mode_pick"] = clicked
    label = lambda m: (f"mode {m}: {abs(res.frequencies_cm1[m]):.1f}{'i' if res.frequencies_cm1[m] < 0 else ''}"  # noqa: E731
                       f" cm⁻¹, I = {res.ir_intensities[m]:.4f} {INTENSITY_UNIT}")
    if st.session_state.get("spectra_mode_pick") not in optical:
        st.session_state["spectra_mode_pick"] = chosen
    m = st.selectbox("Mode (or click a stick in the spectrum)", optical, format_func=label, key="spectra_mode_pick")
    st.session_state[state] = m
    return m


def show_mode(res, m: int) -> None:
    c1, c2 = st.columns([3, 2])
    with c1:
        html = viewer_html(res.atoms, view_id="spectra-mode", height=VIEW_HEIGHT)
        st.iframe(with_overlay(html, arrows=mode_arrows(res, m)), height=VIEW_HEIGHT + 40)
        st.caption("Arrows: displacement pattern e/√M of the mode (largest arrow 1.2 Å); hover an arrow for the "
                   "atom's share of the mode's IR intensity.")
    with c2:
        st.markdown(f"**Mode {m}**: {res.frequencies_cm1[m]:.1f} cm⁻¹, intensity {res.ir_intensities[m]:.4f} "
                    f"{INTENSITY_UNIT}")
        st.dataframe(mode_shares_table(res, m).round(4), hide_index=True)
        if is_silent(res, m):
            st.caption("IR-silent mode (intensity below 0.1 % of the strongest): the atoms' dipole changes "
                       "cancel, so no shares are given.")
        st.caption("Share of atom a = q_a·p / |p|², with q_a = Z*_a e_a/√M_a and p = Σ_a q_a: the shares sum "
                   "to 1; a negative share opposes the mode's dipole. Compare with the atom's Born charge on the "
                   "Predict and Atom inspector pages.")


def show_dielectric(res) -> None:
    cols = st.columns(3)
    for col, (name, T) in zip(cols, (("ε∞ (ETGNN)", res.eps_inf), ("ε_ionic", res.eps_ionic),
                                     ("ε0 = ε∞ + ε_ionic", res.eps_static))):
        with col:
            st.markdown(f"**{name}**")
            st.dataframe(tensor_table(T, "").round(3))
    rows = []
    for d, f in zip(res.lo_directions, res.lo_frequencies_cm1):
        rows.append({"q direction": f"({d[0]:.2f}, {d[1]:.2f}, {d[2]:.2f})",
                     "optical modes, q → 0 (cm⁻¹)": ", ".join(f"{x:.1f}" for x in np.sort(f)[3:])})
    st.markdown("**LO-TO splitting** (phonopy's non-analytical correction; TO at q = 0 exactly: "
                + ", ".join(f"{x:.1f}" for x in res.frequencies_cm1[~res.selection.acoustic]) + " cm⁻¹)")
    st.dataframe(pd.DataFrame(rows), hide_index=True)


def downloads(res, fwhm: float) -> None:
    grid, curve = res.spectrum(fwhm)
    csv = "frequency_cm1,intensity_e2_per_amu\n" + "".join(f"{g:.3f},{c:.6g}\n" for g, c in zip(grid, curve))
    stem = "".join(ch if ch.isalnum() else "_" for ch in res.formula)
    c1, c2 = st.columns(2)
    c1.download_button("Download spectrum CSV", csv, f"{stem}_ir_spectrum.csv", "text/csv", on_click="ignore",
                       icon=":material/download:", key="spectra_csv")
    c2.download_button("Download JSON", to_json(res.record(), indent=1), f"{stem}_ir_spectrum.json",
                       "application/json", on_click="ignore", icon=":material/download:", key="spectra_json")


def page() -> None:
    st.title("Spectra")
    st.caption("Γ phonons from a universal potential (or your phonopy file) + Born charges and ε∞ from the ETGNN "
               "model → IR spectrum, ε_ionic, ε0 and LO-TO splitting. Units: cm⁻¹, e²/amu. See docs/spectra.md.")
    model = select_model()
    entry = select_structure(model=model)
    if model is None:
        return
    missing = [t for t in ("born_charges", "dielectric") if t not in model.units]
    if missing:
        st.warning(f"Model {model.name} does not predict {' and '.join(missing)}: pick a Born-charge + dielectric "
                   "model (e.g. multi_element_bec) in the sidebar.")
        return
    source, relax, fwhm, upload = options()
    if source != PHONOPY_FILE:
        if entry is None:
            explain_no_structure("Pick a crystal in the sidebar.")
            return
        if not (is_periodic(entry.atoms) and np.all(entry.atoms.pbc)):
            st.warning(f"{entry.label} is not a 3D-periodic crystal: IR spectra need a cell.")
            return
        st.caption(f"{entry.label}: {entry.atoms.get_chemical_formula()}, {len(entry.atoms)} atoms")
    elif upload is None:
        st.info("Upload a phonopy_params.yaml (phonopy ... --include-all writes one).")
        return
    key = (str(model.info.path), source, relax,
           upload.file_id if upload is not None else entry.fingerprint)
    results = st.session_state.setdefault(RESULTS, {})
    if key not in results:
        if not st.button("Compute spectrum", type="primary", icon=":material/play_arrow:", key="spectra_go"):
            st.caption("A 10-atom cell takes about a minute on a 2-core CPU (relaxation + displacements).")
            return
        try:
            results[key] = compute(model, entry, source, relax, upload)
        except Exception as exc:
            show_error(exc, "cannot compute the spectrum")
            return
    res = results[key]
    st.caption(f"Born charges and ε∞: **{res.model}** · phonons: **{res.phonons}** · "
               f"{res.info.get('seconds_total', 0):.0f} s")
    for w in res.warnings:
        st.warning(w, icon=":material/warning:")
    with page_guard("spectrum"):
        m = pick_mode(res, fwhm, key)
    if m is not None:
        with page_guard("mode view"):
            show_mode(res, m)
    st.subheader("Dielectric tensors")
    with page_guard("dielectric tensors"):
        show_dielectric(res)
    with page_guard("downloads"):
        downloads(res, fwhm)


with page_guard():
    page()

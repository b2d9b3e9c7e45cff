"""The ionic (relaxed-ion minus clamped-ion) piezoelectric tensor from Born charges and a force model.

Under a homogeneous strain ε the atoms, first carried along with the cell (fixed fractional
coordinates), feel forces Λ ε; they relax by u = Φ⁺ Λ ε, where Φ is the Γ-point force-constant
matrix (the acoustic translations and any unstable mode left out of the inverse).  The moving
charges polarise the crystal:

    e_ion[i, j, k] = (e / V) Σ_a,l Z[a, i, l] u[a, l, j, k]        (C/m^2 after × 16.0218 / V[Å^3])

with ``Z[a, i, l] = (V / e) ∂P_i / ∂u_{a,l}`` (the project's Born-charge convention, etgnn_core.keys)
and ``u[a, l, j, k] = ∂u_{a,l} / ∂ε_jk`` in Å.  The full-tensor convention is that of the shipped
piezo models: e_ijk = ∂P_i / ∂ε_jk with ε symmetric, equal to the Voigt component e_iJ
(J = jk, engineering shear).  The total DFPT tensor adds the clamped-ion (electronic) term, which
this does not give: for wurtzite nitrides it opposes the ionic one.

``Λ`` comes from central differences of the forces in strained cells (``delta`` 0.01 by default),
``Φ`` from phonopy finite displacements (:func:`etgnn_core.spectra.phonons.finite_displacement_phonopy`).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from etgnn_core.data.offsets import multiple_key

E_PER_A2_IN_C_PER_M2 = 16.02176634  # 1 e/Å^2 in C/m^2
VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def strained(atoms: Atoms, strain: np.ndarray) -> Atoms:
    """A copy of ``atoms`` with the cell deformed by the symmetric ``strain`` [3, 3], atoms carried along."""
    out = atoms.copy()
    out.calc = None
    out.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    return out


def internal_strain_forces(atoms: Atoms, calc, delta: float = 0.01) -> np.ndarray:
    """Λ[a, l, j, k] = ∂F_{a,l} / ∂ε_jk at fixed fractional coordinates, eV/Å per unit strain.  [n, 3, 3, 3]

    Central differences (±delta) of the forces, each with its mean removed (a net force is drift).
    """
    lam = np.zeros((len(atoms), 3, 3, 3))
    for j, k in VOIGT_PAIRS:
        eps = np.zeros((3, 3))
        eps[j, k] = eps[k, j] = 1.0 if j == k else 0.5  # symmetric strain with engineering shear 1
        f = []
        for sign in (1.0, -1.0):
            a = strained(atoms, sign * delta * eps)
            a.calc = calc
            forces = np.asarray(a.get_forces(), dtype=float)
            f.append(forces - forces.mean(axis=0))
        lam[:, :, j, k] = lam[:, :, k, j] = (f[0] - f[1]) / (2 * delta)
    return lam


def relaxation_per_strain(force_constants: np.ndarray, lam: np.ndarray,
                          rel_tol: float = 1e-3) -> tuple[np.ndarray, int]:
    """u[a, l, j, k] = (Φ⁺ Λ)  in Å per unit strain, and the number of unstable modes left out of Φ⁺
    (:func:`force_constant_pinv`; ``force_constants`` [n, n, 3, 3] eV/Å^2)."""
    n = lam.shape[0]
    pinv, unstable = force_constant_pinv(force_constants, rel_tol)
    u = pinv @ lam.reshape(3 * n, 9)  # [3n, 9] Å
    return u.reshape(n, 3, 3, 3), unstable


def force_constant_pinv(force_constants: np.ndarray, rel_tol: float = 1e-3) -> tuple[np.ndarray, int]:
    """Φ⁺ [3n, 3n] in Å^2/eV (row a*3+l) and the number of unstable modes left out of it.

    ``force_constants`` [n, n, 3, 3] eV/Å^2 (phonopy's layout, Γ sum over images); only eigenvalues
    above ``rel_tol`` × the largest enter: the three translations (zero) and any negative (unstable)
    mode, whose inverse would describe a response that is not there, are left out.
    """
    n = np.shape(force_constants)[0]
    phi = np.asarray(force_constants, dtype=float).transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
    w, v = np.linalg.eigh(0.5 * (phi + phi.T))  # eV/Å^2
    top = max(float(w.max()), 1e-12)
    keep = w > rel_tol * top
    return (v[:, keep] / w[keep]) @ v[:, keep].T, int((w < -rel_tol * top).sum())


def ionic_piezo(born_charges: np.ndarray, u: np.ndarray, volume: float) -> np.ndarray:
    """e_ion[i, j, k] in C/m^2 from Born charges [n, 3, 3] (e) and u [n, 3, 3, 3] (Å); volume in Å^3."""
    from etgnn_core.spectra.ir import impose_asr

    z = impose_asr(born_charges)  # acoustic sum rule: a rigid shift of every atom polarises nothing
    return E_PER_A2_IN_C_PER_M2 / float(volume) * np.einsum("ail,aljk->ijk", z, u)


def internal_relaxation(atoms: Atoms, calc, delta: float = 0.01, displacement: float = 0.01) -> np.ndarray:
    """u[a, l, j, k] (Å per unit strain) of ``atoms`` as given (no relaxation): the costly part of e_ion.

    Γ force constants by phonopy ±``displacement`` (Å) in the cell itself, Λ by ±``delta`` strains.
    It does not depend on the Born charges: stored once, e_ion follows for any Born-charge model.
    """
    from etgnn_core.spectra.phonons import PhononConfig, finite_displacement_phonopy

    ph, _ = finite_displacement_phonopy(atoms, calc, PhononConfig(supercell=(1, 1, 1), displacement=displacement))
    u, _ = relaxation_per_strain(ph.force_constants, internal_strain_forces(atoms, calc, delta))
    return u


# ------------------------------------------------------------------------------ a model's known part
POINT_GROUP_SYMPREC = 0.1  # Å, as README_mp's symmetry checks of the Materials Project labels


def symmetry_dataset(atoms: Atoms, symprec: float = POINT_GROUP_SYMPREC):
    """spglib's symmetry dataset of the crystal (None when spglib finds none)."""
    import spglib

    return spglib.get_symmetry_dataset((atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers),
                                       symprec=symprec)


def point_group(atoms: Atoms, symprec: float = POINT_GROUP_SYMPREC) -> str:
    """Hermann-Mauguin point group of the crystal (spglib; "1" when spglib finds no symmetry)."""
    dataset = symmetry_dataset(atoms, symprec)
    return dataset.pointgroup if dataset is not None else "1"


def principal_axis(dataset, cell: np.ndarray) -> np.ndarray | None:
    """Unit vector along a 3-, 4- or 6-fold proper rotation of the crystal (an spglib dataset), else None.

    Cartesian rotations as README_mp's symmetry checks (etgnn_core.tensors.frames.cartesian_rotation).
    """
    if dataset is None:
        return None
    from etgnn_core.tensors.frames import cartesian_rotation

    lat = np.asarray(cell, dtype=np.float64)
    for w in dataset.rotations:
        r = cartesian_rotation(lat, w)
        if np.linalg.det(r) < 0:
            r = -r
        if round(float(np.trace(r))) in (0, 1, 2):  # 1 + 2 cos(angle): 120°, 90°, 60°
            vals, vecs = np.linalg.eig(r)
            n = np.real(vecs[:, int(np.argmin(np.abs(vals - 1)))])
            return n / np.linalg.norm(n)
    return None


def axis_parts(t: np.ndarray, axis: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(even, odd) parts of a rank-3 tensor [3, 3, 3] under a 180° turn about ``axis``; no axis: (t, 0).

    With z along the axis the odd part holds the components with an odd number of in-plane indices
    (e11, e22, e12 ...), the even part the rest (e33, e31, e15, e14 ...).  The two are orthogonal, and a
    rotated crystal's parts are the rotated parts: multiplying them apart keeps the tensor equivariant.
    """
    if axis is None:
        return t, np.zeros_like(t)
    turn = 2 * np.outer(axis, axis) - np.eye(3)
    odd = (t - np.einsum("ia,jb,kc,abc->ijk", turn, turn, turn, t)) / 2
    return t - odd, odd


def group_multiple(group: str, scales: dict[str, float]) -> float:
    """``scales`` of point group ``group``, else ``scales["default"]`` (1 without one).

    A scalar that depends only on the point group multiplies an equivariant tensor: the product is
    still equivariant (a rotated crystal has the same point group).
    """
    return float(scales.get(group, scales.get("default", 1.0)))


KNOWN_PARTS_FILE = "known_parts.json"


class IonicPiezoTerm:
    """e_ion of a structure as a model's known part: Born charges of ``bec_model``, forces of ``potential``.

    A model folder with ``known_parts.json`` = {"piezoelectric": {"kind": "ionic_piezo", "bec_model":
    NAME, "potential": NAME}} was trained on the rest of the tensor (Sample.offsets); loading it attaches
    this term, and every prediction adds it (etgnn_core.api.Model.predict).  ~30 force calls per
    structure: seconds on a CPU, not milliseconds.
    """

    #: a P1 cell needs 6 force calls per atom plus 12: beyond this the term would take minutes
    max_atoms = 48

    def __init__(self, bec_model: str, potential: str, device: str = "auto", bec_sha256: str | None = None,
                 scale: float = 1.0, point_group_scales: dict[str, float] | None = None,
                 odd_part_scales: dict[str, float] | None = None):
        self.bec_model, self.potential, self.device = bec_model, potential, device
        self.scale = scale  # the multiple of e_ion the network was trained beside (offset table's meta)
        # point group (spglib at POINT_GROUP_SYMPREC) -> a further multiple, "default" for the others
        # (the offset table's meta): fitted on training labels, where the clamped-ion term opposes e_ion
        self.point_group_scales = dict(point_group_scales or {})
        # point group -> the multiple of the odd (in-plane) part of e_ion about the principal axis instead
        # (axis_parts); the even part keeps the group's multiple.  Fitted where the labels oppose e_ion in
        # that part only (32, 3m: docs/piezo.md)
        self.odd_part_scales = dict(odd_part_scales or {})
        self.bec_sha256 = bec_sha256  # weights_fingerprint of the Born-charge model the network was trained with
        self.warning = ""  # set when the installed Born-charge model is another one (add_known_parts shows it)
        self._bec = self._calc = None

    def check_bec_model(self, folder) -> str:
        """The warning (or "") for the Born-charge model at ``folder``: has it changed since training?"""
        from etgnn_core.registry import weights_fingerprint

        if self.bec_sha256 and weights_fingerprint(folder) != self.bec_sha256:
            self.warning = (f"the ionic part of this piezoelectric tensor uses Born charges of {self.bec_model}, "
                            "whose weights have changed since this model was trained on them: the tensor may be "
                            "off until the model is retrained (docs/piezo.md, Rebuilding)")
        return self.warning

    def describe(self, atoms: Atoms | None = None) -> str:
        """One line for a page; given ``atoms``, the multiple this crystal gets and why (its point group)."""
        times = f"{self.scale:g} x " if self.scale != 1.0 else ""
        per_group = self.point_group_scales or self.odd_part_scales
        if per_group and atoms is not None:
            group = point_group(atoms)  # once: spglib, then the same lookups apply makes
            multiple = self.scale * group_multiple(group, self.point_group_scales)
            if group in self.odd_part_scales:
                times = (f"{multiple:.2f} x the axial part and {self.scale * self.odd_part_scales[group]:.2f} x the "
                         f"in-plane part (point group {group}: multiples fitted to the training labels) ")
            else:
                times = (f"{multiple:.2f} x (point group {group}: a multiple fitted to the training labels) "
                         if multiple != 1.0 else f"1 x (point group {group}) ")
        elif per_group:
            times += "a multiple per point group x "
        return f"ionic term: {times}Born charges of {self.bec_model} x internal strain from {self.potential}"

    @property
    def key(self):
        """What a stored offset must have been made with to stand for this part (Sample.offset_scales)."""
        return multiple_key(self.scale, self.point_group_scales, self.odd_part_scales)

    def apply(self, atoms: Atoms, e_ion: np.ndarray) -> np.ndarray:
        """This part for ``atoms`` from its whole ionic term [3, 3, 3]: scale, times its point group's multiple
        if any, and the in-plane part times its own multiple where the group has one (one spglib call)."""
        if not (self.point_group_scales or self.odd_part_scales):
            return self.scale * e_ion
        dataset = symmetry_dataset(atoms)
        group = dataset.pointgroup if dataset is not None else "1"
        multiple = self.scale * group_multiple(group, self.point_group_scales)
        if group not in self.odd_part_scales:
            return multiple * e_ion
        even, odd = axis_parts(e_ion, principal_axis(dataset, atoms.cell.array))
        return multiple * even + self.scale * self.odd_part_scales[group] * odd

    def __call__(self, atoms: Atoms) -> np.ndarray:
        z, u = self.parts(atoms)
        return self.apply(atoms, ionic_piezo(z, u, atoms.get_volume()))

    def parts(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        """(Born charges [n, 3, 3] e, internal relaxation u [n, 3, 3, 3] Å): e_ion = ionic_piezo(z, u, V)."""
        from etgnn_core.api import load_model
        from etgnn_core.spectra.phonons import force_calculator, torch_threads
        from etgnn_core.structure import StructureError, is_periodic, structure_label

        if not is_periodic(atoms) or not all(atoms.pbc):
            raise StructureError(f"{structure_label(atoms)}: the piezoelectric tensor (its ionic term) needs a "
                                 f"crystal periodic in all three directions (pbc={list(map(bool, atoms.pbc))})")
        if len(atoms) > self.max_atoms:
            raise StructureError(f"{structure_label(atoms)}: {len(atoms)} atoms: the ionic piezo term "
                                 f"(phonons with {self.potential}) is "
                                 f"computed for cells of at most {self.max_atoms} atoms")
        if self._bec is None:
            self._bec = load_model(self.bec_model, device=self.device)
            self._calc = force_calculator(self.potential, self.device)
            self.check_bec_model(self._bec.info.path)
        z = self._bec.predict(atoms)["born_charges"]
        with torch_threads(1):  # the potential's small ops: one thread is fastest (phonons.PhononConfig)
            return z, internal_relaxation(atoms, self._calc)


def load_known_parts(folder) -> dict:
    """target -> callable(atoms) -> array from a model folder's known_parts.json ({} when absent)."""
    import json
    from pathlib import Path

    path = Path(folder) / KNOWN_PARTS_FILE
    if not path.exists():
        return {}
    out = {}
    for target, spec in json.loads(path.read_text()).items():
        if spec.get("kind") != "ionic_piezo":
            raise ValueError(f"{path}: unknown known-part kind {spec.get('kind')!r} for {target}")
        out[target] = IonicPiezoTerm(spec["bec_model"], spec["potential"], bec_sha256=spec.get("bec_model_sha256"),
                                     scale=float(spec.get("scale", 1.0)),
                                     point_group_scales=spec.get("point_group_scales"),
                                     odd_part_scales=spec.get("odd_part_scales"))
    return out

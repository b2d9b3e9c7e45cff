"""Atom embeddings of a model over many structures, and their PCA (the app's embedding map).

>>> from etgnn_core.api import load_model
>>> from etgnn_core.embedding import compute_embeddings, pca
>>> table = compute_embeddings(load_model("sio2_bec"), samples)      # doctest: +SKIP
>>> proj = pca(table)                                                 # doctest: +SKIP
>>> proj.coords.shape, proj.explained                                 # doctest: +SKIP
((21558, 2), array([0.61, 0.22]))

One row per atom.  Besides the embedding vector (the output of the node output block, the
features the paper's Figure 5b projects with PCA) each row carries its structure index and label,
atom index and element, and per-atom quantities to colour a map with: for a model predicting a
per-atom rank-2 tensor (Born charges, shielding) the mean of its diagonal ``tr(T)/3`` (the
colouring of the paper's figure), for per-atom vectors (forces) the norm; the same from the labels
when the structures are labelled :class:`~etgnn_core.data.Sample` objects.
No Streamlit here: the app caches what these functions return.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from ase.data import chemical_symbols

from etgnn_core.graph import collate

__all__ = ["EmbeddingTable", "PCAResult", "compute_embeddings", "pca", "per_atom_quantities"]


@dataclass
class EmbeddingTable:
    """Atom rows of many structures: identity, element, colour quantities and embedding vectors."""

    structure: np.ndarray  # [n_rows] int, index into the structures given
    structure_label: np.ndarray  # [n_rows] object (str), label of that structure
    atom: np.ndarray  # [n_rows] int, atom index inside its structure
    numbers: np.ndarray  # [n_rows] int, atomic number
    embeddings: np.ndarray  # [n_rows, out_emb] float32
    quantities: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [n_rows] float64
    units: dict[str, str] = field(default_factory=dict)  # quantity name -> unit
    model: str = ""
    n_structures: int = 0

    def __len__(self) -> int:
        return len(self.atom)

    @property
    def element(self) -> np.ndarray:
        """[n_rows] chemical symbols."""
        return np.asarray(chemical_symbols, dtype=object)[self.numbers]

    def row_of(self, structure: int, atom: int) -> int:
        """Row index of atom ``atom`` of structure ``structure`` (ValueError if absent)."""
        hit = np.nonzero((self.structure == structure) & (self.atom == atom))[0]
        if not len(hit):
            raise ValueError(f"no row for structure {structure}, atom {atom}")
        return int(hit[0])

    def hover_text(self, quantity: str | None = None) -> list[str]:
        """One hover line per row: structure label, atom index and element (+ the quantity)."""
        el = self.element
        q = self.quantities.get(quantity) if quantity else None
        unit = f" {self.units.get(quantity, '')}".rstrip() if quantity else ""
        out = []
        for r in range(len(self)):
            s = f"{self.structure_label[r]}<br>atom #{int(self.atom[r])} {el[r]}"
            if q is not None:
                s += f"<br>{quantity} = {q[r]:.4g}{unit}"
            out.append(s)
        return out

    def to_frame(self):
        """A pandas DataFrame of the identity columns and quantities (no embedding vectors)."""
        import pandas as pd

        df = pd.DataFrame({"structure": self.structure, "label": self.structure_label, "atom": self.atom,
                           "element": self.element})
        for k, v in self.quantities.items():
            df[k] = v
        return df


@dataclass
class PCAResult:
    coords: np.ndarray  # [n_rows, n] projections
    explained: np.ndarray  # [n] explained variance ratio of each component
    components: np.ndarray  # [n, out_emb] principal axes
    mean: np.ndarray  # [out_emb]


def per_atom_quantities(tensors: dict[str, np.ndarray], ranks: dict[str, int], suffix: str = "",
                        units: dict[str, str] | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Scalar per-atom colourings of per-atom tensors: rank 2 ``tr/3`` (mean diagonal), rank 1 norm, rank 0 value.

    ``tensors``: name -> [n_atoms, 3, ...] per-atom arrays; ``ranks``: name -> rank.
    Returns (quantity name -> [n_atoms], quantity name -> unit).
    """
    units = units or {}
    q, u = {}, {}
    for name, arr in tensors.items():
        rank = ranks.get(name)
        a = np.asarray(arr, dtype=np.float64)
        if rank == 2:
            key = f"mean diagonal {name}{suffix}"
            q[key] = np.trace(a, axis1=-2, axis2=-1) / 3.0
        elif rank == 1:
            key = f"|{name}|{suffix}"
            q[key] = np.linalg.norm(a, axis=-1)
        elif rank == 0:
            key = f"{name}{suffix}"
            q[key] = a.reshape(-1)
        else:
            continue
        u[key] = units.get(name, "")
    return q, u


def _as_structures(structures, labels):
    """(atoms list, label list, label tensors list or None) from Atoms / Samples."""
    atoms, names, labelled = [], [], []
    for i, s in enumerate(structures):
        a = getattr(s, "atoms", s)
        atoms.append(a)
        sid = getattr(s, "id", "")
        src = getattr(s, "source", "")
        default = f"{a.get_chemical_formula()} #{i}" + (f" (id {sid})" if sid not in ("", None) else "")
        if src and "::" in src:
            default = f"{src.split('::')[-1]} #{i}"
        names.append(str(labels[i]) if labels is not None else default)
        t = getattr(s, "targets", None)
        labelled.append(None if t is None else (t, getattr(s, "masks", {}) or {}))
    return atoms, names, labelled


def compute_embeddings(
    model,
    structures: Sequence,
    batch_size: int = 128,
    progress: Callable[[int, int], None] | None = None,
    labels: Sequence[str] | None = None,
) -> EmbeddingTable:
    """Embeddings of every atom of ``structures`` (ase.Atoms or labelled Samples) under ``model``.

    ``model``: an :class:`etgnn_core.api.Model`.  Structures are predicted in batches of
    ``batch_size``; ``progress(done, total)`` is called after each batch.  Quantities: the
    per-atom colourings of :func:`per_atom_quantities` for the model's per-atom targets
    (``"mean diagonal born_charges"``) and, for Samples carrying per-atom labels, the same from
    the labels (``"mean diagonal born_charges (label)"``; masked atoms get NaN).
    Raises the model's :class:`~etgnn_core.structure.StructureError` for an unusable structure.
    """
    atoms_list, names, labelled = _as_structures(structures, labels)
    n = len(atoms_list)
    if labels is not None and len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} structures")
    specs = {t.name: t for t in model.config.targets}
    ranks = {k: s.rank for k, s in specs.items()}
    per_atom_targets = [k for k, s in specs.items() if s.per_atom]
    units = dict(model.units)
    emb_parts, q_parts = [], {k: [] for k in per_atom_targets}
    for start in range(0, n, batch_size):
        chunk = enumerate(atoms_list[start : start + batch_size], start)
        graphs = [model.prepare(a, name=names[i])[1] for i, a in chunk]
        with torch.no_grad():
            out = model.net(collate(graphs), embeddings=True)
        emb_parts.append(out.embeddings.detach().cpu().numpy().astype(np.float32))
        for k in per_atom_targets:
            q_parts[k].append(out.tensors[k].atom.detach().cpu().numpy().astype(np.float64))
        if progress is not None:
            progress(min(start + batch_size, n), n)
    counts = np.array([len(a) for a in atoms_list], dtype=np.int64)
    structure = np.repeat(np.arange(n), counts)
    atom = np.concatenate([np.arange(c) for c in counts]) if n else np.zeros(0, np.int64)
    numbers = np.concatenate([a.numbers for a in atoms_list]).astype(np.int64) if n else np.zeros(0, np.int64)
    width = model.config.out_emb
    emb = np.concatenate(emb_parts) if emb_parts else np.zeros((0, width), np.float32)
    quantities, qunits = {}, {}
    if n:
        pred_cat = {k: np.concatenate(v) for k, v in q_parts.items()}
        quantities, qunits = per_atom_quantities(pred_cat, ranks, units=units)
        quantities, qunits = _label_quantities(labelled, atoms_list, ranks, units, quantities, qunits)
    return EmbeddingTable(
        structure=structure,
        structure_label=np.asarray(names, dtype=object)[structure] if n else np.zeros(0, object),
        atom=atom,
        numbers=numbers,
        embeddings=emb,
        quantities=quantities,
        units=qunits,
        model=model.name,
        n_structures=n,
    )


def _label_quantities(labelled, atoms_list, ranks, units, quantities, qunits):
    """Add ``(label)`` colourings for per-atom labels every structure carries (NaN on masked atoms)."""
    from etgnn_core.data.validate import PER_ATOM
    from etgnn_core.tensors.specs import DEFAULT_SPECS

    if not labelled or any(t is None for t in labelled):
        return quantities, qunits
    common = set.intersection(*(set(t) for t, _ in labelled)) & set(PER_ATOM)
    for name in sorted(common):
        rank = ranks.get(name, DEFAULT_SPECS[name].rank)
        parts = []
        for t, masks in labelled:
            a = np.array(t[name], dtype=np.float64)
            if name in masks and len(masks[name]) == len(a):
                a[~np.asarray(masks[name], dtype=bool)] = np.nan
            parts.append(a)
        try:
            arr = np.concatenate(parts)
        except ValueError:
            continue
        if len(arr) != sum(len(a) for a in atoms_list):
            continue
        q, u = per_atom_quantities({name: arr}, {name: rank}, " (label)",
                                   {name: units.get(name, DEFAULT_SPECS[name].unit)})
        quantities.update(q)
        qunits.update(u)
    return quantities, qunits


def pca(table: EmbeddingTable | np.ndarray, n: int = 2, seed: int = 0) -> PCAResult:
    """PCA (scikit-learn) of the embedding vectors (centred, not scaled) to ``n`` components.

    Fewer than ``n`` rows or features leave the missing components at zero.
    """
    from sklearn.decomposition import PCA

    x = np.asarray(table.embeddings if isinstance(table, EmbeddingTable) else table, dtype=np.float64)
    rows, feats = x.shape
    k = max(0, min(n, rows, feats))
    coords = np.zeros((rows, n))
    explained = np.zeros(n)
    components = np.zeros((n, feats))
    mean = x.mean(0) if rows else np.zeros(feats)
    if k and rows > 1:
        p = PCA(n_components=k, svd_solver="auto", random_state=seed)
        coords[:, :k] = p.fit_transform(x)
        explained[:k] = np.nan_to_num(p.explained_variance_ratio_)
        components[:k] = p.components_
        mean = p.mean_
        # a sign convention, so that the map does not flip between runs: largest loading positive
        for i in range(k):
            j = int(np.abs(components[i]).argmax())
            if components[i, j] < 0:
                components[i] *= -1
                coords[:, i] *= -1
    return PCAResult(coords=coords, explained=explained, components=components, mean=mean)

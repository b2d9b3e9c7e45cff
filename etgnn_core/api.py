"""The notebook user's way in: ``load_model(name).predict(atoms)``.

Every returned array carries its unit (``Prediction.units``) and follows the index conventions
of :mod:`etgnn_core.keys` (Born charges: row = field / polarization, column = displacement).
``load_model`` of a committee folder gives a :class:`etgnn_core.committee.Committee`: same
``predict``, tensors are the members' mean, ``Prediction.std`` their calibrated spread and
``Prediction.warnings`` plain-language out-of-domain warnings (docs/uncertainty.md).

Loading a model changes nothing outside it.  To predict many small structures on the CPU, call
:func:`etgnn_core.device.tune_cpu_allocator` once first (the CLI and the app do): it keeps freed
memory in the process for reuse, which saves page faults in every forward pass, process-wide.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import ase
import numpy as np
import torch

from etgnn_core import keys
from etgnn_core.device import describe, resolve_device
from etgnn_core.graph import Graph, build_graph, collate, neighbor_list
from etgnn_core.model.etgnn import ETGNN, ModelOutput
from etgnn_core.model.trace import WARNINGS_LOCK, traced_inference
from etgnn_core.registry import ModelInfo, list_models, load_model_folder
from etgnn_core.reliability import add_reliability_warnings, load_reliability
from etgnn_core.structure import (
    MIN_DISTANCE,
    StructureError,
    StructureWarning,
    is_periodic,
    normalize,
    structure_label,
    to_atoms,
    validate_atoms,
)
from etgnn_core.tensors.checks import physics_warnings

DEFAULT_MAX_ATOMS = 20_000
#: Targets that only crystals have: a model predicting one of them is a crystal model (unless its card says).
CRYSTAL_TARGETS = {keys.DIELECTRIC, keys.PIEZOELECTRIC, keys.ELASTIC, keys.BORN_CHARGES}


@dataclass
class EdgeContributions:
    """Decomposition of one tensor into per-edge pieces: T_j = sum_{k->j} edge + onsite_j + asr_j.

    Arrays cover every edge / atom of the structure; :meth:`for_atom` selects one centre.
    """

    edge_src: np.ndarray  # [n_edges] neighbour k
    edge_dst: np.ndarray  # [n_edges] centre j
    edge_shift: np.ndarray  # [n_edges, 3] integer cell shift of the neighbour image
    neighbor_positions: np.ndarray  # [n_edges, 3] Angstrom, position of the neighbour image
    edge: np.ndarray  # [n_edges, 3, ...] contribution of edge k -> j (its triplets included)
    onsite: np.ndarray  # [n_atoms, 3, ...] isotropic on-site term
    asr: np.ndarray  # [n_atoms, 3, ...] acoustic-sum-rule correction
    atom: np.ndarray  # [n_atoms, 3, ...] the atomic tensor T_j
    positions: np.ndarray  # [n_atoms, 3] Angstrom

    def for_atom(self, j: int) -> dict:
        """Edges into atom j sorted by decreasing Frobenius norm, with on-site, ASR and residual."""
        idx = np.nonzero(self.edge_dst == j)[0]
        norms = np.sqrt((self.edge[idx].reshape(len(idx), -1) ** 2).sum(1))
        idx = idx[np.argsort(-norms, kind="stable")]
        total = self.edge[idx].sum(0) + self.onsite[j] + self.asr[j]
        return {
            "edges": idx,
            "neighbors": self.edge_src[idx],
            "shifts": self.edge_shift[idx],
            "neighbor_positions": self.neighbor_positions[idx],
            "distances": np.linalg.norm(self.neighbor_positions[idx] - self.positions[j], axis=1),
            "contributions": self.edge[idx],
            "norms": np.sqrt((self.edge[idx].reshape(len(idx), -1) ** 2).sum(1)),
            "onsite": self.onsite[j],
            "asr": self.asr[j],
            "tensor": self.atom[j],
            "residual": float(np.abs(total - self.atom[j]).max()) if self.atom[j].size else 0.0,
        }


@dataclass
class Prediction(Mapping):
    """Tensors of one structure: a mapping name -> numpy array, plus units and metadata."""

    tensors: dict[str, np.ndarray]
    units: dict[str, str]
    per_atom: dict[str, bool]
    model: str
    atoms: ase.Atoms
    embeddings: np.ndarray | None = None  # [n_atoms, out_emb] atom feature vectors (PCA map)
    contributions: dict[str, EdgeContributions] = field(default_factory=dict)
    # per-atom tensors defined on some species only (TensorSpec.species): name -> [n_atoms] bool;
    # the other atoms hold zeros
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    # committees only: name -> calibrated standard deviation, same shape and unit as the tensor
    # (empty for a single model: no uncertainty is claimed)
    std: dict[str, np.ndarray] = field(default_factory=dict)
    # one-line, plain-language warnings (structure out of the model's domain); empty when none
    warnings: list[str] = field(default_factory=list)
    # committees with predict(..., members=True): name -> [n_members, ...] every member's tensor
    member_tensors: dict[str, np.ndarray] = field(default_factory=dict)
    # models with learned multiples of a known part (ModelConfig.gated): name -> [n_members] 1 + g, the
    # multiple each member adds the part with (api.add_part); absent: the part is added once
    gates: dict[str, np.ndarray] = field(default_factory=dict)

    def with_masks(self) -> tuple[dict[str, np.ndarray], dict[str, bool]]:
        """Tensors plus a boolean ``NAME_mask`` per subset tensor (for files), and their per-atom flags."""
        tensors = {**self.tensors, **{keys.mask_key(n): m for n, m in self.masks.items()}}
        return tensors, {**self.per_atom, **{keys.mask_key(n): True for n in self.masks}}

    def carriers(self, name: str) -> str:
        """Elements of the atoms that carry tensor ``name`` (e.g. "Si"); "" when every atom does."""
        if name not in self.masks:
            return ""
        from ase.data import chemical_symbols

        return ", ".join(chemical_symbols[z] for z in sorted(set(self.atoms.numbers[self.masks[name]].tolist())))

    def record(self, source: str = "", index: int = 0) -> dict:
        """The JSON record of :func:`etgnn_core.io.prediction_record` (masks included)."""
        from etgnn_core.io import prediction_record

        tensors, per_atom = self.with_masks()
        return prediction_record(self.atoms, tensors, self.units, per_atom, self.model, source=source, index=index,
                                 std=self.std, warnings=self.warnings)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.tensors:
            raise KeyError(f"{key!r} is not predicted by model {self.model!r}; it gives {list(self.tensors)}")
        return self.tensors[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)


class Model:
    """A loaded ETGNN with its card: ``predict`` structures on the chosen device."""

    def __init__(self, net: ETGNN, info: ModelInfo, device=None):
        self.device = resolve_device(device)
        self.net = net.to(self.device).eval()
        self.info = info
        self.name = info.name
        self.config = net.config
        # target -> callable(atoms): a known part the network does not predict, added to every
        # prediction (known_parts.json of the folder, etgnn_core.spectra.piezo)
        self.known_parts: dict = {}
        # tensor -> cross-validated reliability by point group (reliability.json; etgnn_core.reliability)
        self.reliability: dict = {}

    def __repr__(self) -> str:
        return f"Model({self.name!r}, targets={list(self.units)}, device={self.device})"

    @property
    def units(self) -> dict[str, str]:
        return {t.name: t.unit for t in self.config.targets}

    @property
    def elements(self) -> list[int]:
        return list(self.config.elements)

    @property
    def device_description(self) -> str:
        return describe(self.device)

    def prepare(self, structure, max_atoms: int | None = DEFAULT_MAX_ATOMS,
                name: str | None = None) -> tuple[ase.Atoms, Graph]:
        """Validate (clear StructureError) and build the graph of one structure.

        The close-atom check reads the model's neighbour list (it holds every pair within the
        cutoff) instead of a search of its own; only a pair that is too close runs the full
        check, which words the error.
        """
        atoms = normalize(to_atoms(structure), copy=False)  # to_atoms made the copy
        allowed = set(self.elements) or None
        validate_atoms(atoms, allowed_numbers=allowed, max_atoms=max_atoms, min_distance=0, name=name)
        cutoff = self.config.cutoff
        neighbors = neighbor_list(atoms, cutoff, with_reverse=True)
        dist = neighbors[3]
        if cutoff < MIN_DISTANCE or (dist.size and float(dist.min()) < MIN_DISTANCE):
            validate_atoms(atoms, allowed_numbers=allowed, max_atoms=max_atoms, name=name)
        self._check_environment(atoms, neighbors[1], name)
        return atoms, build_graph(atoms, cutoff, self.config.max_neighbors, neighbors=neighbors)

    @property
    def for_crystals(self) -> bool:
        """Trained on crystals: the card says so (``data.periodic``), else a crystal tensor is a target."""
        periodic = self.info.card.get("data", {}).get("periodic")
        if periodic is not None:
            return bool(periodic)
        return bool({t.name for t in self.config.targets} & CRYSTAL_TARGETS)

    def _check_environment(self, atoms: ase.Atoms, dst: np.ndarray, name: str | None) -> None:
        """Refuse an atom without neighbours for a crystal model; warn about a molecule given to it.

        An atom that sees no neighbour within the cutoff gets only its on-site term: for a crystal
        model that is a silent wrong answer (a lone atom in a 10,000 A box gives a dielectric
        constant of 0).
        """
        label = name if name is not None else structure_label(atoms)
        if not self.for_crystals:
            return
        alone = np.flatnonzero(np.bincount(dst, minlength=len(atoms)) == 0)
        if alone.size:
            i = int(alone[0])
            more = f" ({alone.size} such atoms)" if alone.size > 1 else ""
            raise StructureError(
                f"{label}: atom {i} ({atoms.get_chemical_symbols()[i]}) has no neighbour within the model's "
                f"{self.config.cutoff:g} A cutoff{more}: model {self.name} was trained on crystals and cannot "
                "predict isolated atoms (is the cell too large, or the structure in Angstrom?)",
                source=atoms.info.get("source"), atom_indices=alone[:10], key="positions")
        if not is_periodic(atoms):
            warnings.warn(f"{label}: a molecule (no cell) given to model {self.name}, which was trained on "
                          "crystals: its prediction is an extrapolation", StructureWarning, stacklevel=3)

    def predict(self, structures, *, embeddings: bool = False, contributions: bool = False,
                batch_size: int = 32, progress: bool = False, max_atoms: int | None = DEFAULT_MAX_ATOMS):
        """Predict every tensor the model supports.

        ``structures``: one ase.Atoms / pymatgen Structure (returns one :class:`Prediction`) or a
        list of them (returns a list).  ``embeddings`` adds atom feature vectors,
        ``contributions`` adds per-edge decompositions of every tensor.
        """
        single = not isinstance(structures, (list, tuple))

        def work(chunk):
            out = self.net(collate([g for _, g in chunk]), embeddings=embeddings)
            return self._split(out, [a for a, _ in chunk], embeddings, contributions)

        results, notes = map_batches(self, [structures] if single else list(structures), max_atoms, batch_size,
                                     work, progress, f"predict ({self.name})")
        add_known_parts(self, results)
        add_reliability_warnings(self, results)
        for pred, lines in zip(results, notes):
            pred.warnings = lines + pred.warnings + physics_warnings(pred.tensors, pred.units, pred.atoms)
        return results[0] if single else results

    def _split(self, out: ModelOutput, atoms_list, embeddings, contributions) -> list[Prediction]:
        g = out.graph
        batch = g.batch.cpu().numpy()
        edge_struct = batch[g.edge_dst.cpu().numpy()]
        atom_start = np.concatenate([[0], np.cumsum([len(a) for a in atoms_list])])
        emb = out.embeddings.cpu().numpy() if out.embeddings is not None else None
        # [n_members, n_structures] multiples of the known parts (a single model's gates are [n_structures])
        gates = {k: 1 + v.reshape(-1, g.n_structures).cpu().numpy().astype(np.float64) for k, v in out.gates.items()}
        preds = []
        for s, atoms in enumerate(atoms_list):
            tensors, per_atom, contrib, masks = {}, {}, {}, {}
            for spec in self.config.targets:
                t = out.tensors[spec.name]
                arr = (t.atom[batch == s] if spec.per_atom else t.structure[s]).cpu().numpy().astype(np.float64)
                tensors[spec.name], per_atom[spec.name] = arr, spec.per_atom
                if spec.species:
                    masks[spec.name] = spec.carries(atoms.numbers)
                if contributions:
                    contrib[spec.name] = self._contrib(t, out, g, s, batch, edge_struct, int(atom_start[s]))
            preds.append(Prediction(tensors, self.units, per_atom, self.name, atoms,
                                    emb[batch == s] if emb is not None else None, contrib, masks,
                                    gates={k: v[:, s] for k, v in gates.items()}))
        return preds

    @staticmethod
    def _contrib(t, out, g, s, batch, edge_struct, offset) -> EdgeContributions:
        e = np.nonzero(edge_struct == s)[0]
        a = batch == s
        pos = g.positions.cpu().numpy()
        vec = out.edge_vectors.cpu().numpy()[e]
        dst = g.edge_dst.cpu().numpy()[e]
        f64 = lambda x: x.cpu().numpy().astype(np.float64)  # noqa: E731
        return EdgeContributions(
            edge_src=g.edge_src.cpu().numpy()[e] - offset,
            edge_dst=dst - offset,
            edge_shift=g.edge_shift.cpu().numpy()[e].round().astype(int),
            neighbor_positions=pos[dst] - vec,
            edge=f64(t.edge)[e],
            onsite=f64(t.onsite)[a],
            asr=f64(t.asr)[a],
            atom=f64(t.atom)[a],
            positions=pos[a],
        )


def prepare_all(model, items: list, max_atoms: int | None) -> tuple[list, list[list[str]]]:
    """``model.prepare`` of every structure, and per structure the one-line StructureWarnings it raised.

    The warnings are emitted again (callers may filter them) and kept for ``Prediction.warnings``.
    """
    prepared, notes, mine = [], [], []
    try:  # one recording block per batch: each entry rewrites the process-wide filters, slow per small structure
        with WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StructureWarning)
            for s in items:
                start = len(caught)
                prepared.append(model.prepare(s, max_atoms))
                new = [w for w in caught[start:] if issubclass(w.category, StructureWarning)]
                notes.append([" ".join(str(w.message).split()) for w in new])
                mine += new
    finally:  # also when a structure is refused: the warnings of the ones before it are not lost
        for w in mine:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return prepared, notes


def map_batches(model, items: list, max_atoms: int | None, batch_size: int, work, progress: bool,
                desc: str) -> tuple[list, list[list[str]]]:
    """``work(chunk)`` (a list of Predictions) for every batch of prepared structures, in order, and the
    warnings of each structure (:func:`prepare_all`).

    On a CPU with several torch threads the batches run in as many worker threads of one torch
    thread each, while this thread builds the next graphs: small-crystal batches are too small for
    the ops to use two cores, but two batches at once do (the workers run the network's traced
    trunk, which releases the GIL: etgnn_core.model.trace).  The torch
    thread count is restored afterwards.  Validation errors are raised from this thread, as before.
    """
    n_threads = torch.get_num_threads()
    parallel = model.device.type == "cpu" and n_threads > 1 and len(items) > batch_size
    results, notes, pending = [], [], []
    pool = ThreadPoolExecutor(n_threads) if parallel else None

    def one_thread(chunk):
        torch.set_num_threads(1)  # this worker's ops on one core: the workers share the cores
        with torch.no_grad(), traced_inference():  # the trace runs without the GIL: workers truly overlap
            return work(chunk)

    try:
        for start in batch_starts(len(items), batch_size, progress, desc):
            prepared, lines = prepare_all(model, items[start : start + batch_size], max_atoms)
            notes += lines
            if pool is None:
                with torch.no_grad():
                    results += work(prepared)
            else:
                pending.append(pool.submit(one_thread, prepared))
        for job in pending:
            results += job.result()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
            torch.set_num_threads(n_threads)
    return results, notes


def add_known_parts(model, preds: list) -> None:
    """Add each of ``model.known_parts`` (target -> callable(atoms)) to the predictions, members included,
    with the part's ``warning`` (e.g. the model it uses has changed since training) where it has one."""
    for name, part in getattr(model, "known_parts", {}).items():
        for p in preds:
            if name in p.tensors:
                add_part(p, name, part(p.atoms))
                if getattr(part, "warning", "") and part.warning not in p.warnings:
                    p.warnings.append(part.warning)


def add_part(pred: Prediction, name: str, value) -> None:
    """``value`` (the tensor's shape and unit) added to tensor ``name`` and to every member's copy of it;
    with learned multiples (``pred.gates``) member m adds it (1 + g_m) times, the mean the mean multiple,
    and the std is that of the members' whole tensors (times the committee's calibration factor)."""
    value = np.asarray(value, dtype=np.float64).reshape(pred.tensors[name].shape)
    factor = pred.gates.get(name, np.ones(1))  # [n_members]
    pred.tensors[name] = pred.tensors[name] + factor.mean() * value
    if name not in pred.member_tensors:
        return
    members = pred.member_tensors[name]  # [n_members, ...]
    respread = name in pred.gates and name in pred.std and len(members) > 1  # the multiples differ per member
    before = members.std(0, ddof=1).sum() if respread else 0.0
    members = pred.member_tensors[name] = members + factor.reshape((-1,) + (1,) * value.ndim) * value[None]
    if before > 0:
        scale = pred.std[name].sum() / before  # the calibration factor (Committee.std_scale) the std carries
        pred.std[name] = members.std(0, ddof=1) * scale


def batch_starts(n: int, batch_size: int, progress: bool, desc: str):
    """Start index of every batch, with a tqdm bar when ``progress``."""
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        return tqdm(starts, desc=desc, unit="batch")
    return starts


def load_model(name_or_path: str, device=None) -> Model:
    """A shipped model by name (see :func:`list_models`) or a model folder; device defaults to CUDA if present.

    A committee folder (``committee.json``) gives a :class:`etgnn_core.committee.Committee`.
    """
    from etgnn_core.registry import find_model, is_committee_folder
    from etgnn_core.spectra.piezo import load_known_parts

    folder = find_model(name_or_path)
    if is_committee_folder(folder):
        from etgnn_core.committee import load_committee

        model = load_committee(name_or_path, device)
    else:
        net, info = load_model_folder(name_or_path)
        model = Model(net, info, device)
    model.known_parts = load_known_parts(folder)
    model.reliability = load_reliability(folder)
    return model


__all__ = ["EdgeContributions", "Model", "Prediction", "list_models", "load_model"]

"""Committees of ETGNN models: mean prediction, calibrated spread, and out-of-domain warnings.

A committee folder (``etgnn committee CONFIG`` writes it; docs/uncertainty.md explains it)::

    committee.json  {"format": 1, "kind": "committee", "name", "description",
                     "members": ["member0", ...],        # subfolders, each a plain model folder
                     "std_scale": {tensor: float},        # calibration factor of the members' std
                     "domain": {...}}                     # statistics of the training data (below)
    member0/ ...    config.json, weights.pt, card.json, split.json (registry.py)
    domain.npz      reference atom embeddings of member 0 (float16 [n_ref, out_emb]) and their
                    atomic numbers (int16 [n_ref]); np.load(allow_pickle=False) reads it
    card.json, card.md, split.json (calib / test / train ids)

All members share cutoff, max_neighbors and targets (loading refuses otherwise), so one graph per
structure serves every member.  ``pred[name]`` is the members' mean; ``pred.std[name]`` the
per-component standard deviation across members (ddof = 1) times ``std_scale[name]``, fitted on
the calibration split so that a new structure has MAE <= 2 x its mean std with probability >= 90 %
(split-conformal quantile, metrics.fit_scale).

``domain`` keys: ``structures`` (training structures: every sample in neither calib nor test),
``periodic`` ("crystals", "molecules" or "mixed"), ``element_counts`` {symbol: training structures
containing it}, ``rare_count`` (warn below it), ``spread_p99`` {tensor: 99th percentile of the
scaled mean std on calib structures}, ``spread_factor`` (warn above factor x p99), ``embedding``
{"member": 0, "n_reference", "calib_p50", "calib_p99", "threshold"} (an atom whose nearest
reference embedding is farther than ``threshold`` is reported).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from ase.data import chemical_symbols

from etgnn_core import keys, metrics
from etgnn_core.api import DEFAULT_MAX_ATOMS, Model, Prediction, add_known_parts, add_part, map_batches
from etgnn_core.data.offsets import write_known_parts
from etgnn_core.data.sample import is_train_only
from etgnn_core.graph import collate
from etgnn_core.model.etgnn import ModelOutput
from etgnn_core.registry import (
    CARD_JSON,
    CARD_MD,
    COMMITTEE_FILE,
    COMMITTEE_FORMAT,
    SPLIT_FILE,
    ModelInfo,
    ModelLoadError,
    _read_json,
    committee_json,
    install_model,
    load_model_folder,
    read_committee_info,
)
from etgnn_core.reliability import add_reliability_warnings
from etgnn_core.spectra.piezo import load_known_parts
from etgnn_core.structure import is_periodic
from etgnn_core.tensors.assemble import AssembledTensor
from etgnn_core.tensors.checks import physics_warnings

log = logging.getLogger(__name__)

DOMAIN_FILE = "domain.npz"
CALIB_TARGET = 0.9  # fraction of calibration structures with MAE <= 2 x mean scaled std
RARE_COUNT = 10  # an element in fewer training structures than this is "rare"
SPREAD_FACTOR = 3.0  # warn when the spread exceeds this multiple of the calib 99th percentile
EMBEDDING_FACTOR = 1.5  # warn when an atom's nearest reference is farther than this x the calib p99
N_REFERENCE = 2000  # reference atom embeddings kept (a random subsample of the training atoms)
MAX_LISTED_ATOMS = 8  # atoms named in one warning


# ------------------------------------------------------------------------------------------ loading
def check_compatible(nets, names: Sequence[str]) -> None:
    """ModelLoadError unless every member has the same cutoff, max_neighbors, targets and gated parts as the first."""
    c0 = nets[0].config
    for net, name in zip(nets[1:], names[1:]):
        c = net.config
        for what, a, b in (("cutoff", c0.cutoff, c.cutoff), ("max_neighbors", c0.max_neighbors, c.max_neighbors),
                           ("targets", [t.to_dict() for t in c0.targets], [t.to_dict() for t in c.targets]),
                           ("gated", c0.gated, c.gated)):
            if a != b:
                raise ModelLoadError(f"committee member {name}: {what} {b} differs from {names[0]}'s {a}; "
                                     "members must share cutoff, max_neighbors, targets and gated parts")


def load_committee(name_or_path, device=None) -> Committee:
    """Load every member strictly (weights_only) and the domain reference (allow_pickle=False)."""
    from etgnn_core.registry import find_model

    path = find_model(name_or_path)
    info = read_committee_info(path)
    meta = committee_json(path)
    nets = [load_model_folder(path / m)[0] for m in info.members]
    check_compatible(nets, info.members)
    unknown = set(meta.get("std_scale", {})) - set(info.targets)
    if unknown:
        raise ModelLoadError(f"{path / COMMITTEE_FILE}: std_scale names {sorted(unknown)}, not targets of the members")
    reference = read_reference(path) if (path / DOMAIN_FILE).exists() else None
    return Committee(nets, info, meta.get("std_scale", {}), meta.get("domain", {}), reference, device)


def read_reference(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path / DOMAIN_FILE, allow_pickle=False) as f:
            ref = {"embeddings": f["embeddings"].astype(np.float32), "numbers": f["numbers"].astype(np.int64)}
    except Exception as exc:  # not an npz, a pickled array, a missing key
        raise ModelLoadError(f"{path / DOMAIN_FILE}: cannot be read as plain arrays ({exc})") from exc
    if ref["embeddings"].ndim != 2 or len(ref["numbers"]) != len(ref["embeddings"]):
        raise ModelLoadError(f"{path / DOMAIN_FILE}: embeddings {ref['embeddings'].shape} and numbers "
                             f"{ref['numbers'].shape} do not match")
    return ref


# --------------------------------------------------------------------------------------- predicting
class Committee(Model):
    """Several ETGNNs predicting together: mean, calibrated std, and domain warnings.

    ``predict`` has :meth:`Model.predict`'s signature (plus ``members``).  Each structure's graph
    is built once and every member runs on the same batch.  ``contributions=True`` gives the mean
    of the members' per-edge contributions (they share the graph, so edges line up);
    ``embeddings=True`` gives **member 0's** embeddings (members' embedding spaces differ, a mean
    would mean nothing).  ``members=True`` also fills ``Prediction.member_tensors``.
    """

    def __init__(self, nets, info: ModelInfo, std_scale: dict[str, float] | None = None,
                 domain: dict | None = None, reference: dict | None = None, device=None):
        super().__init__(nets[0], info, device)
        self.nets = [self.net] + [n.to(self.device).eval() for n in nets[1:]]
        self.std_scale = {t.name: float((std_scale or {}).get(t.name, 1.0)) for t in self.config.targets}
        self.domain = domain or {}
        self.reference = reference
        self._ref_t = None if reference is None else torch.as_tensor(reference["embeddings"])

    def __repr__(self) -> str:
        return f"Committee({self.name!r}, members={len(self.nets)}, targets={list(self.units)}, device={self.device})"

    @property
    def elements(self) -> list[int]:
        return list(self.info.elements)

    def predict(self, structures, *, embeddings: bool = False, contributions: bool = False,
                batch_size: int = 32, progress: bool = False, max_atoms: int | None = DEFAULT_MAX_ATOMS,
                members: bool = False):
        single = not isinstance(structures, (list, tuple))
        want_emb = embeddings or self._ref_t is not None

        def work(chunk):  # the graph is built once; every member runs on it
            graph = collate([g for _, g in chunk]).to(self.device)
            outs = [net(graph, embeddings=want_emb and k == 0) for k, net in enumerate(self.nets)]
            mean, spread, stacked = self._combine(outs, contributions)
            preds = self._split(mean, [a for a, _ in chunk], want_emb, contributions)
            self._attach(preds, spread, stacked, mean.graph, members)
            return preds

        results, notes = map_batches(self, [structures] if single else list(structures), max_atoms, batch_size,
                                     work, progress, f"predict ({self.name}, {len(self.nets)} members)")
        add_known_parts(self, results)
        add_reliability_warnings(self, results)
        for p, lines in zip(results, notes):
            p.warnings = lines + [w for w in self.warnings_for(p) if "molecule" not in w or not lines] \
                + p.warnings + physics_warnings(p.tensors, p.units, p.atoms)
            if not embeddings:
                p.embeddings = None
        return results[0] if single else results

    def _combine(self, outs: list[ModelOutput], contributions: bool):
        """Mean output (contributions averaged when asked), per-target std of atom / structure tensors."""
        tensors, spread, stacked = {}, {}, {}
        ddof = 1 if len(outs) > 1 else 0
        for spec in self.config.targets:
            parts = [o.tensors[spec.name] for o in outs]
            atom = torch.stack([p.atom for p in parts])  # [M, n_atoms, 3, ...]
            struct = torch.stack([p.structure for p in parts])  # [M, n_structures, 3, ...]
            scale = self.std_scale[spec.name]
            spread[spec.name] = ((atom.std(0, correction=ddof) if spec.per_atom else struct.std(0, correction=ddof))
                                 * scale)
            stacked[spec.name] = atom if spec.per_atom else struct
            pieces = {f: torch.stack([getattr(p, f) for p in parts]).mean(0) if contributions else getattr(parts[0], f)
                      for f in ("edge", "onsite", "asr")}  # only read when contributions are asked for
            tensors[spec.name] = AssembledTensor(atom=atom.mean(0), structure=struct.mean(0), **pieces)
        o = outs[0]
        gates = {k: torch.stack([out.gates[k] for out in outs]) for k in o.gates}  # [M, n_structures]
        return ModelOutput(tensors, o.embeddings, o.graph, o.edge_vectors, gates=gates), spread, stacked

    def _attach(self, preds: list[Prediction], spread: dict, stacked: dict, graph, members: bool) -> None:
        """Std per tensor; every member's tensor when ``members``, and always for a gated one: adding its
        known part (1 + g_m) times per member changes the spread (api.add_part recomputes it from them)."""
        batch = graph.batch.cpu().numpy()
        for s, p in enumerate(preds):
            for spec in self.config.targets:
                sel = spread[spec.name][batch == s] if spec.per_atom else spread[spec.name][s]
                p.std[spec.name] = sel.cpu().numpy().astype(np.float64)
                if members or spec.name in p.gates:
                    arr = stacked[spec.name]  # [M, ...]
                    sel = arr[:, batch == s] if spec.per_atom else arr[:, s]
                    p.member_tensors[spec.name] = sel.cpu().numpy().astype(np.float64)

    # -------------------------------------------------------------------------------------- domain
    def warnings_for(self, pred: Prediction) -> list[str]:
        """Plain-language out-of-domain warnings for one prediction (docs/uncertainty.md)."""
        d = self.domain
        if not d:
            return []
        out = []
        out += periodic_warning(pred.atoms, d.get("periodic"))
        out += rare_element_warnings(pred.atoms, d.get("element_counts"), d.get("rare_count", RARE_COUNT),
                                     d.get("periodic"))
        out += spread_warnings(pred, d.get("spread_p99", {}), d.get("spread_factor", SPREAD_FACTOR))
        emb = d.get("embedding", {})
        if self._ref_t is not None and pred.embeddings is not None and emb.get("threshold"):
            dist = nearest_distances(pred.embeddings, self._ref_t)
            out += embedding_warnings(pred.atoms, dist, float(emb["threshold"]), float(emb.get("calib_p99", 0)))
        return out


def nearest_distances(emb: np.ndarray, reference: torch.Tensor, chunk: int = 4096) -> np.ndarray:
    """[n_atoms] Euclidean distance from each atom embedding to its nearest reference embedding."""
    x = torch.as_tensor(np.asarray(emb, dtype=np.float32))
    if len(reference) == 0 or len(x) == 0:
        return np.full(len(x), np.inf if len(x) else 0.0)[: len(x)]
    return np.concatenate([torch.cdist(x[i : i + chunk], reference).min(1).values.numpy()
                           for i in range(0, len(x), chunk)])


def _kind(periodic: str | None) -> str:
    return {"crystals": "crystals", "molecules": "molecules"}.get(periodic or "", "structures")


def periodic_warning(atoms, periodic: str | None) -> list[str]:
    if periodic == "crystals" and not is_periodic(atoms):
        return ["this looks like a molecule (no periodic cell) but the model was trained on crystals: "
                "its tensors are not meaningful here"]
    if periodic == "molecules" and is_periodic(atoms):
        return ["this is a crystal (periodic cell) but the model was trained on molecules: "
                "its tensors are not meaningful here"]
    return []


def rare_element_warnings(atoms, counts: dict | None, rare: int, periodic: str | None) -> list[str]:
    if counts is None:
        return []
    out = []
    for z in sorted(set(atoms.numbers.tolist())):
        sym = chemical_symbols[z]
        n = int(counts.get(sym, 0))
        if n < rare:
            noun = _kind(periodic)[:-1] if n == 1 else _kind(periodic)
            seen = f"appears in only {n} training {noun}" if n else "never appears in the training data"
            out.append(f"{sym} {seen}: its tensors are uncertain")
    return out


def spread_warnings(pred: Prediction, p99: dict, factor: float) -> list[str]:
    out = []
    for name, ref in p99.items():
        if name not in pred.std or not ref or ref <= 0:
            continue
        mask = pred.masks.get(name)
        s = pred.std[name] if mask is None else pred.std[name][np.asarray(mask, bool)]
        ratio = float(np.mean(s)) / ref if s.size else 0.0
        if ratio > factor:
            out.append(f"the committee members disagree on {name} far more than on training-like structures "
                       f"(spread {ratio:.1f}x the 99th percentile): treat it as a guess")
    return out


def embedding_warnings(atoms, dist: np.ndarray, threshold: float, p99: float) -> list[str]:
    far = np.nonzero(dist > threshold)[0]
    if not far.size:
        return []
    shown = far[:MAX_LISTED_ATOMS]
    elems = ", ".join(sorted({chemical_symbols[z] for z in atoms.numbers[far]}))
    more = f" and {far.size - shown.size} more" if far.size > shown.size else ""
    which = "atom" if far.size == 1 else "atoms"
    how = f" (distance {float(dist[far].max()) / p99:.1f}x the usual)" if p99 > 0 else ""
    return [f"{which} {', '.join(str(i) for i in shown)}{more} ({elems}) look unlike any training atom{how}: "
            "their tensors are extrapolated"]


# --------------------------------------------------------------------------------------- assembling
def member_folders(config, members: Sequence[int] | None = None) -> list[Path]:
    """``<config.output>/member<K>/model`` for the given K (default: every one that exists)."""
    root = Path(config.output)
    if members is None:
        found = sorted(root.glob("member*/model"), key=lambda p: (len(p.parent.name), p.parent.name))
        if not found:
            raise ModelLoadError(f"{root}: no member<K>/model folders; train them with `etgnn train CONFIG --member K`")
        return found
    paths = [root / f"member{k}" / "model" for k in members]
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise ModelLoadError(f"committee member folder(s) not found: {', '.join(missing)}")
    return paths


def committee_split(folders: Sequence[Path], samples: list) -> dict[str, np.ndarray]:
    """Sample indices of ``calib`` and ``test`` (the same in every member's split.json) and ``train``
    (every other sample: the data the committee was fitted and validated on)."""
    # ids as the trainer writes them; an id shared by two data sets (the same structure twice) is
    # in one group, hence in one part: every sample with that id goes there
    index: dict[str, list[int]] = {}
    for i, smp in enumerate(samples):
        index.setdefault(str(getattr(smp, "id", i)), []).append(i)
    parts = None
    for f in folders:
        split = _read_split(f)
        for part in ("calib", "test"):
            if part not in split:
                raise ModelLoadError(f"{f / SPLIT_FILE}: no {part!r} part; members must be trained with "
                                     "`etgnn train CONFIG --member K` (a calibration split)")
        mine = {p: sorted(map(str, split[p])) for p in ("calib", "test")}
        if parts is None:
            parts, first = mine, f
        elif mine != parts:
            raise ModelLoadError(f"{f / SPLIT_FILE}: calib/test ids differ from {first / SPLIT_FILE}; "
                                 "committee members must share one test and calibration split (split.seed)")
    out = {}
    for p, id_list in parts.items():
        unknown = [i for i in id_list if i not in index]
        if unknown:
            raise ModelLoadError(f"{folders[0] / SPLIT_FILE}: {p} id {unknown[0]!r} is not in the data "
                                 f"({len(unknown)} unknown); was the data set changed since training?")
        out[p] = np.array(sorted({j for i in id_list for j in index[i]}), dtype=np.int64)
    held = set(out["calib"].tolist()) | set(out["test"].tolist())
    rest = [i for i in range(len(samples)) if i not in held]
    # a data.train_only set trained the members but is not the data the baselines describe
    out["train"] = np.array([i for i in rest if not is_train_only(samples[i])], dtype=np.int64)
    extra = np.array([i for i in rest if is_train_only(samples[i])], dtype=np.int64)
    if len(extra):
        out[keys.TRAIN_ONLY] = extra
    return out


def _read_split(folder: Path) -> dict:
    """A member's split.json (committee members need it: calib and test must agree)."""
    return _read_json(folder / SPLIT_FILE)


def known(samples: list, elements: Sequence[int]) -> list:
    """The samples whose every element is in ``elements`` ([] = any)."""
    allowed = set(elements)
    return [s for s in samples if not allowed or set(s.atoms.numbers.tolist()) <= allowed]


def _labels(samples, name):
    return ([s.targets[name] for s in samples], [s.masks.get(name) for s in samples],
            [s.atoms.numbers for s in samples], [getattr(s, "info", None) or {} for s in samples])


def predict_for_metrics(model: Model, samples: list, batch_size: int = 32) -> list[Prediction]:
    """Predictions of ``samples`` as :func:`evaluate_model` scores them (a committee's with member tensors)."""
    kwargs = {"members": True} if isinstance(model, Committee) else {}
    return predict_with_offsets(model, samples, batch_size=batch_size, **kwargs)


def predict_with_offsets(model: Model, samples: list, **kwargs) -> list[Prediction]:
    """``model.predict`` of the samples; a known part of the model (``model.known_parts``) that every
    sample has stored (Sample.offsets, the same computation) is taken from there instead of anew.

    Only the model's own known parts are added: a model trained on whole tensors gets no offset.  A
    stored offset of another multiple than the model's part (a table written with ``--scale``) is not
    used: that part is computed anew.
    """
    parts = model.known_parts

    def same_part(name, smp) -> bool:
        return (name in getattr(smp, "offsets", {})
                and getattr(smp, "offset_scales", {}).get(name, 1.0) == getattr(parts[name], "key", 1.0))

    stored = {k for k in parts if all(same_part(k, s) for s in samples)}
    model.known_parts = {k: v for k, v in parts.items() if k not in stored}
    try:
        preds = model.predict([s.atoms for s in samples], **kwargs)
    finally:
        model.known_parts = parts
    for p, s in zip(preds, samples):
        for name in stored & set(p.tensors):
            add_part(p, name, s.offsets[name])
    return preds


def evaluate_model(model: Model, samples: list, train: list, batch_size: int = 32,
                   preds: list | None = None) -> dict[str, dict]:
    """Per tensor on ``samples``: metrics of :mod:`etgnn_core.metrics` with baselines fitted on ``train``.

    For a committee (of the mean) also per-member MAE, coverage of 2 x std and Spearman(std, error).
    ``preds``: :func:`predict_for_metrics` of ``samples`` when the caller has it already.
    """
    if preds is None:
        preds = predict_for_metrics(model, samples, batch_size)
    out = {}
    for spec in model.config.targets:
        name = spec.name
        lab = [(i, s) for i, s in enumerate(samples) if name in s.targets]
        if not lab:
            continue
        idx = [i for i, _ in lab]
        y, m, z, infos = _labels([s for _, s in lab], name)
        ty, tm, tz, _ = _labels([s for s in train if name in s.targets], name)
        base = metrics.Baselines(name, spec.per_atom, ty, tz, tm)
        mean = [preds[i][name] for i in idx]
        res = metrics.tensor_metrics(name, spec.per_atom, mean, y, z, base, m, infos)
        if name in preds[idx[0]].member_tensors:
            res["member_mae"] = [
                metrics.tensor_metrics(name, spec.per_atom, [preds[i].member_tensors[name][k] for i in idx],
                                       y, z, base, m, infos)["mae"]
                for k in range(len(model.nets))]
        res.update(unit=spec.unit, baseline=metrics.baseline_name(name, spec.per_atom))
        if isinstance(model, Committee):  # per structure, on frames whose orientation is certain (metrics docstring)
            sure = [k for k, info in enumerate(infos) if metrics.sign_certain(info)]
            err = metrics.structure_errors([mean[k] for k in sure], [y[k] for k in sure], [m[k] for k in sure])
            spread = metrics.structure_spreads([preds[idx[k]].std[name] for k in sure], [m[k] for k in sure])
            res.update(coverage=metrics.coverage(err, spread), spearman=metrics.spearman(spread, err))
        out[name] = res
    return out


def calibrate(committee: Committee, calib: list, target: float = CALIB_TARGET,
              batch_size: int = 32) -> tuple[dict[str, float], dict[str, np.ndarray], list]:
    """Fit ``std_scale`` per tensor on ``calib`` (the committee's own scale is reset to 1 first).

    Returns (std_scale, scaled per-structure spreads on calib per tensor, calib predictions with the
    raw std).
    """
    committee.std_scale = dict.fromkeys(committee.std_scale, 1.0)
    preds = predict_with_offsets(committee, calib, batch_size=batch_size, embeddings=True)
    scale, spreads = {}, {}
    for name in committee.std_scale:
        lab = [(p, s) for p, s in zip(preds, calib)
               if name in s.targets and metrics.sign_certain(getattr(s, "info", None))]
        if not lab:
            continue
        y, m, _, _ = _labels([s for _, s in lab], name)
        err = metrics.structure_errors([p[name] for p, _ in lab], y, m)
        raw = metrics.structure_spreads([p.std[name] for p, _ in lab], m)
        scale[name] = metrics.fit_scale(err, raw, target)
        spreads[name] = raw * scale[name]
    return scale, spreads, preds


def domain_statistics(committee: Committee, train: list, calib_preds: list, spreads: dict[str, np.ndarray],
                      n_reference: int = N_REFERENCE, seed: int = 0, batch_size: int = 32) -> tuple[dict, dict]:
    """(domain dict for committee.json, reference arrays for domain.npz); see the module docstring."""
    periodic = {is_periodic(s.atoms) for s in train}
    kind = "crystals" if periodic == {True} else "molecules" if periodic == {False} else "mixed"
    counts: dict[str, int] = {}
    for s in train:
        for z in set(s.atoms.numbers.tolist()):
            counts[chemical_symbols[z]] = counts.get(chemical_symbols[z], 0) + 1
    rng = np.random.default_rng(seed)
    train = known(train, committee.nets[0].config.elements)  # a validation-only element is unknown to member 0
    # enough structures to draw n_reference atoms from, without embedding a 10^4-structure set
    n_atoms = np.array([len(s.atoms) for s in train])
    order = rng.permutation(len(train))
    take = order[: max(1, int(np.searchsorted(np.cumsum(n_atoms[order]), 4 * n_reference)) + 1)]
    member0 = Model(committee.nets[0], replace(committee.info, elements=list(committee.nets[0].config.elements)),
                    committee.device)
    emb = [p.embeddings for p in member0.predict([train[i].atoms for i in take], embeddings=True,
                                                 batch_size=batch_size)]
    numbers = np.concatenate([train[i].atoms.numbers for i in take]) if len(take) else np.zeros(0, int)
    emb = np.concatenate(emb) if emb else np.zeros((0, committee.config.out_emb))
    keep = np.sort(rng.choice(len(emb), size=min(n_reference, len(emb)), replace=False))
    reference = {"embeddings": emb[keep].astype(np.float16), "numbers": numbers[keep].astype(np.int16)}
    ref_t = torch.as_tensor(reference["embeddings"].astype(np.float32))
    calib_d = np.concatenate([nearest_distances(p.embeddings, ref_t) for p in calib_preds]) if calib_preds else []
    p50, p99 = (float(np.percentile(calib_d, q)) for q in (50, 99)) if len(calib_d) else (0.0, 0.0)
    domain = {
        "structures": len(train), "periodic": kind, "element_counts": dict(sorted(counts.items())),
        "rare_count": RARE_COUNT,
        "spread_p99": {k: float(np.nanpercentile(v, 99)) for k, v in spreads.items() if np.isfinite(v).any()},
        "spread_factor": SPREAD_FACTOR,
        "embedding": {"member": 0, "n_reference": int(len(keep)), "calib_p50": p50, "calib_p99": p99,
                      "threshold": EMBEDDING_FACTOR * p99, "factor": EMBEDDING_FACTOR},
    }
    return domain, reference


def assemble_committee(config, members: Sequence[int] | None = None, samples: list | None = None,
                       data_description: str | None = None, output=None, batch_size: int = 32) -> Path:
    """Load the members of ``config`` (a TrainConfig or its YAML path), calibrate, evaluate on the test
    split and write the committee folder to ``output`` (default ``<config.output>/committee``)."""
    from etgnn_core.train.config import TrainConfig

    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_file(config)
    folders = member_folders(config, members)
    nets, infos = zip(*(load_model_folder(f) for f in folders))
    names = [f.parent.name for f in folders]
    check_compatible(nets, names)
    if samples is None:
        from etgnn_core.train.trainer import load_samples

        samples, data_description = load_samples(config)
    split = committee_split(folders, samples)
    parts = {k: [samples[i] for i in v] for k, v in split.items()}
    if not parts["calib"] or not parts["test"]:
        raise ValueError(f"committee {config.name}: the calib ({len(parts['calib'])}) and test "
                         f"({len(parts['test'])}) splits must both be non-empty")
    elements = sorted(set().union(*(i.elements for i in infos))) if all(i.elements for i in infos) else []
    info = ModelInfo(config.name, Path(output or Path(config.output) / "committee"), config.description,
                     dict(infos[0].targets), elements, members=names)
    committee = Committee(list(nets), info, device="cpu")
    committee.known_parts = load_known_parts(folders[0])  # members trained with offsets predict the rest
    unknown = {}
    for part in ("calib", "test"):  # an element no member was trained on cannot be predicted at all
        kept = known(parts[part], elements)
        unknown[part], parts[part] = len(parts[part]) - len(kept), kept
    t0 = time.monotonic()
    scale, spreads, calib_preds = calibrate(committee, parts["calib"], batch_size=batch_size)
    # the domain's element counts cover every training structure; the embeddings those member 0 knows
    domain, reference = domain_statistics(committee, parts["train"] + parts.get(keys.TRAIN_ONLY, []), calib_preds,
                                          spreads, batch_size=batch_size)
    committee.std_scale.update(scale)
    test_metrics = evaluate_model(committee, parts["test"], parts["train"], batch_size)
    minutes = (time.monotonic() - t0) / 60
    card = _card(config, data_description, samples, split, names, infos, test_metrics, scale, folders, minutes)
    card["split"]["skipped_unknown_elements"] = unknown
    meta = {"format": COMMITTEE_FORMAT, "kind": "committee", "name": config.name,
            "description": config.description, "members": names, "std_scale": scale, "domain": domain}
    ids = {k: [str(getattr(samples[i], "id", i)) for i in v] for k, v in split.items()}
    folder = _write_folder(Path(info.path), folders, names, meta, reference, card, ids, nets[0].config,
                           committee_recipe(config, folders, names))
    write_known_parts(folder, config.data.offsets)  # the part the members did not learn
    return folder


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def _card(config, description, samples, split, names, infos, test_metrics, scale, folders, minutes) -> dict:
    params = None
    try:
        import torch as _t

        state = _t.load(folders[0] / "weights.pt", map_location="cpu", weights_only=True)
        params = int(sum(v.numel() for v in state.values()))
    except Exception:  # the size note is informative only
        pass
    mb = sum(_size(f) for f in folders) / 1e6
    c = infos[0].card
    return {
        "kind": "committee",
        "data": {"source": description or "user samples", "structures": len(samples),
                 "units": dict(infos[0].targets)},
        "split": {"seed": config.split.seed, "group": getattr(config.split, "group", None),
                  **{k: int(len(v)) for k, v in split.items()},
                  "note": "calib and test are the same for every member; train/validation draws differ per member"},
        "members": [{"name": n, "training": i.card.get("training", {}), "val_metrics": i.card.get("val_metrics", {})}
                    for n, i in zip(names, infos)],
        "metrics": test_metrics,
        "std_scale": scale,
        "calibration": {"target": CALIB_TARGET, "k": metrics.COVERAGE_K, "method": "split-conformal quantile",
                        "minutes": round(minutes, 2)},
        "size": {"members": len(names), "parameters_per_member": params, "megabytes": round(mb, 2),
                 "model": {k: v for k, v in c.get("model", {}).items()} if c.get("model") else None},
        "notes": config.description,
    }


def render_committee_card(name: str, description: str, card: dict) -> str:
    """card.md of a committee: test metrics of the mean with baselines, coverage, Spearman, members, size."""
    lines = [f"# {name} (committee of {card['size']['members']})", "", description or "", "",
             f"Data: {card['data']['source']} ({card['data']['structures']} structures).", "",
             "Split: " + ", ".join(f"{k} {v}" for k, v in card["split"].items()), "",
             "## Test metrics of the committee mean", "",
             "| tensor | MAE | baseline | ratio | coverage (MAE <= 2 std) | Spearman(std, error) | member MAEs "
             "| unit |",
             "|---|---|---|---|---|---|---|---|"]
    for t, m in card["metrics"].items():
        members = ", ".join(f"{x:.4g}" for x in m.get("member_mae", []))
        lines.append(f"| {t} | {m['mae']:.4g} | {m['baseline_mae']:.4g} ({m['baseline']}) | {m['ratio']:.3f} "
                     f"| {m['coverage']:.2f} | {m['spearman']:.2f} | {members} | {m['unit']} |")
        for extra in ("norm", "bulk", "shear"):
            if f"{extra}_mae" in m:
                lines.append(f"| {t} {extra} | {m[f'{extra}_mae']:.4g} | {m[f'{extra}_baseline_mae']:.4g} "
                             f"| {m[f'{extra}_ratio']:.3f} | | | | {m['unit'] if extra == 'norm' else 'GPa'} |")
    s = card["size"]
    lines += ["", "## Uncertainty", "",
              f"std scale per tensor (fitted on calib for {card['calibration']['target']:.0%} coverage"
              f"{', ' + card['calibration']['method'] if card['calibration'].get('method') else ''}): "
              + ", ".join(f"{k} {v:.3g}" for k, v in card["std_scale"].items()), "",
              "## Size", "", f"{s['members']} members, {s['parameters_per_member']} parameters each, "
              f"{s['megabytes']} MB in all.", ""]
    if card.get("notes"):
        lines += ["## Notes", "", card["notes"], ""]
    return "\n".join(lines)


def stage_configs(config) -> list[str]:
    """The committee configs whose members ``config``'s members continue, earliest first."""
    from etgnn_core.train.config import TrainConfig

    chain, parent = [], config.committee_parent
    while parent and parent not in chain:
        chain.insert(0, parent)
        parent = TrainConfig.from_file(parent).committee_parent
    return chain


def _member_parent(config, k: int) -> dict:
    """{"parent": ...} for member ``k`` when the members fine-tune from a list of parents; {} otherwise."""
    parent = config.listed_parent(k)
    return {"parent": parent} if parent is not None else {}


def committee_recipe(config, folders, names) -> dict:
    """The committee's train.yaml: the member config, the commands that rebuild it, each member's weights hash.

    Each member folder keeps its own train.yaml (the exact resolved config of that member).
    """
    from etgnn_core.train.recipe import data_hashes, git_commit, sha256_file

    base = config if config.split.member is None else replace(config, split=replace(config.split, member=None))
    ks = [int(n.removeprefix("member")) for n in names]
    try:
        data_files = data_hashes(base)
    except ValueError as exc:  # samples given in code (tests, notebooks): no data files to hash
        data_files = {"not hashed": " ".join(str(exc).split())}
    cfg = f"configs/{config.name}.yaml"
    return {
        "format": 1,
        "kind": "committee",
        "name": config.name,
        "git_commit": git_commit(),
        "commands": [f"etgnn train {c} --member {k}" for c in [*stage_configs(config), cfg] for k in ks]
        + [f"etgnn committee {cfg} --members {','.join(map(str, ks))} --install"],
        "member_config": base.to_dict(),
        "members": {n: {"seed": base.seed + k, **_member_parent(base, k),
                        "weights_sha256": sha256_file(f / "weights.pt")} for n, k, f in zip(names, ks, folders)},
        "data_files": data_files,
    }


def _write_folder(dest: Path, folders, names, meta, reference, card, ids, config, recipe: dict) -> Path:
    """Write beside ``dest`` and rename into place; an earlier committee at ``dest`` is replaced."""
    import yaml

    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.writing-{os.getpid()}")
    tmp.mkdir(parents=True)
    (tmp / "train.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    for folder, name in zip(folders, names):
        shutil.copytree(folder, tmp / name)
    (tmp / COMMITTEE_FILE).write_text(json.dumps(meta, indent=1))
    np.savez(tmp / DOMAIN_FILE, **reference)
    (tmp / CARD_JSON).write_text(json.dumps(_finite(card), indent=1))
    (tmp / CARD_MD).write_text(render_committee_card(meta["name"], meta["description"], card))
    (tmp / SPLIT_FILE).write_text(json.dumps(ids))
    if dest.exists():
        if not (dest / COMMITTEE_FILE).exists():
            shutil.rmtree(tmp)
            raise ModelLoadError(f"{dest} exists and is not a committee folder: not replaced")
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old)  # a committee folder this function wrote earlier
    else:
        tmp.rename(dest)
    return dest


def install_committee(folder: Path, pretrained: Path | None = None, keep_dir: Path | None = None) -> Path:
    """Copy a committee folder into ``pretrained/<name>`` (:func:`etgnn_core.registry.install_model`:
    written beside, then renamed).  An existing ``pretrained/<name>`` is moved to ``keep_dir``
    (default: beside ``folder``), never deleted."""
    folder = Path(folder)
    return install_model(folder, committee_json(folder)["name"], root=pretrained,
                         keep_dir=Path(keep_dir or folder.parent))


def _finite(obj):
    """JSON-safe copy: NaN/inf -> None."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj

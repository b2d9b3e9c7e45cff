"""Typed training configuration, read from a YAML (or JSON) file for `etgnn train CONFIG`.

Example (see README "Training"):

    name: sio2_bec
    data:
      dataset: perturbed/SiO2        # a name (or list of names) from `etgnn datasets`, or
      # extxyz: my_labelled.xyz      # a labelled extended XYZ file
      limit: null                    # use only the first N structures
    targets: [born_charges, dielectric]
    weights: {born_charges: 1.0, dielectric: 1.0}
    losses: {dielectric: l1}         # l1 (default) or l2 per target
    split: {seed: 0, train: 0.9, val: 0.05, test: 0.05}
    model: {hidden: 128, num_blocks: 4, cutoff: 5.0, max_neighbors: 16}
    optim: {lr: 1.0e-3, batch_size: 32, max_epochs: 100, max_minutes: 20, patience: 20, clip: 10.0}
    output: runs/sio2_bec
"""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import yaml

#: A model name: it becomes a folder name under pretrained/ (`etgnn train --install`), so no path parts.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def slugify(text: str, default: str = "model") -> str:
    """A model name NAME_RE accepts, made from free text (runs of other characters become '_')."""
    out = re.sub(r"[^A-Za-z0-9_-]+", "_", str(text)).strip("_-")[:100]
    return out if NAME_RE.fullmatch(out) else default


#: per-target training losses (TrainConfig.losses)
LOSSES = ("l1", "l2")


class ConfigError(ValueError):
    """A training config with a missing, unknown or ill-typed key (the message names it)."""


@dataclass
class DataConfig:
    dataset: str | list[str] | None = None  # name(s) understood by etgnn_core.data.load_dataset
    extxyz: str | None = None  # labelled extended XYZ file
    root: str | None = None  # data root (default: ETGNN_DATA or ../shared/data)
    limit: int | None = None
    # target -> offset table (etgnn_core.data.offsets): a known part of the target the model does not
    # learn; structures without an entry are left out
    offsets: dict[str, str] = field(default_factory=dict)
    # train and validate only on crystals whose electronic dielectric tensor has no principal value
    # above this (PBE eps_inf of metals and small-gap crystals runs to hundreds; the Materials Project
    # set flags > 20 as such); test and calibration keep every crystal, so the split stays comparable
    max_eps_inf: float | None = None
    # train and validate only on crystals whose elastic label (Voigt 6x6) is positive definite:
    # mechanically unstable phases (the ABO3 P4mm set has 24) are not what a stiffness model should learn
    stable_elastic: bool = False
    # data sets that only ever train: none of their structures enters validation, calibration or test, and
    # one sharing a reduced formula + space group with a test or calibration crystal is left out, so adding
    # one leaves every split part of `dataset` as it was and the test error stays comparable
    train_only: list[str] = field(default_factory=list)
    # train the Materials Project piezo labels of hexagonal cells that a 180° turn about z changes as
    # rotation-ambiguous (Sample.info["c2z_unresolved"]; DFT found such labels both turned and not,
    # etgnn_core.tensors.frames): the loss takes the closest lattice-rotation frame (Sample.info[keys.LOSS_AMBIGUOUS]);
    # which frames a score counts as sign-certain is the scorer's choice (metrics.set_sign_rule), not this option's
    c2z_ambiguous: bool = False
    # Γ force-constant table (benchmarks/eps_ionic_table.py) of crystals labelled with eps0 - eps_inf: an
    # extra loss (weight eps_ionic_weight x the relative error) compares the principal values of
    # eps_ionic = (4π e²/V) Z Φ⁺ Z from the predicted Born charges with the label's, so crystals without
    # Born-charge labels still teach the charges (etgnn_core.data.ionic); needs the born_charges target.
    # eps_ionic_scale multiplies Φ⁺: a universal potential's systematic softening, fitted on training crystals
    eps_ionic: str | None = None
    eps_ionic_weight: float = 0.1
    eps_ionic_scale: float = 1.0


@dataclass
class SplitConfig:
    seed: int = 0  # fixes the test and calibration parts
    train: float = 0.9
    val: float = 0.05
    test: float = 0.05
    calib: float = 0.0  # held out from every committee member, to scale the committee's spread
    # keep every structure of one reduced formula + space group in one part, so test measures transfer
    group: bool = False
    # Angstrom: structures this close (RMS over cell vectors and atoms, same species order) share a part,
    # so duplicates and near-continua of tiny perturbations never straddle train and test (0: off)
    near_duplicates: float = 0.0
    # committee member: draws train/validation anew from what test and calib leave (None: one model)
    member: int | None = None
    # a model (name or folder) whose train and validation structures (its split.json ids) stay out of
    # test and calib: fine-tuning from it then still reports error on crystals it never saw
    exclude_from_test: str | None = None
    # with exclude_from_test: draw validation from those unseen groups too, so that early stopping and
    # the best checkpoint follow the error on new crystals, not the recall of the parent's training set
    unseen_val: bool = False
    # "k/K": K-fold cross-validation over what test leaves; fold k is the calib part (compare_members
    # --folds pools the K folds), the calib fraction must be 0; `etgnn train CONFIG --fold k/K`
    fold: str | None = None

    def fold_pair(self) -> tuple[int, int] | None:
        """``fold`` as (k, K), or None."""
        if self.fold is None:
            return None
        k, sep, n = str(self.fold).partition("/")
        if not (sep and k.strip().isdigit() and n.strip().isdigit()) or not 0 <= int(k) < int(n) or int(n) < 2:
            raise ConfigError(f"split.fold must be 'k/K' with K >= 2 and 0 <= k < K (e.g. '0/5'), got {self.fold!r}")
        return int(k), int(n)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 100
    max_minutes: float | None = None  # wall-clock budget; the cosine schedule follows it
    patience: int = 30  # early stopping on validation loss (epochs)
    clip: float = 10.0  # gradient-norm clipping
    weight_decay: float = 0.0
    # True: AdamW's decoupled decay (weights shrink by lr * weight_decay per step, whatever the gradient's
    # size), the regulariser for a network that fits its training set far below its validation error;
    # False: Adam's L2 term, which adaptive steps weaken where gradients are large
    decoupled_weight_decay: bool = False
    val_every: int = 1  # epochs between validations
    # linear learning-rate warm-up over this fraction of the budget; None: 0.05 when fine-tuning (a fresh
    # Adam state takes full-size steps at once and throws a converged model off), else 0
    warmup: float | None = None
    # exponential moving average of the weights (e.g. 0.999 per step, warmed up as min(decay, (1+n)/(10+n))
    # so that a short run still moves); validation, checkpoints and the saved model then use the average,
    # which generalises better on small sets.  None: no averaging
    ema_decay: float | None = None


RESET_PARTS = ("embedding", "bias")  # what finetune_reset_elements may start afresh


@dataclass
class TrainConfig:
    name: str
    targets: list[str]
    data: DataConfig = field(default_factory=DataConfig)
    weights: dict[str, float] = field(default_factory=dict)
    # per-target loss, "l1" (default: mean absolute error) or "l2" (mean squared error).  L1 lets a
    # few crystals the network has not learned stay far off (each pulls as hard as one nearly right);
    # L2 pulls in proportion to the error, e.g. for eps_inf that a parent model learned wrong
    losses: dict[str, str] = field(default_factory=dict)
    # per rank-4 target: weight of an extra L1 loss on its Voigt bulk and shear moduli; per rank-3 one
    # (piezoelectric), on its norm ||e||.  They are rotation invariants (an ambiguous label frame cannot
    # change them) and what users read off C_ijkl and e_ijk
    moduli_weights: dict[str, float] = field(default_factory=dict)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: dict = field(default_factory=dict)  # ModelConfig fields other than targets
    # per-target TensorSpec overrides, e.g. {dipole: {unit: e*bohr}, born_charges: {triplets: false}}
    tensor_options: dict[str, dict] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # pretrained model name or folder; or a committee's training config (.yaml): then each member
    # (``--member K``) continues member K of that committee, so a committee can be trained in stages;
    # or a list of names / folders: member K fine-tunes entry K mod n, so that members inherit from
    # parents trained apart and their errors are less alike than those of one parent's fine-tunes
    finetune_from: str | list[str] | None = None
    # elements (symbols) whose per-element parameters the fine-tune starts afresh: the two element
    # embeddings (re-drawn) and the on-site species bias (re-fitted to the new labels).  What a parent
    # learned about an element from data that disagree with the new labels (phonon_becs near-metals
    # where the Materials Project set has magnetic insulators) is then not inherited; the rest is.
    finetune_reset_elements: list[str] = field(default_factory=list)
    # which of their parameters: "embedding" (both element embeddings) and/or "bias" (on-site species bias)
    finetune_reset_parts: list[str] = field(default_factory=lambda: list(RESET_PARTS))
    output: str = "runs/model"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    description: str = ""

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> TrainConfig:
        return _build(cls, d, where)

    @classmethod
    def from_file(cls, path) -> TrainConfig:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: file not found")
        try:
            d = yaml.safe_load(path.read_text())  # JSON is YAML too
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a mapping of keys at the top level")
        return cls.from_dict(d, str(path))

    @property
    def l2_targets(self) -> frozenset[str]:
        """Targets trained with the squared error (``losses``); every other one with L1."""
        return frozenset(k for k, v in self.losses.items() if v == "l2")

    def for_member(self, member: int) -> TrainConfig:
        """Committee member ``member``: its own train/validation draw, weight seed and output folder."""
        from dataclasses import replace

        if member < 0:
            raise ConfigError(f"committee member must be >= 0, got {member}")
        parent = self.finetune_from
        if isinstance(parent, list):
            parent = self.listed_parent(member)
        elif self.committee_parent:  # the same member of the earlier stage, wherever that config writes it
            earlier = TrainConfig.from_file(parent)
            if earlier.split != self.split:  # else member K's first stage may have trained on this calib/test
                raise ConfigError(f"{self.name}: split {asdict(self.split)} differs from that of {parent} "
                                  f"({asdict(earlier.split)}); a committee continued in stages keeps one split")
            parent = str(Path(earlier.for_member(member).output) / "model")
        return replace(self, split=replace(self.split, member=member), seed=self.seed + member,
                       output=str(Path(self.output) / f"member{member}"), finetune_from=parent)

    def for_fold(self, fold: str) -> TrainConfig:
        """Cross-validation fold ``fold`` ("k/K"): that fold is the calib part, calib 0 (its share goes to train),
        output OUTPUT/foldk."""
        from dataclasses import replace

        split = replace(self.split, fold=fold, calib=0.0, train=self.split.train + self.split.calib)
        k, _ = split.fold_pair()
        return replace(self, split=split, output=str(Path(self.output) / f"fold{k}"))

    def listed_parent(self, member: int) -> str | None:
        """Member ``member``'s parent when ``finetune_from`` is a list (entry ``member`` mod n); else None."""
        f = self.finetune_from
        return f[member % len(f)] if isinstance(f, list) else None

    @property
    def committee_parent(self) -> str | None:
        """``finetune_from`` when it names a committee's training config (each member continues its own)."""
        f = self.finetune_from
        return f if isinstance(f, str) and f.endswith((".yaml", ".yml")) else None

    def check_trainable(self) -> None:
        """A committee parent is resolved per member: training without ``--member`` has no weights to start from."""
        if self.committee_parent:
            raise ConfigError(f"{self.name}: finetune_from {self.committee_parent} is a committee's training config; "
                              "train with --member K (member K continues member K of it)")
        if isinstance(self.finetune_from, list):
            raise ConfigError(f"{self.name}: finetune_from lists {len(self.finetune_from)} parents; train with "
                              f"--member K (member K fine-tunes parent K mod {len(self.finetune_from)})")

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


_NESTED = {"data": DataConfig, "split": SplitConfig, "optim": OptimConfig}


def _yaml_float(v, annotation):
    """``1e-3`` in YAML (no dot) is read as the string '1e-3': for a float field that is meant as a number."""
    if isinstance(v, str) and "float" in str(annotation):
        try:
            return float(v)
        except ValueError:
            return v  # left as written: the checks below name the key
    return v


_NUMBER_TYPES = {"int": False, "float": False, "int | None": True, "float | None": True}  # -> None allowed


def _check_numbers(obj, where: str) -> None:
    """Every int / float field of a nested section holds a number (or None where allowed)."""
    for f in fields(obj):
        v, t = getattr(obj, f.name), str(f.type)
        if t in _NUMBER_TYPES and not (v is None and _NUMBER_TYPES[t]) and (
                isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ConfigError(f"{where}: {f.name} must be a number, got {v!r}")


def _build(cls, d: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    kwargs = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        v = _yaml_float(d[f.name], f.type)
        if f.name in _NESTED and cls is TrainConfig:
            if not isinstance(v, dict):
                raise ConfigError(f"{where}: '{f.name}' must be a mapping")
            v = _build(_NESTED[f.name], v, f"{where}: {f.name}")
        kwargs[f.name] = v
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if cls in _NESTED.values():
        _check_numbers(obj, where)
    if cls is TrainConfig:
        _check(obj, where)
    return obj


def _check(c: TrainConfig, where: str) -> None:
    from etgnn_core.tensors.specs import DEFAULT_SPECS

    if not isinstance(c.name, str) or not NAME_RE.fullmatch(c.name):
        raise ConfigError(f"{where}: name {c.name!r} must be a plain name of letters, digits, '_' and '-' "
                          "(at most 100 characters, starting with a letter or digit): it names the model folder")
    if not c.targets:
        raise ConfigError(f"{where}: 'targets' is empty; name at least one of {list(DEFAULT_SPECS)}")
    for t in list(c.targets) + list(c.weights) + list(c.tensor_options) + list(c.losses) + list(c.moduli_weights):
        if t not in DEFAULT_SPECS:
            raise ConfigError(f"{where}: unknown target {t!r}; known: {list(DEFAULT_SPECS)}")
    for t, kind in c.losses.items():
        if kind not in LOSSES:
            raise ConfigError(f"{where}: losses.{t} is {kind!r}; known: {list(LOSSES)}")
    for t, w in c.moduli_weights.items():
        if DEFAULT_SPECS[t].rank not in (3, 4) or DEFAULT_SPECS[t].per_atom:
            raise ConfigError(f"{where}: moduli_weights.{t}: moduli (rank 4) or the norm (rank 3) exist only for "
                              "a per-structure rank-3 or rank-4 tensor (piezoelectric, elastic)")
        if not isinstance(w, (int, float)) or w < 0:
            raise ConfigError(f"{where}: moduli_weights.{t} is {w!r}; expected a number >= 0")
    if not (c.data.dataset or c.data.extxyz):
        raise ConfigError(f"{where}: data needs 'dataset' or 'extxyz'")
    _check_data_extras(c, where)
    fr = (c.split.train, c.split.val, c.split.calib, c.split.test)
    if min(fr) < 0 or abs(sum(fr) - 1) > 1e-6 or c.split.train <= 0:
        raise ConfigError(f"{where}: split fractions train, val, calib, test {fr} must be non-negative, "
                          "train > 0, and sum to 1")
    if c.split.fold_pair() is not None and (c.split.calib or not c.split.group or c.split.exclude_from_test):
        raise ConfigError(f"{where}: split.fold needs split.group: true and calib: 0 (the fold is the calib part), "
                          "and no exclude_from_test (a fold would hold crystals the parent saw)")
    if c.split.member is not None and (not isinstance(c.split.member, int) or c.split.member < 0):
        raise ConfigError(f"{where}: split.member must be a non-negative integer, got {c.split.member!r}")
    for k, v in (("lr", c.optim.lr), ("batch_size", c.optim.batch_size), ("max_epochs", c.optim.max_epochs)):
        if not isinstance(v, (int, float)) or v <= 0:
            raise ConfigError(f"{where}: optim.{k} must be a positive number, got {v!r}")
    _check_model_section(c, where)
    _check_parents(c, where)
    _check_reset_elements(c, where)
    d = c.optim.ema_decay
    if d is not None and not (isinstance(d, (int, float)) and 0 < d < 1):
        raise ConfigError(f"{where}: optim.ema_decay must lie strictly between 0 and 1 (e.g. 0.999), got {d!r}")


def _check_data_extras(c: TrainConfig, where: str) -> None:
    d = c.data
    if not isinstance(d.stable_elastic, bool):
        raise ConfigError(f"{where}: data.stable_elastic must be true or false, got {d.stable_elastic!r}")
    if not isinstance(d.c2z_ambiguous, bool):
        raise ConfigError(f"{where}: data.c2z_ambiguous must be true or false, got {d.c2z_ambiguous!r}")
    if d.eps_ionic is not None and (not isinstance(d.eps_ionic, str) or "born_charges" not in c.targets):
        raise ConfigError(f"{where}: data.eps_ionic (a force-constant table path) needs the born_charges target, "
                          f"got {d.eps_ionic!r} with targets {c.targets}")
    if d.eps_ionic_weight < 0 or d.eps_ionic_scale <= 0:
        raise ConfigError(f"{where}: data.eps_ionic_weight must be >= 0 and data.eps_ionic_scale > 0, got "
                          f"{d.eps_ionic_weight!r} and {d.eps_ionic_scale!r}")
    extra = d.train_only
    if not isinstance(extra, list) or not all(isinstance(x, str) and x for x in extra):
        raise ConfigError(f"{where}: data.train_only must be a list of data set names, got {extra!r}")
    main = [d.dataset] if isinstance(d.dataset, str) else list(d.dataset or [])
    if extra and not main:
        raise ConfigError(f"{where}: data.train_only adds to 'dataset'; name the main data set(s) there")
    twice = sorted(set(extra) & set(main))
    if twice:
        raise ConfigError(f"{where}: data set(s) {twice} are in both data.dataset and data.train_only")


def _check_parents(c: TrainConfig, where: str) -> None:
    f = c.finetune_from
    if f is None or isinstance(f, str) and f:
        return
    if not isinstance(f, list) or not f or not all(isinstance(x, str) and x for x in f):
        raise ConfigError(f"{where}: finetune_from must be a model name or folder, a committee config (.yaml) "
                          f"or a non-empty list of names / folders, got {f!r}")
    stages = [x for x in f if x.endswith((".yaml", ".yml"))]
    if stages:
        raise ConfigError(f"{where}: finetune_from: a list names parent models, not committee configs: {stages}")


def _check_reset_elements(c: TrainConfig, where: str) -> None:
    from ase.data import atomic_numbers

    if c.finetune_reset_elements and not c.finetune_from:
        raise ConfigError(f"{where}: finetune_reset_elements needs finetune_from (a fresh model has nothing to reset)")
    if not isinstance(c.finetune_reset_elements, list):
        raise ConfigError(f"{where}: finetune_reset_elements must be a list of element symbols, e.g. [Cr, Mn]")
    bad = [e for e in c.finetune_reset_elements if not isinstance(e, str) or e not in atomic_numbers or e == "X"]
    if bad:
        raise ConfigError(f"{where}: finetune_reset_elements: not element symbols: {bad}")
    parts = c.finetune_reset_parts
    if not isinstance(parts, list) or not parts or set(parts) - set(RESET_PARTS):
        raise ConfigError(f"{where}: finetune_reset_parts is {parts!r}; a non-empty list of {list(RESET_PARTS)}")


def _check_model_section(c: TrainConfig, where: str) -> None:
    """The model section's keys and values, checked as ModelConfig would (file and key named)."""
    from dataclasses import fields as dc_fields

    from etgnn_core.model.config import ModelConfig, check_fields

    if not isinstance(c.model, dict):
        raise ConfigError(f"{where}: 'model' must be a mapping")
    known = {f.name for f in dc_fields(ModelConfig)} - {"targets"}
    unknown = sorted(set(c.model) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown model key(s) {unknown}; known: {sorted(known)}")
    probe = ModelConfig.__new__(ModelConfig)  # defaults + the section, without building specs
    for f in dc_fields(ModelConfig):
        if f.name != "targets":
            setattr(probe, f.name, c.model.get(f.name, f.default if f.default_factory is MISSING  # type: ignore
                                                       else f.default_factory()))
    try:
        check_fields(probe)
    except ValueError as exc:
        raise ConfigError(f"{where}: model {exc}") from exc
    for name in c.model.get("gated", []):  # a learned multiple of a known part needs that part
        if name not in c.targets or name not in c.data.offsets:
            raise ConfigError(f"{where}: model.gated names {name!r}, which needs a target with a known part "
                              f"(data.offsets: {sorted(c.data.offsets)})")

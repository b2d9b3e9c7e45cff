"""`train(config)`: data -> split -> normalisation -> Lightning fit -> test metrics -> model folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader

from etgnn_core import keys
from etgnn_core.data.offsets import write_known_parts
from etgnn_core.data.sample import is_train_only
from etgnn_core.device import tune_cpu_allocator
from etgnn_core.model.etgnn import ETGNN, ModelConfig
from etgnn_core.registry import find_model, load_model_folder, load_state_strict, save_model
from etgnn_core.tensors.algebra import principal_values
from etgnn_core.tensors.specs import spec_for
from etgnn_core.train.batching import LabelledGraph, collate_labelled, label_graph
from etgnn_core.train.config import ConfigError, TrainConfig
from etgnn_core.train.module import ETGNNModule, target_errors
from etgnn_core.train.normalize import Baseline, apply_normalization, average_degree, refit_species_bias
from etgnn_core.train.recipe import write_recipe_and_history

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: ETGNN
    model_dir: Path
    # per target: mae, baseline_mae, unit, split (test; val for a committee member or without a test split)
    metrics: dict[str, dict]
    split: dict[str, list[str]]
    minutes: float
    epochs: int
    card: dict = field(default_factory=dict)


def load_samples(config: TrainConfig) -> tuple[list, str]:
    """Samples named by the config's data section, and a one-line description of the source."""
    from etgnn_core.data import load_dataset, load_labelled_extxyz
    from etgnn_core.data.offsets import attach_offsets, multiple_key, read_offsets, table_meta

    d = config.data
    samples, described = [], []
    if d.dataset:
        for name in [d.dataset] if isinstance(d.dataset, str) else d.dataset:
            part, info = load_dataset(name, root=d.root, limit=d.limit)
            samples += part
            described.append(f"{info.name} ({len(part)} structures): {info.description}")
    else:
        samples = load_labelled_extxyz(d.extxyz, name=Path(d.extxyz).name)
        samples = samples[: d.limit] if d.limit else samples
        described.append(f"labelled extended XYZ {d.extxyz}")
    for name in d.train_only:  # after the main sets, flagged: split_samples keeps them in training only
        part, info = load_dataset(name, root=d.root, limit=d.limit)
        for smp in part:
            smp.info[keys.TRAIN_ONLY] = True
        samples += part
        described.append(f"{info.name} ({len(part)} structures, training only): {info.description}")
    if d.c2z_ambiguous:
        turned = [smp for smp in samples if smp.info.get("c2z_unresolved")]
        for smp in turned:
            smp.info[keys.LOSS_AMBIGUOUS] = True
        described.append(f"{len(turned)} labels open to a 180° turn about z trained as rotation-ambiguous")
    for target, path in d.offsets.items():
        meta = table_meta(path)
        scale = multiple_key(meta.get("scale", 1.0), meta.get("point_group_scales"), meta.get("odd_part_scales"))
        samples, left = attach_offsets(samples, target, read_offsets(path), scale)
        described.append(f"{target} offsets from {path} ({left} structures without one left out)")
    if d.eps_ionic:
        from etgnn_core.data.ionic import attach_eps_ionic

        n = attach_eps_ionic(samples, d.eps_ionic, scale=d.eps_ionic_scale)
        described.append(f"eps0 - eps_inf of {n} crystals as an indirect Born-charge label (Γ force constants "
                         f"from {d.eps_ionic} x {d.eps_ionic_scale:g}, loss weight {d.eps_ionic_weight:g})")
    return samples, "; ".join(described)


def learnable_split(split: dict, samples: list, max_eps_inf: float | None, stable_elastic: bool = False) -> dict:
    """``split`` with the training parts cleared of crystals whose eps_inf label exceeds ``max_eps_inf``
    and, with ``stable_elastic``, of those whose elastic label is not positive definite.

    Test and calib keep them: they are scored as before, on the same crystals.
    """
    if max_eps_inf is None and not stable_elastic:
        return split

    def ok(i) -> bool:
        t = samples[i].targets
        eps, c = t.get(keys.DIELECTRIC), t.get(keys.ELASTIC)
        if max_eps_inf is not None and eps is not None and float(principal_values(eps)[-1]) > max_eps_inf:
            return False  # eps [3, 3], shape checked
        return not (stable_elastic and c is not None and not is_positive_definite(c))

    out = dict(split)
    for part in (p for p in ("train", "val", keys.TRAIN_ONLY) if p in split):
        out[part] = np.asarray([i for i in split[part] if ok(i)], dtype=np.int64)
        log.info("%s: %d crystals left out (eps_inf above %s, unstable elastic tensor: %s)", part,
                 len(split[part]) - len(out[part]), max_eps_inf, stable_elastic)
    return out


def is_positive_definite(c) -> bool:
    """C_ijkl [3, 3, 3, 3] (GPa) is mechanically stable: its Voigt 6x6 form is positive definite."""
    from etgnn_core.tensors.algebra import full_rank4_to_voigt, softest_voigt_eigenvalue

    return softest_voigt_eigenvalue(full_rank4_to_voigt(np.asarray(c, dtype=np.float64))) > 0  # Voigt [6, 6]


def infer_species(config: TrainConfig, samples: list) -> TrainConfig:
    """Per-atom targets labelled on some species only (29Si NMR on Si) get ``TensorSpec.species``.

    The model then predicts them only for those atoms (zeros and a False mask elsewhere) instead of
    extrapolating to atoms it never saw labelled.  A species set in ``tensor_options`` is kept.
    """
    opts = {k: dict(v) for k, v in config.tensor_options.items()}
    for name in config.targets:
        spec = spec_for(name, **opts.get(name, {}))
        if not spec.per_atom or spec.asr or spec.species:
            continue
        labelled, present = set(), set()
        for s in samples:
            if name in s.targets:
                z = np.asarray(s.atoms.numbers)
                labelled |= set(z[np.asarray(s.masks.get(name, np.ones(len(z), bool)), dtype=bool)].tolist())
                present |= set(z.tolist())
        if labelled and labelled < present:
            opts.setdefault(name, {})["species"] = sorted(labelled)
            log.info("%s is labelled on atoms of Z = %s only: the model predicts it for those", name, sorted(labelled))
    return replace(config, tensor_options=opts)


def build_model(config: TrainConfig) -> tuple[ETGNN, bool]:
    """A fresh model, or a pretrained one to fine-tune.  Returns (model, keep_normalization)."""
    specs = [spec_for(t, **config.tensor_options.get(t, {})) for t in config.targets]
    if not config.finetune_from:
        return ETGNN(ModelConfig(targets=specs, **config.model)), False
    base, _ = load_model_folder(config.finetune_from)
    finetune_model_section(base.config, config)
    if [t.name for t in base.config.targets] == config.targets:
        return base.train(), True  # same heads: keep its normalisation, continue from its weights
    cfg = ModelConfig.from_dict({**base.config.to_dict(), "targets": [s.to_dict() for s in specs]})
    model = ETGNN(cfg)  # new heads: a fresh model in train mode (the loaded base is in eval mode)
    own = model.state_dict()
    shared = {k: v for k, v in base.state_dict().items() if k in own and own[k].shape == v.shape
              and not k.startswith(("edge_head", "triplet_head", "atom_output.lin.", "species_bias", "scales"))}
    model.load_state_dict({**own, **shared})
    log.info("fine-tuning: copied %d backbone tensors from %s", len(shared), config.finetune_from)
    return model, False


def finetune_model_section(parent, config: TrainConfig) -> None:
    """A fine-tune keeps its parent's architecture: a ``model`` key of the config must repeat the parent's
    value, except ``max_neighbors``, which only caps the neighbour list (no weight depends on it) and is
    set on the parent's config (a larger cap lets the network see farther atoms it can learn to use)."""
    for key, value in config.model.items():
        if key == "max_neighbors":
            if value != parent.max_neighbors:
                log.info("fine-tuning: neighbour cap %s (the parent's was %s)", value, parent.max_neighbors)
                parent.max_neighbors = value
        elif getattr(parent, key) != value:
            raise ConfigError(f"{config.name}: model.{key} is {value!r} but {config.finetune_from} has "
                              f"{getattr(parent, key)!r}; a fine-tune keeps its parent's architecture "
                              "(only max_neighbors may change)")


def reset_elements(model: ETGNN, symbols: list[str], train: list[LabelledGraph],
                   parts: list[str] = ("embedding", "bias")) -> None:
    """Start the per-element parameters of ``symbols`` afresh (TrainConfig.finetune_reset_elements):
    ``embedding``: their element-embedding rows re-drawn as at construction (uniform +-sqrt(3));
    ``bias``: their on-site species bias re-fitted to the training labels as a fresh model's is
    (normalize.apply_normalization).  Adam moves a weight by about lr per step, so a bias the parent
    drove far off (multi_element_bec: 109 for Cr's eps_inf, normalised) cannot come back in a fine-tune."""
    if not symbols:
        return
    from ase.data import atomic_numbers

    rows = [atomic_numbers[s] for s in symbols]
    if "embedding" in parts:
        with torch.no_grad():
            for name, module in model.named_modules():
                if isinstance(module, torch.nn.Embedding) and name != "species_bias":
                    module.weight[rows] = torch.empty(len(rows), module.embedding_dim).uniform_(-3**0.5, 3**0.5)
    if "bias" in parts:
        refit_species_bias(model, train, rows)
    log.info("fine-tuning: %s of %s start afresh", " and ".join(parts), ", ".join(symbols))


def warm_ema_avg_fn(decay: float):
    """Exponential moving average whose decay warms up: min(decay, (1 + n) / (10 + n)) after n updates.

    A plain 0.999 average of a run of a few hundred steps stays at the starting weights (0.999^500 =
    0.61): short fine-tunes and small data sets then validate and ship the initial model.  The
    warm-up (as TensorFlow's ExponentialMovingAverage with num_updates) follows the weights early on.
    """

    def ema(avg: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = ((1.0 + n) / (10.0 + n)).clamp(max=decay).to(avg.dtype)  # a tensor: no device sync per step
        return avg * d + current * (1.0 - d)

    return ema


class WarmEMA(EMAWeightAveraging):
    """Lightning's EMA callback with :func:`warm_ema_avg_fn`."""

    def __init__(self, decay: float):
        super().__init__(decay=decay)
        self._kwargs["avg_fn"] = warm_ema_avg_fn(decay)


def split_samples(samples: list, config: TrainConfig) -> dict[str, np.ndarray]:
    """Index arrays ``train``, ``val``, ``test`` (plus ``calib`` for grouped / committee splits).

    A plain split (no grouping, no calib part, no member) is the seeded shuffle of
    :func:`~etgnn_core.data.split_indices`, so older configs reproduce their splits.
    """
    from etgnn_core.data import split_indices
    from etgnn_core.data.datasets import structure_group
    from etgnn_core.data.split import grouped_split, merge_groups, near_duplicate_groups

    s = config.split
    main = np.array([i for i, smp in enumerate(samples) if not is_train_only(smp)], dtype=np.int64)
    if not s.group and not s.calib and s.member is None and not s.near_duplicates:
        out = {k: main[v] for k, v in split_indices(len(main), seed=s.seed, fractions=(s.train, s.val, s.test)).items()}
        return _with_train_only(samples, out, main)
    groups = ([smp.info.get("group") or structure_group(smp.atoms) for smp in samples] if s.group
              else [str(i) for i in range(len(samples))])
    if s.near_duplicates:
        groups = merge_groups(groups, near_duplicate_groups([smp.atoms for smp in samples], s.near_duplicates))
    seen = None
    if s.exclude_from_test:
        ids = _trained_ids(s.exclude_from_test)
        seen = np.array([str(smp.id) in ids for smp in samples])
    sub = grouped_split([groups[i] for i in main], seed=s.seed, fractions=(s.train, s.val, s.calib, s.test),
                        member=s.member, seen=None if seen is None else seen[main], unseen_val=s.unseen_val,
                        fold=s.fold_pair())
    out = {k: main[v] for k, v in sub.items()}  # the main sets split exactly as without the extra ones
    return _with_train_only(samples, out, main, groups if s.group and not s.near_duplicates else None)


def _with_train_only(samples: list, split: dict, main: np.ndarray, groups: list | None = None) -> dict:
    """``split`` plus part ``train_only``: the train_only structures whose reduced formula + space group
    no test or calib crystal has (when there are any).  ``groups``: those of every sample, if known."""
    if len(main) == len(samples):
        return split
    from etgnn_core.data.datasets import structure_group

    group = (groups.__getitem__ if groups is not None else
             lambda i: samples[i].info.get("group") or structure_group(samples[i].atoms))
    held = {group(i) for part in ("test", "calib") for i in split.get(part, [])}
    extra = [i for i, smp in enumerate(samples) if is_train_only(smp)]
    kept = np.array([i for i in extra if group(i) not in held], dtype=np.int64)
    log.info("train_only: %d structures, %d left out (formula + space group of a test or calib crystal)",
             len(extra), len(extra) - len(kept))
    return {**split, keys.TRAIN_ONLY: kept}


def _trained_ids(name_or_path) -> set[str]:
    """Ids of the structures a model folder was trained or validated on (its split.json)."""
    from etgnn_core.registry import SPLIT_FILE

    path = find_model(name_or_path) / SPLIT_FILE
    if not path.exists():
        raise ValueError(f"{path}: missing; split.exclude_from_test needs the model's split")
    split = json.loads(path.read_text())
    return {str(i) for part in ("train", "val") for i in split.get(part, [])}


def evaluate(model: ETGNN, items: list[LabelledGraph], batch_size: int = 32) -> dict[str, float]:
    """MAE per target (label units) over the labelled components of ``items``."""
    sums = {t.name: 0.0 for t in model.config.targets}
    counts = dict.fromkeys(sums, 0)
    dev = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            batch = collate_labelled(items[start : start + batch_size]).to(dev)
            for name, (total, n) in target_errors(model, batch).items():
                sums[name] += float(total)
                counts[name] += int(n)
    return {k: sums[k] / counts[k] if counts[k] else float("nan") for k in sums}


def baseline_mae(train: list[LabelledGraph], test: list[LabelledGraph], model: ETGNN) -> dict[str, float]:
    out = {}
    for spec in model.config.targets:
        base = Baseline(train, spec)
        errs, n = 0.0, 0
        for it in test:
            mask = it.masks[spec.name].numpy()
            diff = (base.predict(it) - it.targets[spec.name].numpy())[mask]
            errs, n = errs + float(np.abs(diff).sum()), n + diff.size
        out[spec.name] = errs / n if n else float("nan")
    return out


def train(config: TrainConfig, samples: list | None = None, callbacks: list | None = None,
          progress_bar: bool = True, resume: bool = True, data_description: str | None = None,
          force: bool = False) -> TrainResult:
    """Train (or fine-tune) a model as the config says and write its model folder to ``output/model``.

    ``resume``: continue from ``output/checkpoints/last.ckpt`` when its run.json matches the config;
    ``force``: a finished run may be trained again (continued, with ``resume``) and its model replaced.
    """
    from etgnn_core.data import validate_samples

    config.check_trainable()
    L.seed_everything(config.seed, workers=True, verbose=False)
    if config.threads:
        torch.set_num_threads(config.threads)
    tune_cpu_allocator()  # fewer page faults in every step on the CPU
    if samples is None:
        samples, data_description = load_samples(config)
    d = config.data
    several_sets = (isinstance(d.dataset, list) and len(d.dataset) > 1) or bool(d.train_only)
    validate_samples(samples, config.targets, allow_missing=several_sets)  # clear DataError before training
    config = infer_species(config, samples)
    model, keep_norm = build_model(config)
    split = learnable_split(split_samples(samples, config), samples, d.max_eps_inf, d.stable_elastic)
    if d.max_eps_inf is not None:
        data_description = (f"{data_description or 'data'}; trained and validated only on crystals whose eps_inf has "
                            f"no principal value above {d.max_eps_inf:g} (test and calib keep every crystal)")
    if d.stable_elastic:
        data_description = (f"{data_description or 'data'}; trained and validated only on crystals whose elastic "
                            "tensor is positive definite (test and calib keep every crystal)")
    c = model.config
    items = [label_graph(s, c.targets, c.cutoff, c.max_neighbors) for s in samples]
    parts = {k: [items[i] for i in idx] for k, idx in split.items()}
    # what the network learns from: the training part plus the train_only sets (baselines use the former)
    fit = parts["train"] + parts.get(keys.TRAIN_ONLY, [])
    if not fit:
        raise ValueError("the training split is empty: add structures or change the split fractions")
    if not keep_norm:
        c.avg_degree = average_degree(fit)
        scales = apply_normalization(model, fit)
        log.info("target scales: %s", scales)
    reset_elements(model, config.finetune_reset_elements, fit, config.finetune_reset_parts)
    c.elements = sorted(set(c.elements) | {int(z) for it in fit for z in it.graph.atomic_numbers})

    out = Path(config.output)
    ckpt_dir = out / "checkpoints"
    result = _fit(config, model, {**parts, "train": fit}, ckpt_dir, out, callbacks or [], progress_bar, resume, force)
    epochs, minutes = result

    # A committee member (split with a calib part) reports its validation split: the test split is scored
    # once, on the committee mean when it is assembled, so no member is chosen by its test error.
    member = "calib" in split and bool(parts["val"])
    eval_part = "test" if parts["test"] and not member else "val"
    mae = evaluate(model, parts[eval_part])
    base = baseline_mae(parts["train"], parts[eval_part], model)
    metrics = {s.name: {"mae": mae[s.name], "baseline_mae": base[s.name], "unit": s.unit, "split": eval_part}
               for s in c.targets}
    ids = {k: [str(getattr(samples[i], "id", i)) for i in idx] for k, idx in split.items()}
    card = {
        "data": {"source": data_description or "user samples", "structures": len(samples),
                 "units": {s.name: s.unit for s in c.targets}},
        "split": {"seed": config.split.seed, "fractions": [config.split.train, config.split.val, config.split.test],
                  **({"calib_fraction": config.split.calib, "grouped": config.split.group,
                      "member": config.split.member} if "calib" in split else {}),
                  **{k: len(v) for k, v in split.items()}},
        "training": {"epochs": epochs, "minutes": round(minutes, 2), "hardware": _hardware(),
                     "lr": config.optim.lr, "batch_size": config.optim.batch_size, "seed": config.seed,
                     "ema_decay": config.optim.ema_decay,
                     "finetuned_from": config.finetune_from, "torch": torch.__version__},
        "metrics": metrics,
    }
    if parts["val"]:  # for choosing between rounds without looking at the test split
        val = mae if eval_part == "val" else evaluate(model, parts["val"])
        card["val_metrics"] = {k: {"mae": v} for k, v in val.items()}
    model_dir = save_model(model.cpu(), out / "model", name=config.name, description=config.description,
                           card=card, split=ids)
    card = write_recipe_and_history(model_dir, config, card)  # train.yaml; the card's settings and history
    write_known_parts(model_dir, config.data.offsets)  # a part the network did not learn: added when predicting
    mark_finished(out)
    return TrainResult(model, model_dir, metrics, ids, minutes, epochs, card)


def _fit(config, model, parts, ckpt_dir, out, callbacks, progress_bar, resume, force=False):
    o = config.optim
    warmup = o.warmup if o.warmup is not None else (0.05 if config.finetune_from else 0.0)
    module = ETGNNModule(model, config.weights, o.lr, o.max_epochs, o.max_minutes, o.weight_decay, warmup,
                          config.l2_targets, config.moduli_weights,
                          config.data.eps_ionic_weight if config.data.eps_ionic else 0.0, o.decoupled_weight_decay)
    loader = lambda items, shuffle: DataLoader(items, batch_size=o.batch_size, shuffle=shuffle,  # noqa: E731
                                               collate_fn=collate_labelled, num_workers=0)
    has_val = bool(parts["val"])
    monitor = "val_loss" if has_val else "train_loss"
    last = ckpt_dir / LAST_CKPT
    resume_from = prepare_run(config, out, resume, force)
    # best.ckpt only when the monitored loss improves; last.ckpt every epoch and on SIGINT / SIGTERM
    # (ModelCheckpoint's save_last with save_top_k=1 wrote it only on improvement, and resumed runs lost epochs)
    ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=monitor, save_last=False, save_top_k=1)
    stopper = _LastCheckpoint(last)
    cbs = [ckpt, stopper, *callbacks]
    if o.ema_decay:  # validated and checkpointed with the averaged weights (Lightning swaps them in)
        cbs.append(WarmEMA(o.ema_decay))
    if o.patience:
        cbs.append(EarlyStopping(monitor=monitor, patience=o.patience))
    trainer = L.Trainer(
        max_epochs=o.max_epochs,
        max_time={"minutes": o.max_minutes} if o.max_minutes else None,
        accelerator="gpu" if _wants_cuda(config.device) else "cpu",
        devices="auto" if _wants_cuda(config.device) else 1,
        gradient_clip_val=o.clip,
        callbacks=cbs,
        logger=CSVLogger(str(out), name="logs"),
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        check_val_every_n_epoch=o.val_every,
        deterministic=False,
        num_sanity_val_steps=0,
    )
    with _stop_on_signals(stopper):
        try:
            trainer.fit(module, loader(parts["train"], True), loader(parts["val"], False) if has_val else None,
                        ckpt_path=str(resume_from) if resume_from else None)
        except (_Stop, SIGTERMException) as exc:
            raise TrainingInterrupted(
                f"{stopper.signal_name or 'a signal'} during epoch {trainer.current_epoch + 1}; "
                f"last checkpoint {last}: rerun the same command to resume") from exc
    best = ckpt.best_model_path or (str(last) if last.exists() else "")
    if best:
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        load_state_strict(model, {k.removeprefix("model."): v for k, v in state.items()}, best)
    return trainer.current_epoch, module.elapsed_seconds() / 60  # all runs a resume chained, not only this one


# ------------------------------------------------------------------------------- resume and run state
LAST_CKPT = "last.ckpt"
RUN_FILE = "run.json"  # in the output folder: what was trained (fingerprint) and whether it finished
#: Config sections a checkpoint belongs to: resuming with any of them changed would mix two runs.
FINGERPRINT_KEYS = ("data", "split", "model", "targets", "tensor_options", "finetune_from", "finetune_reset_elements",
                    "finetune_reset_parts")


class RunStateError(ValueError):
    """A run that cannot go on as asked: finished already, or its checkpoint belongs to another config."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT / SIGTERM stopped training after the last checkpoint was written (the message says where)."""


class _Stop(Exception):
    """Raised inside Lightning to end fit() at once after a signal (Lightning turns KeyboardInterrupt into exit 1)."""


def run_fingerprint(config: TrainConfig) -> dict:
    """The config sections of :data:`FINGERPRINT_KEYS` (JSON-normalised) and their sha256."""
    d = json.loads(json.dumps(config.to_dict(), sort_keys=True, default=str))
    sections = {k: d.get(k) for k in FINGERPRINT_KEYS}
    digest = hashlib.sha256(json.dumps(sections, sort_keys=True).encode()).hexdigest()
    return {"sha256": digest, "sections": sections}


def read_run(out) -> dict:
    """The run.json of an output folder ({} when there is none or it is unreadable)."""
    try:
        return json.loads((Path(out) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}


def run_finished(out) -> bool:
    """The output folder holds a finished run (run.json says so and the model folder exists)."""
    return read_run(out).get("status") == "finished" and (Path(out) / "model" / "weights.pt").exists()


def _write_run(out: Path, record: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, out / RUN_FILE)


def prepare_run(config: TrainConfig, out: Path, resume: bool, force: bool = False) -> Path | None:
    """Checkpoint to resume from (None: start over), after refusing what would lose or mix work.

    A finished run is refused unless ``force``; a checkpoint whose run.json fingerprint differs from
    this config is refused, naming the differing sections (``resume=False`` starts over).
    """
    out = Path(out)
    last = out / "checkpoints" / LAST_CKPT
    record, fp = read_run(out), run_fingerprint(config)
    if run_finished(out) and not force:
        raise RunStateError(f"{out}: this run is finished (model folder {out / 'model'}); "
                            "--force trains it again and replaces the model")
    start_over = not resume or not last.exists()
    if not start_over:
        old = record.get("sections")
        if old is None:
            raise RunStateError(f"{last}: no {RUN_FILE} says which config it belongs to; --no-resume starts over")
        differ = [k for k in FINGERPRINT_KEYS if old.get(k) != fp["sections"].get(k)]
        if differ:
            raise RunStateError(f"{last}: the config's {', '.join(differ)} differ from the checkpoint's run "
                                f"({out / RUN_FILE}); --no-resume starts over")
    if start_over:
        for old_ckpt in (out / "checkpoints").glob("*.ckpt"):
            old_ckpt.unlink()  # this run's own checkpoints: a fresh start must not resume or rank against them
    _write_run(out, {"name": config.name, "status": "running", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                     **fp})
    return None if start_over else last


def mark_finished(out) -> None:
    """Record in run.json that the run finished and wrote its model folder."""
    record = read_run(out)
    record.update(status="finished", finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    _write_run(Path(out), record)


class _LastCheckpoint(L.Callback):
    """Writes last.ckpt after every epoch, and at once when a signal asked training to stop."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.signal_name: str | None = None

    def save(self, trainer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        trainer.save_checkpoint(tmp)
        os.replace(tmp, self.path)  # a kill during the write leaves the previous last.ckpt whole

    def on_train_epoch_end(self, trainer, pl_module):
        self.save(trainer)
        if self.signal_name:
            raise _Stop

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.signal_name:
            self.save(trainer)
            raise _Stop


@contextlib.contextmanager
def _stop_on_signals(stopper: _LastCheckpoint):
    """SIGINT / SIGTERM ask ``stopper`` to checkpoint and stop after the current batch (main thread only;
    a second signal acts at once)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):
        stopper.signal_name = signal.Signals(signum).name
        signal.signal(signum, previous[signum])

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def _wants_cuda(device: str) -> bool:
    return device in ("auto", "cuda", "gpu") and torch.cuda.is_available()


def _hardware() -> str:
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"

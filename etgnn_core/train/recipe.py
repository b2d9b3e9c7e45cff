"""``train.yaml``: how a model folder was made, stage by stage, so that it can be rebuilt.

Every model folder written by :func:`etgnn_core.train.train` holds a ``train.yaml``::

    format: 1
    name: perturbed_hfo2
    stages:                      # in training order; the last one made this folder's weights
    - config: {...}              # the resolved TrainConfig of the stage (every key, defaults filled in)
      parent: null               # or {name: ..., sha256: ...}: the weights the stage fine-tuned
      data_files: {etgnn_perturbed/HfO2/x.zip: <sha256>, ...}   # relative to the data root
      git_commit: <commit the code was at>
      result: {weights_sha256, epochs, minutes, hardware, test_mae, val_mae}   # what the stage gave

A stage's ``config.finetune_from`` is always null in the file: the parent reference says what it
started from.  When the file is run (``etgnn train pretrained/NAME/train.yaml``) the first stage
fine-tunes the parent found by name (its sha256 must match) and every later stage fine-tunes the
model folder the previous stage wrote.  ``--dry-run`` checks the configs, the data files (they
must exist and match their hashes) and the chain of parents, and prints the plan.
"""

from __future__ import annotations

import copy
import hashlib
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from etgnn_core.train.config import ConfigError, TrainConfig

FORMAT = 1
RECIPE_FILE = "train.yaml"


@dataclass
class Stage:
    config: TrainConfig  # finetune_from is None; ``parent`` names the starting weights
    parent: dict | None = None  # {"name": str, "sha256": str}
    data_files: dict[str, str] = field(default_factory=dict)  # path relative to the data root -> sha256
    git_commit: str | None = None
    result: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"config": self.config.to_dict(), "parent": self.parent, "data_files": dict(self.data_files),
             "git_commit": self.git_commit}
        return {**d, "result": self.result} if self.result else d


@dataclass
class Recipe:
    name: str
    stages: list[Stage]

    def to_dict(self) -> dict:
        return {"format": FORMAT, "name": self.name, "stages": [s.to_dict() for s in self.stages]}


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_commit(repo: Path | None = None) -> str | None:
    """The commit the code is at (``+dirty`` when tracked files differ from it); None outside git."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=repo, capture_output=True, text=True, timeout=10)  # noqa: E731
        head = run("rev-parse", "HEAD")
        if head.returncode:
            return None
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def data_paths(config: TrainConfig) -> dict[str, Path]:
    """The files a config's data section reads: key (relative to the data root, or as given) -> path."""
    from etgnn_core.data.datasets import REGISTRY, _root

    d = config.data
    out = {} if d.dataset else {d.extxyz: Path(d.extxyz)}
    names = ([d.dataset] if isinstance(d.dataset, str) else list(d.dataset or [])) + list(d.train_only)
    root = _root(d.root) if names else None
    for name in names:
        if name not in REGISTRY:
            raise ConfigError(f"data.dataset: unknown data set {name!r}")
        rel = REGISTRY[name][0]().path
        target = root / rel
        files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
        out.update({str(p.relative_to(root)): p for p in files})
    # offset and force-constant tables (a file, or a folder of .npz shards), as given in the config
    for table in [*d.offsets.values(), *([d.eps_ionic] if d.eps_ionic else [])]:
        files = sorted(Path(table).glob("*.npz")) if Path(table).is_dir() else []
        out.update({str(f): f for f in files or [Path(table)]})
    return out


def data_hashes(config: TrainConfig) -> dict[str, str]:
    """sha256 of every data file the config reads (a DataError when one is missing)."""
    from etgnn_core.data import DataError

    out = {}
    for key, path in data_paths(config).items():
        if not path.is_file():
            raise DataError(f"{path}: data file not found")
        out[key] = sha256_file(path)
    return out


def parent_reference(name_or_path) -> dict:
    """{name, sha256 of weights.pt} of the model folder a stage fine-tunes."""
    from etgnn_core.registry import WEIGHTS_FILE, find_model, read_info

    folder = find_model(name_or_path)
    return {"name": read_info(folder).name, "sha256": sha256_file(folder / WEIGHTS_FILE)}


def stage_result(model_dir: Path, card: dict) -> dict:
    """What a stage produced, for the history: its weights' hash, budget used and MAEs."""
    from etgnn_core.registry import WEIGHTS_FILE

    t = card.get("training", {})
    return {
        "weights_sha256": sha256_file(Path(model_dir) / WEIGHTS_FILE),
        "epochs": t.get("epochs"),
        "minutes": t.get("minutes"),
        "hardware": t.get("hardware"),
        "test_mae": {k: v["mae"] for k, v in card.get("metrics", {}).items() if v.get("split", "test") == "test"},
        "val_mae": {k: v["mae"] for k, v in card.get("val_metrics", {}).items()},
    }


def new_stage(config: TrainConfig, model_dir: Path, card: dict) -> Stage:
    """The stage that ``config`` just trained into ``model_dir``."""
    parent = parent_reference(config.finetune_from) if config.finetune_from else None
    try:
        hashes = data_hashes(config)
    except Exception:  # samples passed in by the caller, not read from files
        hashes = {}
    return Stage(replace(config, finetune_from=None), parent, hashes, git_commit(), stage_result(model_dir, card))


def write_recipe(model_dir: Path, config: TrainConfig, card: dict) -> Recipe:
    """Write ``model_dir/train.yaml``: the parent's stages (when it has a train.yaml) plus this one."""
    from etgnn_core.registry import find_model

    earlier: list[Stage] = []
    if config.finetune_from:
        parent_file = find_model(config.finetune_from) / RECIPE_FILE
        if parent_file.exists():
            earlier = read_recipe(parent_file).stages
    recipe = Recipe(config.name, [*earlier, new_stage(config, Path(model_dir), card)])
    save_recipe(recipe, Path(model_dir) / RECIPE_FILE)
    return recipe


def save_recipe(recipe: Recipe, path: Path) -> None:
    header = "# How this model was trained: `etgnn train THIS_FILE --dry-run` checks it; without --dry-run, rebuilds\n"
    Path(path).write_text(header + yaml.safe_dump(recipe.to_dict(), sort_keys=False, width=120))


def _yaml_mapping(path) -> dict:
    """The top-level mapping of a YAML file; {} when it is unreadable, not YAML or not a mapping."""
    try:
        d = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return d if isinstance(d, dict) else {}


def is_recipe_file(path) -> bool:
    """Whether a YAML file is a multi-stage train.yaml (it has ``stages``) rather than one TrainConfig."""
    return "stages" in _yaml_mapping(path)


def committee_commands(path) -> list[str]:
    """The ``commands`` of a committee's train.yaml (``kind: committee``); [] for any other file."""
    d = _yaml_mapping(path)
    return [str(c) for c in d.get("commands") or []] if d.get("kind") == "committee" else []


def read_recipe(path) -> Recipe:
    """Parse and check a train.yaml (ConfigError naming the file and stage on any problem)."""
    path = Path(path)
    try:
        d = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML: {exc}") from exc
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ConfigError(f"{path}: expected a train.yaml of format {FORMAT}")
    if not isinstance(d.get("stages"), list) or not d["stages"]:
        raise ConfigError(f"{path}: 'stages' must be a non-empty list")
    stages = []
    for i, s in enumerate(d["stages"], 1):
        where = f"{path}: stage {i}"
        unknown = sorted(set(s) - {"config", "parent", "data_files", "git_commit", "result"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}")
        raw = dict(s.get("config") or {})
        if raw.get("finetune_from"):
            raise ConfigError(f"{where}: config.finetune_from must be null; 'parent' names the starting weights")
        parent = s.get("parent")
        if parent is not None and not (isinstance(parent, dict) and {"name", "sha256"} <= set(parent)):
            raise ConfigError(f"{where}: parent must be null or {{name, sha256}}")
        # checked as the stage ran: fine-tuning its parent (finetune_reset_elements needs one)
        config = TrainConfig.from_dict({**raw, "finetune_from": parent["name"] if parent else None}, where)
        config = replace(config, finetune_from=None)
        stages.append(Stage(config, parent, dict(s.get("data_files") or {}), s.get("git_commit"),
                            dict(s.get("result") or {})))
    for i in range(1, len(stages)):
        parent, before = stages[i].parent, stages[i - 1].result.get("weights_sha256")
        if parent is None:
            raise ConfigError(f"{path}: stage {i + 1} has no parent, but stage {i} comes before it")
        if before and parent["sha256"] != before:
            raise ConfigError(f"{path}: stage {i + 1}'s parent sha256 is not the weights stage {i} made")
    return Recipe(str(d.get("name") or stages[-1].config.name), stages)


def check_data(stage: Stage) -> list[str]:
    """Problems with a stage's data files: missing, or not the bytes it was trained on."""
    problems = []
    try:
        now = data_hashes(stage.config)
    except Exception as exc:
        return [f"data: {exc}"]
    for key, sha in stage.data_files.items():
        if key not in now:
            problems.append(f"data file {key}: no longer read by this config")
        elif now[key] != sha:
            problems.append(f"data file {key}: sha256 {now[key][:12]} differs from the recorded {sha[:12]}")
    problems += [f"data file {key}: read now but not recorded" for key in sorted(set(now) - set(stage.data_files))]
    return problems


def check_first_parent(recipe: Recipe) -> list[str]:
    """The first stage's parent must be installed, with the recorded weights."""
    parent = recipe.stages[0].parent
    if parent is None:
        return []
    try:
        ref = parent_reference(parent["name"])
    except Exception as exc:
        return [f"parent {parent['name']}: {exc}"]
    if ref["sha256"] != parent["sha256"]:
        return [f"parent {parent['name']}: installed weights have sha256 {ref['sha256'][:12]}, "
                f"the recipe starts from {parent['sha256'][:12]}"]
    return []


def plan_lines(recipe: Recipe) -> list[str]:
    """One block per stage: what it trains, from what, on which data and for how long."""
    lines = [f"{recipe.name}: {len(recipe.stages)} stage(s)"]
    for i, s in enumerate(recipe.stages, 1):
        c, o = s.config, s.config.optim
        start = "fresh" if s.parent is None else (
            f"fine-tune {s.parent['name']} ({s.parent['sha256'][:12]})" if i == 1 else f"fine-tune stage {i - 1}")
        if c.finetune_reset_elements:
            start += f", {'/'.join(c.finetune_reset_parts)} of {' '.join(c.finetune_reset_elements)} afresh"
        data = f"{c.data.dataset or c.data.extxyz}"
        data += f" + training only {c.data.train_only}" if c.data.train_only else ""
        lines += [
            f"  stage {i}: {start} -> {c.output}/model",
            f"    data {data} ({len(s.data_files)} file(s)), targets {', '.join(c.targets)}, "
            f"loss weights {_weights(c)}",
            f"    lr {o.lr:g}, batch {o.batch_size}, max {o.max_epochs} epochs / {o.max_minutes} min, "
            f"patience {o.patience}, warm-up {o.warmup}, EMA {o.ema_decay}, threads {c.threads}, seed {c.seed}",
        ]
        if s.result:
            lines.append(f"    recorded: {s.result.get('epochs')} epochs, {s.result.get('minutes')} min, "
                         f"test MAE {_fmt(s.result.get('test_mae'))}")
    return lines


def dry_run(path, member: int | None = None) -> tuple[list[str], list[str]]:
    """(plan lines, problems) for a train.yaml or a single-stage config file, without training."""
    recipe = load_any(path, member)
    problems = check_first_parent(recipe)
    for i, s in enumerate(recipe.stages, 1):
        if s.data_files:
            problems += [f"stage {i}: {p}" for p in check_data(s)]
            continue
        try:  # nothing recorded (a plain config): the files must exist; the plan shows them
            s.data_files = data_hashes(s.config)
        except Exception as exc:
            problems.append(f"stage {i}: data: {exc}")
    return plan_lines(recipe), problems


def load_any(path, member: int | None = None) -> Recipe:
    """A train.yaml as it is, or a single TrainConfig file (committee member ``member``) as a one-stage recipe."""
    if is_recipe_file(path):
        return read_recipe(path)
    commands = committee_commands(path)
    if commands:
        raise ConfigError(f"{path} rebuilds a committee, not one model: run its commands in order: "
                          + "; ".join(commands))
    config = TrainConfig.from_file(path)
    if member is not None:
        config = config.for_member(member)
    config.check_trainable()
    parent = None
    if config.finetune_from:  # kept as written (a folder path stays a path) for run_recipe to find
        try:
            parent = {**parent_reference(config.finetune_from), "name": str(config.finetune_from)}
        except Exception as exc:
            raise ConfigError(f"{path}: finetune_from: {exc}") from exc
    return Recipe(config.name, [Stage(replace(config, finetune_from=None), parent)])


def run_recipe(recipe: Recipe, resume: bool = True, **train_kwargs):
    """Train every stage in order; each later stage fine-tunes the folder the previous one wrote."""
    from etgnn_core.train.trainer import train

    problems = check_first_parent(recipe)
    if problems:
        raise ConfigError("; ".join(problems))
    previous, result = None, None
    for i, s in enumerate(recipe.stages):
        start = previous if i else (s.parent["name"] if s.parent else None)
        result = train(replace(copy.deepcopy(s.config), finetune_from=start), resume=resume, **train_kwargs)
        previous = str(result.model_dir)
    return result


def history_rows(stages: list[Stage]) -> list[dict]:
    """The card's history table: one row per stage."""
    rows = []
    for i, s in enumerate(stages, 1):
        o = s.config.optim
        rows.append({
            "stage": i,
            "start": "fresh" if s.parent is None else f"stage {i - 1}" if i > 1 else s.parent["name"],
            "settings": f"lr {o.lr:g}, {o.max_minutes} min budget, warm-up {o.warmup}, EMA {o.ema_decay}, "
                        f"cap {s.config.model.get('max_neighbors', 'default')}, loss weights {_weights(s.config)}",
            "epochs": s.result.get("epochs"),
            "minutes": s.result.get("minutes"),
            "val_mae": s.result.get("val_mae") or {},
            "test_mae": s.result.get("test_mae") or {},
        })
    return rows


def _weights(config: TrainConfig) -> str:
    text = ", ".join(f"{k} {v:g}" for k, v in config.weights.items()) or "equal"
    squared = config.l2_targets
    text += f"; L2 loss on {', '.join(sorted(squared))}" if squared else ""
    moduli = ", ".join(f"{k} {v:g}" for k, v in config.moduli_weights.items() if v)
    text += f"; Voigt-moduli loss {moduli}" if moduli else ""
    d = config.data
    return text + (f"; eps0 - eps_inf loss {d.eps_ionic_weight:g} (Φ⁺ x {d.eps_ionic_scale:g})" if d.eps_ionic else "")


def _fmt(maes) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in (maes or {}).items()) or "-"


def training_settings(config: TrainConfig) -> dict:
    """Every setting of the last stage that shapes the weights (for the card)."""
    from dataclasses import asdict

    return {"loss_weights": config.weights or "equal", "losses": config.losses or "l1",
            "optim": asdict(config.optim), "split": asdict(config.split),
            "model": config.model, "tensor_options": config.tensor_options, "seed": config.seed,
            "threads": config.threads}


def write_recipe_and_history(model_dir: Path, config: TrainConfig, card: dict) -> dict:
    """Write train.yaml, then rewrite the card with the full settings and one history row per stage."""
    from etgnn_core.registry import write_card

    recipe = write_recipe(model_dir, config, card)
    card = {**card, "training": {**card.get("training", {}), "settings": training_settings(config)},
            "history": history_rows(recipe.stages)}
    write_card(Path(model_dir), card)
    return card

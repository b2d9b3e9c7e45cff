"""Self-describing model folders: list, save, and strict loading (weights_only, nothing unpickled).

A model folder holds
    config.json   {"format": 1, "name": ..., "description": ..., "model": ModelConfig}
    weights.pt    a plain state dict (torch.load(weights_only=True) reads it)
    card.json     data, split, seed, epochs, hardware, training time, units, test metrics, baselines
    card.md       the same for people
    split.json    ids of the train / validation / test structures (when trained here)

A committee folder (see :mod:`etgnn_core.committee`) holds committee.json, member0/ ... memberK/
(plain model folders), domain.npz, card.json/card.md and split.json; it is listed and found like a
model (``ModelInfo.members`` names its members).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from etgnn_core.model.config import ModelConfig

if TYPE_CHECKING:
    from etgnn_core.model.etgnn import ETGNN

FORMAT = 1
CONFIG_FILE, WEIGHTS_FILE, CARD_JSON, CARD_MD, SPLIT_FILE = (
    "config.json",
    "weights.pt",
    "card.json",
    "card.md",
    "split.json",
)
COMMITTEE_FILE = "committee.json"
COMMITTEE_FORMAT = 1


class ModelLoadError(ValueError):
    """A model folder or checkpoint that is missing, malformed, or does not match its config."""


@dataclass
class ModelInfo:
    name: str
    path: Path
    description: str
    targets: dict[str, str]  # tensor name -> unit
    elements: list[int]
    card: dict = field(default_factory=dict)
    members: list[str] = field(default_factory=list)  # committee member subfolders ([] = a single model)

    @property
    def is_committee(self) -> bool:
        return bool(self.members)

    @property
    def config_path(self) -> Path:
        """config.json of the model (of member 0 for a committee)."""
        return Path(self.path) / (self.members[0] if self.members else "") / CONFIG_FILE


def is_committee_folder(path) -> bool:
    return (Path(path) / COMMITTEE_FILE).exists()


def pretrained_dirs() -> list[Path]:
    """Where shipped models are looked for: $ETGNN_PRETRAINED, then the repo's pretrained/."""
    dirs = []
    if os.environ.get("ETGNN_PRETRAINED"):
        dirs.append(Path(os.environ["ETGNN_PRETRAINED"]))
    dirs.append(Path(__file__).resolve().parents[1] / "pretrained")
    return [d for d in dirs if d.is_dir()]


def read_info(path: Path) -> ModelInfo:
    path = Path(path)
    if is_committee_folder(path):
        return read_committee_info(path)
    cfg = _read_json(path / CONFIG_FILE)
    model_cfg = _model_config(cfg, path)
    card = _read_json(path / CARD_JSON) if (path / CARD_JSON).exists() else {}
    return ModelInfo(
        name=cfg.get("name", path.name),
        path=path,
        description=cfg.get("description", ""),
        targets={t.name: t.unit for t in model_cfg.targets},
        elements=list(model_cfg.elements),
        card=card,
    )


def read_committee_info(path) -> ModelInfo:
    """ModelInfo of a committee folder: targets of member 0, elements known to any member."""
    path = Path(path)
    meta = committee_json(path)
    infos = [read_info(path / m) for m in meta["members"]]
    elements = sorted(set().union(*(i.elements for i in infos))) if all(i.elements for i in infos) else []
    card = _read_json(path / CARD_JSON) if (path / CARD_JSON).exists() else {}
    return ModelInfo(name=meta.get("name", path.name), path=path, description=meta.get("description", ""),
                     targets=dict(infos[0].targets), elements=elements, card=card, members=list(meta["members"]))


def committee_json(path: Path) -> dict:
    meta = _read_json(path / COMMITTEE_FILE)
    where = path / COMMITTEE_FILE
    if meta.get("format") != COMMITTEE_FORMAT or meta.get("kind") != "committee":
        raise ModelLoadError(f"{where}: format {meta.get('format')!r} / kind {meta.get('kind')!r} is not "
                             f"a format-{COMMITTEE_FORMAT} committee")
    members = meta.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise ModelLoadError(f"{where}: 'members' must be a non-empty list of subfolder names")
    for m in members:
        if Path(m).name != m or m in (".", ".."):
            raise ModelLoadError(f"{where}: member {m!r} must be a plain subfolder name")
    scale = meta.get("std_scale", {})
    if not isinstance(scale, dict) or not all(isinstance(v, (int, float)) and v >= 0 for v in scale.values()):
        raise ModelLoadError(f"{where}: 'std_scale' must map tensor names to non-negative numbers")
    return meta


def list_models() -> list[ModelInfo]:
    """Every model folder found in :func:`pretrained_dirs`, sorted by name."""
    found = {}
    for d in pretrained_dirs():
        for sub in sorted(d.iterdir()):
            is_model = (sub / CONFIG_FILE).exists() and (sub / WEIGHTS_FILE).exists()
            if (is_model or is_committee_folder(sub)) and sub.name not in found:
                found[sub.name] = read_info(sub)
    return [found[k] for k in sorted(found)]


def find_model(name_or_path: str | os.PathLike) -> Path:
    """A folder path, or the name of a shipped model."""
    p = Path(name_or_path)
    if (p / CONFIG_FILE).exists() or is_committee_folder(p):
        return p
    for d in pretrained_dirs():
        if (d / str(name_or_path) / CONFIG_FILE).exists() or is_committee_folder(d / str(name_or_path)):
            return d / str(name_or_path)
    names = [m.name for m in list_models()]
    raise ModelLoadError(f"no model named or at {str(name_or_path)!r}; shipped models: {', '.join(names) or 'none'}")


def save_model(model: ETGNN, path, *, name: str, description: str = "", card: dict | None = None,
               split: dict | None = None) -> Path:
    """Write a model folder (config, weights, card, split)."""
    import torch

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = {"format": FORMAT, "name": name, "description": description, "model": model.config.to_dict()}
    (path / CONFIG_FILE).write_text(json.dumps(cfg, indent=2))
    state = {k: v.detach().cpu().float() for k, v in model.state_dict().items()}
    tmp = path / (WEIGHTS_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path / WEIGHTS_FILE)  # never leave a half-written weights file
    if card is not None:
        write_card(path, card, name, description, model.config)
    if split is not None:
        (path / SPLIT_FILE).write_text(json.dumps(split))
    return path


class InstallError(ValueError):
    """An install that would write outside pretrained/ or replace what it must not (the message says which)."""


def weights_fingerprint(name_or_path) -> str:
    """sha256 over the sha256 of every weights.pt of a model (a committee: each member's, in folder order).

    A model that uses another one's output (universal_piezo's ionic term uses universal_dielectric_bec's
    Born charges) records this at training time and can tell later whether that model has changed.
    """
    import hashlib

    folder = find_model(name_or_path)
    total = hashlib.sha256()
    for f in sorted(folder.rglob(WEIGHTS_FILE)):
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        total.update(f"{f.relative_to(folder).as_posix()} {h.hexdigest()}\n".encode())
    return total.hexdigest()


def pretrained_root() -> Path:
    """The repository's pretrained/ folder (where --install puts models)."""
    return Path(__file__).resolve().parents[1] / "pretrained"


def install_model(model_dir, name: str, replace: bool = False, root: Path | None = None,
                  keep_dir: Path | None = None) -> Path:
    """Copy a model folder to ``root/name`` (root: pretrained/): written beside, then renamed into place.

    ``name`` must be a plain slug (no path parts).  An existing ``root/name`` is replaced only with
    ``replace`` and only when it is a model folder (config.json or committee.json inside); nothing
    else is ever removed.  With ``keep_dir`` an existing ``root/name`` is instead moved to
    ``keep_dir/replaced-NAME-<time>`` (never deleted, so no check is needed).
    """
    import shutil
    import tempfile

    from etgnn_core.train.config import NAME_RE

    if not NAME_RE.fullmatch(name):
        raise InstallError(f"model name {name!r} is not a plain name of letters, digits, '_' and '-'")
    root = Path(root) if root is not None else pretrained_root()
    dest = root / name
    if dest.resolve().parent != root.resolve():
        raise InstallError(f"{dest}: not directly inside {root}")
    if (dest.exists() or dest.is_symlink()) and keep_dir is None:
        if not replace:
            raise InstallError(f"{dest} exists; --replace installs over it")
        is_model = (dest / CONFIG_FILE).exists() or (dest / "committee.json").exists()
        if dest.is_symlink() or not dest.is_dir() or not is_model:
            raise InstallError(f"{dest} exists and is not a model folder: not replaced")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.installing-", dir=root))  # ours: safe to remove
    try:
        shutil.copytree(model_dir, staging / name)
        retired = staging / "previous"
        if keep_dir is not None:
            retired = Path(keep_dir) / f"replaced-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if dest.exists() or dest.is_symlink():
            shutil.move(str(dest), str(retired))  # a model folder replaced as asked, or kept aside
        try:
            os.replace(staging / name, dest)
        except OSError:
            if retired.exists():
                shutil.move(str(retired), str(dest))  # put the old model back before the staging folder goes
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def write_card(path: Path, card: dict, name: str | None = None, description: str | None = None,
               config: ModelConfig | None = None) -> None:
    """Write card.json and card.md of a model folder (name, description, config read from it when not given)."""
    path = Path(path)
    if config is None:
        cfg = _read_json(path / CONFIG_FILE)
        config = _model_config(cfg, path)
        name = name if name is not None else cfg.get("name", path.name)
        description = description if description is not None else cfg.get("description", "")
    (path / CARD_JSON).write_text(json.dumps(card, indent=2))
    (path / CARD_MD).write_text(render_card(name or path.name, description or "", config, card))


def load_model_folder(name_or_path, device=None) -> tuple[ETGNN, ModelInfo]:
    """Rebuild the model from config.json and load weights.pt strictly (weights_only=True)."""
    import torch

    from etgnn_core.model.etgnn import ETGNN

    path = find_model(name_or_path)
    if is_committee_folder(path):
        raise ModelLoadError(f"{path} is a committee of models: load it with etgnn_core.load_model, "
                             f"or name one member folder (e.g. {path}/member0)")
    info = read_info(path)
    model = ETGNN(_model_config(_read_json(path / CONFIG_FILE), path))
    weights = path / WEIGHTS_FILE
    if not weights.exists():
        raise ModelLoadError(f"{path}: no {WEIGHTS_FILE}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, or a pickle with code in it
        raise ModelLoadError(f"{weights}: {_weights_problem(exc)}") from exc
    load_state_strict(model, state, str(weights))
    model.eval()
    return (model.to(device) if device is not None else model), info


def _weights_problem(exc: BaseException) -> str:
    """One line on why torch.load(weights_only=True) refused a file; never torch's advice to load it unsafely."""
    text = str(exc)
    if "Unsupported global" in text or "can still be loaded" in text:
        return "not plain weights (it holds objects other than tensors, which could run code): refused"
    if "weights only load failed" in text.lower() or "weights_only" in text:
        return "not a readable weights file (corrupt, or not saved by torch.save)"
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    first = first if len(first) <= 120 else first[:117] + "..."
    return f"not a readable weights file ({exc.__class__.__name__}{': ' + first if first else ''})"


def load_state_strict(model, state: dict, where: str) -> None:
    """load_state_dict(strict=True) with a message saying exactly what differs."""
    if not isinstance(state, dict):
        raise ModelLoadError(f"{where}: expected a state dict, found {type(state).__name__}")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs config {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"shape mismatch {len(shapes)} (e.g. {'; '.join(shapes[:3])})")
        raise ModelLoadError(f"{where}: weights do not match the config: " + "; ".join(parts))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def _read_json(path: Path) -> dict:
    if not path.exists():
        raise ModelLoadError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc


def _model_config(cfg: dict, path: Path) -> ModelConfig:
    if cfg.get("format") != FORMAT:
        raise ModelLoadError(f"{path / CONFIG_FILE}: format {cfg.get('format')!r} is not the supported {FORMAT}")
    if "model" not in cfg:
        raise ModelLoadError(f"{path / CONFIG_FILE}: no 'model' section")
    try:
        return ModelConfig.from_dict(cfg["model"])
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path / CONFIG_FILE}: {exc}") from exc


def _only(spec) -> str:
    from ase.data import chemical_symbols

    return f" ({', '.join(chemical_symbols[z] for z in spec.species)} atoms only)" if spec.species else ""


def render_card(name: str, description: str, config: ModelConfig, card: dict) -> str:
    """Markdown model card from card.json contents."""
    lines = [f"# {name}", "", description, ""]
    lines += ["## Targets", "", "| tensor | rank | per atom | unit |", "|---|---|---|---|"]
    lines += [f"| {t.name} | {t.rank} | {t.per_atom}{_only(t)} | {t.unit} |" for t in config.targets]
    for key in ("data", "split", "training"):
        if key in card:
            lines += ["", f"## {key.capitalize()}", ""]
            lines += [f"- **{k}**: {v}" for k, v in card[key].items() if k not in ("settings", "previous")]
    settings = card.get("training", {}).get("settings")
    if settings:
        lines += ["", "### Settings of the last stage", ""]
        lines += [f"- **{k}**: {_setting(v)}" for k, v in settings.items()]
    if card.get("history"):
        lines += ["", "## History (`train.yaml` holds every stage's full config)", "",
                  "| stage | start | settings | epochs | minutes | val MAE | test MAE |",
                  "|---|---|---|---|---|---|---|"]
        for h in card["history"]:
            lines.append(f"| {h['stage']} | {h['start']} | {h['settings']} | {h.get('epochs', '')} "
                         f"| {h.get('minutes', '')} | {_maes(h.get('val_mae'))} | {_maes(h.get('test_mae'))} |")
    if "metrics" in card:
        lines += ["", "## Test metrics (MAE, in the target's unit)", "",
                  "| tensor | model | baseline | unit |", "|---|---|---|---|"]
        for t, m in card["metrics"].items():
            lines.append(f"| {t} | {m.get('mae', float('nan')):.4g} | {m.get('baseline_mae', float('nan')):.4g} "
                         f"| {m.get('unit', '')} |")
        counted = [m for m in card["metrics"].values() if "count" in m]
        if counted:
            lines += ["", f"Over the {counted[0]['count']} test structures the API predicts"
                          + (f" ({counted[0]['refused']} refused: {counted[0].get('refused_reason', '')})"
                             if counted[0].get("refused") else "") + "."]
    if card.get("metrics_by_group"):
        lines += ["", "## Test metrics by group (MAE)", "", "| group | structures | tensor | model | unit |",
                  "|---|---|---|---|---|"]
        for group, g in card["metrics_by_group"].items():
            for t, mae in g["mae"].items():
                unit = card.get("metrics", {}).get(t, {}).get("unit", "")
                lines.append(f"| {group} | {g['count']} | {t} | {mae:.4g} | {unit} |")
    lines += ["", "## Model", "", "```json", json.dumps({k: v for k, v in config.to_dict().items()
                                                        if k != "targets"}, indent=1), "```", ""]
    if card.get("notes"):
        lines += ["## Notes", "", card["notes"], ""]
    return "\n".join(lines)


def _setting(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
    return str(value)


def _maes(maes) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in (maes or {}).items() if v is not None) or "-"

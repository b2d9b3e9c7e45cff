"""train.yaml: every model folder says how it was trained, stage by stage; --dry-run checks it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_train import tiny_config, zno_samples

from etgnn_core.data import data_root
from etgnn_core.train import ConfigError, train
from etgnn_core.train.recipe import RECIPE_FILE, dry_run, is_recipe_file, read_recipe, run_recipe, sha256_file

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.parent for p in (ROOT / "pretrained").glob(f"*/{RECIPE_FILE}") if is_recipe_file(p))


def test_training_and_fine_tuning_write_the_chain_of_stages(tmp_path):
    first = train(tiny_config(tmp_path / "a"), samples=zno_samples(), progress_bar=False)
    one = read_recipe(first.model_dir / RECIPE_FILE)
    assert len(one.stages) == 1 and one.stages[0].parent is None
    assert one.stages[0].result["weights_sha256"] == sha256_file(first.model_dir / "weights.pt")
    assert one.stages[0].config.optim.max_epochs == 2 and one.stages[0].config.finetune_from is None

    optim = {"max_epochs": 1, "batch_size": 8, "patience": 0}
    second = train(tiny_config(tmp_path / "b", finetune_from=str(first.model_dir), optim=optim),
                   samples=zno_samples(), progress_bar=False)
    two = read_recipe(second.model_dir / RECIPE_FILE)
    assert [s.config.optim.max_epochs for s in two.stages] == [2, 1]
    assert two.stages[1].parent["sha256"] == one.stages[0].result["weights_sha256"]
    card = json.loads((second.model_dir / "card.json").read_text())
    assert [h["stage"] for h in card["history"]] == [1, 2] and "previous" not in card["training"]
    assert card["training"]["settings"]["optim"]["patience"] == 0
    assert "## History" in (second.model_dir / "card.md").read_text()


@pytest.mark.slow
def test_a_recipe_runs_its_stages_in_order(tmp_path):
    first = train(tiny_config(tmp_path / "a"), samples=zno_samples(), progress_bar=False)
    recipe = read_recipe(first.model_dir / RECIPE_FILE)
    stage = recipe.stages[0]
    two = type(recipe)(recipe.name, [stage, type(stage)(copy.deepcopy(stage.config), {"name": "tiny", "sha256": "x"})])
    two.stages[1].config.output = str(tmp_path / "stage2")
    two.stages[0].config.output = str(tmp_path / "stage1")
    res = run_recipe(two, samples=zno_samples(), progress_bar=False)
    rebuilt = read_recipe(res.model_dir / RECIPE_FILE)
    assert len(rebuilt.stages) == 2
    assert rebuilt.stages[1].parent["sha256"] == sha256_file(tmp_path / "stage1" / "model" / "weights.pt")


def test_a_broken_chain_is_refused(tmp_path):
    d = yaml.safe_load((SHIPPED[0] / RECIPE_FILE).read_text())
    d["stages"].append({**d["stages"][0], "parent": {"name": "x", "sha256": "0" * 64}})
    (tmp_path / RECIPE_FILE).write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match="stage 2's parent sha256"):
        read_recipe(tmp_path / RECIPE_FILE)


def test_every_shipped_model_has_a_train_yaml_ending_in_its_weights():
    names = sorted(p.name for p in (ROOT / "pretrained").iterdir() if (p / "weights.pt").exists())
    assert [p.name for p in SHIPPED] == names
    for folder in SHIPPED:
        recipe = read_recipe(folder / RECIPE_FILE)
        assert recipe.stages[-1].result["weights_sha256"] == sha256_file(folder / "weights.pt"), folder.name
        card = json.loads((folder / "card.json").read_text())
        assert len(card["history"]) == len(recipe.stages) and "previous" not in card["training"], folder.name
        assert card["training"]["settings"]["optim"]["patience"] == recipe.stages[-1].config.optim.patience


@pytest.mark.skipif(data_root() is None, reason="needs the reference data (../shared/data or $ETGNN_DATA)")
def test_dry_run_checks_data_hashes(tmp_path):
    lines, problems = dry_run(ROOT / "pretrained" / "piezo_zno" / RECIPE_FILE)
    d = yaml.safe_load((ROOT / "pretrained" / "piezo_zno" / RECIPE_FILE).read_text())
    assert problems == [] and lines[0].startswith(f"piezo_zno: {len(d['stages'])} stage(s)")
    key = next(iter(d["stages"][0]["data_files"]))
    d["stages"][0]["data_files"][key] = "0" * 64
    (tmp_path / RECIPE_FILE).write_text(yaml.safe_dump(d))
    _, problems = dry_run(tmp_path / RECIPE_FILE)
    assert len(problems) == 1 and key in problems[0] and "differs" in problems[0]


def test_configs_hold_one_recipe_per_shipped_model():
    # the other configs in configs/ train committee members (etgnn train CONFIG --member K)
    recipes = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml") if is_recipe_file(p))
    assert recipes == [p.name for p in SHIPPED]
    for folder in SHIPPED:
        assert (ROOT / "configs" / f"{folder.name}.yaml").read_text() == (folder / RECIPE_FILE).read_text(), folder.name


def test_every_shipped_recipe_reads_back():
    """Each model folder's and committee member's train.yaml parses with its stages' checks (a stage that
    resets elements of its parent is valid: its parent is named by the stage, not by finetune_from)."""
    files = [*(p / RECIPE_FILE for p in SHIPPED), *sorted((ROOT / "pretrained").glob(f"*/member*/{RECIPE_FILE}"))]
    assert len(files) > len(SHIPPED)
    for f in files:
        stages = read_recipe(f).stages
        assert all(s.config.finetune_from is None for s in stages), f
    reset = [s for f in files for s in read_recipe(f).stages if s.config.finetune_reset_elements]
    assert reset and all(s.parent for s in reset)


def test_cli_dry_run_prints_the_plan_and_trains_nothing(tmp_path, capsys):
    from etgnn_core import cli

    first = train(tiny_config(tmp_path / "a"), samples=zno_samples(), progress_bar=False)
    d = yaml.safe_load((first.model_dir / RECIPE_FILE).read_text())
    d["stages"][0]["config"]["data"] = {"extxyz": str(tmp_path / "missing.xyz")}
    (tmp_path / RECIPE_FILE).write_text(yaml.safe_dump(d))
    assert cli.main(["train", str(tmp_path / RECIPE_FILE), "--dry-run"]) == 1
    out = capsys.readouterr()
    assert "tiny: 1 stage(s)" in out.out and "missing.xyz" in out.err


def test_a_committee_recipe_names_its_commands_instead_of_unknown_keys(tmp_path, capsys):
    from etgnn_core import cli

    commands = ["etgnn train configs/u.yaml --member 0", "etgnn committee configs/u.yaml --install"]
    path = tmp_path / RECIPE_FILE
    path.write_text(yaml.safe_dump({"format": 1, "kind": "committee", "name": "u", "commands": commands,
                                    "member_config": {"name": "u"}}))
    assert cli.main(["train", str(path), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "rebuilds a committee" in err and all(c in err for c in commands) and "unknown key" not in err


def test_data_paths_name_offset_and_force_constant_tables(tmp_path):
    """A config's offset table and eps_ionic table are data it reads: hashed into train.yaml, and a
    missing one is a dry-run problem (it said 'data check out' and training then failed)."""
    from etgnn_core.train.recipe import data_hashes, data_paths

    xyz = tmp_path / "set.xyz"
    xyz.write_text("1\n\nSi 0 0 0\n")
    shards = tmp_path / "phonons"
    shards.mkdir()
    for k in range(2):
        np.savez(shards / f"shard_{k}_of_2.npz", ids=np.array([str(k)]))
    cfg = tiny_config(tmp_path, data={"extxyz": str(xyz), "offsets": {"dielectric": str(tmp_path / "part.npz")},
                                      "eps_ionic": str(shards)})
    paths = data_paths(cfg)
    assert set(paths) == {str(xyz), str(tmp_path / "part.npz"), *(str(shards / f"shard_{k}_of_2.npz")
                                                                  for k in range(2))}
    with pytest.raises(Exception, match="part.npz: data file not found"):
        data_hashes(cfg)
    np.savez(tmp_path / "part.npz", ids=np.array(["0"]))
    assert len(data_hashes(cfg)) == 4

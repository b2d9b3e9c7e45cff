"""Point-group reliability warnings (etgnn_core.reliability): the table, its wording, its use at prediction."""

from __future__ import annotations

import json
from pathlib import Path

import ase.build
import pytest
import yaml
from conftest import load_script, rattled_wurtzite, save_tiny_model

from etgnn_core.reliability import (
    RELIABILITY_FILE,
    ReliabilityError,
    add_reliability_warnings,
    known_part_groups,
    load_reliability,
    recipe_of,
    reliability_warning,
)

ROOT = Path(__file__).resolve().parents[1]


def table(**groups) -> dict:
    return {"by": "point_group", "min_crystals": 8, "vanishes": ["m-3m", "432"],
            "groups": {g: {"crystals": n, "components": c, "norm": e} for g, (n, c, e) in groups.items()}}


def test_wording_follows_the_measured_ratios():
    t = table(**{"6mm": (42, 0.93, 0.81), "3m": (15, 1.68, 0.42), "-6m2": (11, 1.46, 2.46), "1": (2, 2.9, 3.5)})
    assert reliability_warning("piezoelectric", "6mm", t) == ""  # better than zeros: nothing to say
    signs = reliability_warning("piezoelectric", "3m", t)
    assert "point group 3m" in signs and "15 crystals" in signs and "1.68x" in signs and "not the signs" in signs
    guess = reliability_warning("piezoelectric", "-6m2", t)
    assert "2.46x" in guess and "guess" in guess
    few = reliability_warning("piezoelectric", "1", t)
    assert "only 2 crystals" in few and "unmeasured" in few
    assert "no crystal of point group 4" in reliability_warning("piezoelectric", "4", t)
    assert reliability_warning("piezoelectric", "m-3m", t) == ""  # the tensor vanishes by symmetry


def test_malformed_tables_name_file_and_key(tmp_path):
    path = tmp_path / RELIABILITY_FILE
    assert load_reliability(tmp_path) == {}
    path.write_text("{not json")
    with pytest.raises(ReliabilityError, match=r"reliability.json: not JSON .*line 1"):
        load_reliability(tmp_path)
    path.write_text(json.dumps({"piezoelectric": {"by": "point_group", "groups": {}}}))
    with pytest.raises(ReliabilityError, match="piezoelectric: missing key.*min_crystals"):
        load_reliability(tmp_path)
    bad = table(**{"3m": (15, 1.68, 0.42)})
    bad["groups"]["3m"]["norm"] = "small"
    path.write_text(json.dumps({"piezoelectric": bad}))
    with pytest.raises(ReliabilityError, match=r"groups\['3m'\]: missing or non-numeric norm"):
        load_reliability(tmp_path)


def test_a_model_folder_with_a_table_warns_by_point_group(tmp_path):
    from etgnn_core.api import load_model

    folder = save_tiny_model(tmp_path, "tiny_piezo", ["piezoelectric"])
    (folder / RELIABILITY_FILE).write_text(json.dumps({"piezoelectric": table(**{"6mm": (20, 1.3, 0.5)})}))
    model = load_model(str(folder))
    wurtzite = ase.build.bulk("ZnO", "wurtzite", a=3.25, c=5.2)  # point group 6mm
    assert any("point group 6mm" in w for w in model.predict(wurtzite).warnings)
    rock_salt = ase.build.bulk("NaCl", "rocksalt", a=5.64)  # m-3m: the tensor vanishes, nothing to say
    assert not any("point group" in w for w in model.predict(rock_salt).warnings)
    strained = rattled_wurtzite(0.2)  # no symmetry left at 0.1 Å: point group 1, unmeasured
    assert any("no crystal of point group 1" in w for w in model.predict(strained).warnings)


def test_molecules_get_no_point_group_warning(tmp_path):
    class Pred:
        atoms = ase.build.molecule("H2O")
        tensors = {"piezoelectric": None}
        warnings: list = []

    class M:
        reliability = {"piezoelectric": table()}

    pred = Pred()
    add_reliability_warnings(M(), [pred])
    assert pred.warnings == []


def test_shipped_table_was_measured_for_the_shipped_recipe():
    """The warnings of universal_piezo describe its own recipe: a retrained committee needs a new table."""
    folder = ROOT / "pretrained" / "universal_piezo"
    tables = load_reliability(folder)
    assert set(tables) == {"piezoelectric"}
    member_config = yaml.safe_load((folder / "train.yaml").read_text())["member_config"]
    assert tables["piezoelectric"]["recipe"] == recipe_of(member_config)
    known = json.loads((folder / "known_parts.json").read_text())["piezoelectric"]
    assert tables["piezoelectric"]["known_part_groups"] == known_part_groups(known)
    assert tables["piezoelectric"]["groups"], "an empty table would never warn"
    # the DFT-contradicted labels it was trained on are named: as the stored DFT runs say, and only those
    piezo_cv = load_script("benchmarks/piezo_cv.py")
    flipped = tables["piezoelectric"].get("sign_flipped_groups", {})
    ids = {i.split("(")[-1].rstrip(")"): g for g, shown in flipped.items() for i in shown}
    assert flipped == piezo_cv.sign_flipped_groups(ids)
    assert "B3BiO6 (mp-23349)" in flipped.get("2", [])  # BiB3O6, a training crystal


def test_groups_with_turned_labels_get_their_own_warning():
    from etgnn_core.reliability import turn_warning

    t = dict(table(**{"-6m2": (11, 0.8, 0.5)}), turn_open_groups=["-6m2", "32"])
    assert reliability_warning("piezoelectric", "-6m2", t) == ""  # it scored well ...
    line = turn_warning("piezoelectric", "-6m2", t)  # ... but its labels mixed two orientations
    assert "point group -6m2" in line and "180°" in line and "signs" in line
    assert turn_warning("piezoelectric", "6mm", t) == "" and turn_warning("piezoelectric", "32", table()) == ""


def test_groups_with_a_sign_flipped_label_get_their_own_warning():
    from etgnn_core.reliability import sign_warning

    t = dict(table(**{"2": (27, 0.9, 0.9)}), sign_flipped_groups={"2": ["B3BiO6 (mp-23349)"]})
    assert reliability_warning("piezoelectric", "2", t) == ""  # it scored better than zeros ...
    line = sign_warning("piezoelectric", "2", t)  # ... against labels DFT contradicts
    assert "point group 2" in line and "mp-23349" in line and "opposite sign" in line and "‖e‖" in line
    assert sign_warning("piezoelectric", "6mm", t) == "" and sign_warning("piezoelectric", "2", table()) == ""
    two = sign_warning("piezoelectric", "2", dict(t, sign_flipped_groups={"2": ["A (mp-1)", "B (mp-2)"]}))
    assert "training crystals A (mp-1), B (mp-2)" in two


def test_sign_flipped_groups_come_from_the_stored_dft_runs():
    piezo_cv = load_script("benchmarks/piezo_cv.py")
    # BiB3O6 (point group 2): DFT of its stored cell gives the label's column with the opposite sign;
    # AlN agrees as stored, and SrLiP's label is turned (the other warning), not sign-flipped
    got = piezo_cv.sign_flipped_groups({"mp-23349": "2", "mp-661": "6mm", "mp-10614": "-6m2"})
    assert got == {"2": ["B3BiO6 (mp-23349)"]}
    assert piezo_cv.sign_flipped_groups({"mp-661": "6mm"}) == {}


def test_point_groups_are_classed_by_what_dft_said_of_their_labels():
    piezo_cv = load_script("benchmarks/piezo_cv.py")
    # SrLiP turned (-6m2), BiB3O6 sign-flipped (2), AlN as stored (6mm); no stored run for mp-1 (mm2); Cd(OH)2
    # (point group 2 here, mp-625565) relaxed away from its cell and gets no verdict, so it cannot confirm a group
    got = piezo_cv.verdict_classes({"mp-10614": "-6m2", "mp-23349": "2", "mp-661": "6mm", "mp-1": "mm2",
                                    "mp-625565": "222"})
    assert got == {"contradicted": ["-6m2", "2"], "confirmed": ["6mm"], "unchecked": ["222", "mm2"]}

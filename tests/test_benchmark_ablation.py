"""benchmarks/ablation.py: a study of another student never shares (and so never replaces) the
default student's stored units, table or plot."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ablation():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("ablation_bench", ROOT / "benchmarks" / "ablation.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _protocol(mod, student):
    return mod.Protocol(student, "0" * 16, 12, 6, 4, 0.003, 8, 300, 500, 500, 1000)


def test_study_names(ablation):
    assert ablation.study_name(ablation.DEFAULT_STUDENT) == "ablation"
    assert ablation.study_name("centerpoint_fast@0.5x+iou+axis") == "ablation@centerpoint_fast@0.5x+iou+axis"
    with pytest.raises(SystemExit, match="--student"):
        ablation.study_name("centerpoint_fast/../x")


def test_another_student_keeps_its_own_units(ablation, tmp_path):
    args = SimpleNamespace(out=tmp_path, runs=tmp_path / "runs", student=ablation.DEFAULT_STUDENT)
    main = ablation.Ablation(args, _protocol(ablation, args.student), tmp_path / "t.pth")
    axis_args = SimpleNamespace(**{**vars(args), "student": "centerpoint_fast@0.5x+iou+axis"})
    axis = ablation.Ablation(axis_args, _protocol(ablation, axis_args.student), tmp_path / "t.pth")
    p_main, p_axis = main.result_path("plain", 0), axis.result_path("plain", 0)
    assert p_main != p_axis and p_main.parent != p_axis.parent
    p_main.parent.mkdir(parents=True)
    p_main.write_text(json.dumps({"row": "plain", "seed": 0, "protocol": main.protocol.to_dict()}))
    # the other study does not see the default student's unit (it would run it again and replace it)
    assert main.stored("plain", 0) is not None
    assert axis.stored("plain", 0) is None and not p_axis.exists()
    assert main.runs != axis.runs  # run directories are per protocol already


def _unit(row, seed, test_ap):
    return {"row": row, "seed": seed, "description": row, "params": 1, "gmacs": 1.0,
            "val": {"mean_moderate_3d": test_ap - 1.0}, "test": {"mean_moderate_3d": test_ap}}


def test_summary_pairs_seeds_against_scipy(ablation):
    """Paired comparisons (b - a by seed) equal scipy's paired t-test, the 24-epoch controls are
    compared with CLEAN-ft12 and with the 12-epoch CaKD student, and the goals are judged as stated."""
    from scipy import stats

    ap = {"plain": [54.6, 55.6, 54.0], "cakd": [61.9, 61.7, 59.9], "plain_e24": [65.3, 63.0, 64.1],
          "clean_0.5x_ft12": [66.6, 65.1, 62.8], "scratch_0.5x_ft12": [60.7, 58.2, 58.5]}
    units = [_unit(r, s, v[s]) for r, v in ap.items() for s in range(3)] + [_unit("teacher", None, 71.6)]
    comps = ablation.summarise(units, epochs=12)["comparisons"]
    for name, a, b in [("cakd_vs_plain", "plain", "cakd"), ("cakd_vs_plain_e24", "plain_e24", "cakd"),
                       ("clean_0.5x_ft12_vs_plain_e24", "plain_e24", "clean_0.5x_ft12"),
                       ("clean_0.5x_ft12_vs_scratch", "scratch_0.5x_ft12", "clean_0.5x_ft12")]:
        c = comps[name]
        d = [x - y for x, y in zip(ap[b], ap[a])]
        assert c["mean"] == pytest.approx(sum(d) / 3)
        assert c["standard_error"] == pytest.approx(stats.sem(d))
        assert c["p_paired_t"] == pytest.approx(stats.ttest_rel(ap[b], ap[a]).pvalue)
    assert comps["cakd_vs_plain"]["met"] is True  # +6.3 beyond 2 SE
    assert comps["cakd_vs_plain_e24"]["mean"] < 0 and comps["cakd_vs_plain_e24"]["met"] is None  # reported, no goal
    assert comps["clean_0.5x_ft12_vs_plain_e24"]["met"] is True  # goal ">= plain" is on the mean only
    assert comps["teacher_minus_clean_0.5x_ft12"]["mean"] == pytest.approx(71.6 - sum(ap["clean_0.5x_ft12"]) / 3)
    assert comps["teacher_minus_clean_0.5x_ft12"]["met"] is False


def test_importance_criteria_compared_at_each_finetune_length(ablation):
    """Masked importance is compared with L1 and random at the same FLOPs *and* the same fine-tuning
    length (the converged _ft<n> rows as well as the default one), never across lengths."""
    from scipy import stats

    rows = ablation.row_names([0.5], ["masked", "l1", "random"], [(0.5, 12)], epochs=12)
    assert {"prune_l1_0.5x_ft12", "prune_random_0.5x_ft12", "prune_masked_0.5x_ft12", "prune_l1_0.5x"} <= set(rows)
    ap = {"prune_masked_0.5x_ft12": [64.7, 63.6, 61.7], "prune_l1_0.5x_ft12": [62.0, 63.9, 60.1],
          "prune_random_0.5x_ft12": [60.0, 61.0, 59.5], "prune_l1_0.5x": [55.0, 56.0, 57.0]}
    units = [_unit(r, s, v[s]) for r, v in ap.items() for s in range(3)]
    comps = ablation.summarise(units, epochs=12)["comparisons"]
    for other in ("l1", "random"):
        c = comps[f"masked_vs_{other}_0.5x_ft12"]
        a, b = ap[f"prune_{other}_0.5x_ft12"], ap["prune_masked_0.5x_ft12"]
        assert (c["a"], c["b"]) == (f"prune_{other}_0.5x_ft12", "prune_masked_0.5x_ft12")
        assert c["mean"] == pytest.approx(sum(x - y for x, y in zip(b, a)) / 3)
        assert c["p_paired_t"] == pytest.approx(stats.ttest_rel(b, a).pvalue)
    # prune_masked_0.5x (6 fine-tuning epochs) is absent: no comparison across fine-tuning lengths
    assert "masked_vs_l1_0.5x" not in comps


def test_training_length_of_every_row_kind(ablation):
    rows = ablation.row_names([0.5, 0.3], ["masked", "l1"], [(0.5, 12)], epochs=12)
    got = {r: ablation.training_length(r, 12, 6) for r in rows}
    assert got["teacher"] is None
    assert got["plain"] == ("plain", 12) and got["cakd"] == ("cakd", 12) and got["plain_e24"] == ("plain", 24)
    assert got["prune_masked_0.5x"] == ("prune_masked_0.5x", 18)
    assert got["prune_masked_0.5x_ft12"] == ("prune_masked_0.5x", 24)
    assert got["scratch_0.3x"] == ("scratch_0.3x", 18) and got["clean_0.5x_ft12"] == ("clean_0.5x", 24)
    # rows of one pipeline at different lengths share its name: the figure joins them by a line
    assert {got[r][0] for r in rows if r.startswith("clean_0.5x")} == {"clean_0.5x"}


def test_distill_overrides_parse_typed_and_refuse_bad_input(ablation):
    got = ablation.parse_distill(["la_class_aware=false", "la_target=iou_branch", "la_alpha=0.25", "so_max=32",
                                  "la_class_norm=false"])  # the default value is no override
    assert got == {"la_class_aware": False, "la_target": "iou_branch", "la_alpha": 0.25, "so_max": 32}
    assert ablation.parse_distill([]) == {}
    for bad, msg in [(["la_alpha"], "KEY=VALUE"), (["nope=1"], "unknown"), (["la_target=anchors"], "la_target"),
                     (["label_assignment=false"], "kd_so and cakd"), (["la_class_aware=maybe"], "--distill")]:
        with pytest.raises(SystemExit, match=msg):
            ablation.parse_distill(bad)


def test_a_recipe_is_its_own_study_and_shares_the_rows_without_kd(ablation, tmp_path):
    """--distill: the default recipe's digest and stored units are unchanged; the new recipe's KD rows
    get their own units, runs and name, while teacher / plain / plain_e<m> are read from (and
    written to) the default recipe's study."""
    import hashlib

    student = "centerpoint_fast@0.5x+iou+axis"
    base = _protocol(ablation, student)
    old = {"student": student, "teacher_sha": "0" * 16, "epochs": 12, "finetune_epochs": 6, "batch_size": 4,
           "lr": 0.003, "calib_frames": 8, "frames": 300, "val_frames": 500, "test_frames": 500, "test_seed": 1000}
    assert base.to_dict() == old  # the dict the stored units carry, without a distill key
    assert base.digest() == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:10]
    rec = ablation.Protocol(**{**old, "distill": {"la_class_aware": False}})
    assert rec.digest() != base.digest() and rec.without_distill() == base
    assert ablation.study_name(student, rec.distill) == f"ablation@{student}@la_class_aware=false"
    args = SimpleNamespace(out=tmp_path, runs=tmp_path / "runs", student=student)
    a_base = ablation.Ablation(args, base, tmp_path / "t.pth")
    a_rec = ablation.Ablation(args, rec, tmp_path / "t.pth")
    for row in ("plain", "plain_e24", "cakd"):
        p = a_base.result_path(row, 0)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"row": row, "seed": 0, "protocol": base.to_dict()}))
    assert a_rec.stored("plain", 0) is not None and a_rec.stored("plain_e24", 0) is not None
    assert a_rec.result_path("plain", 0) == a_base.result_path("plain", 0)
    assert a_rec.stored("cakd", 0) is None  # a KD row of the new recipe: its own unit, run again
    assert a_rec.result_path("cakd", 0).parent.name == f"ablation@{student}@la_class_aware=false"
    assert a_rec.runs_of("cakd") != a_rec.runs_of("plain") == a_base.runs_of("plain")
    assert a_rec.distill_cfg().la_class_aware is False and a_rec.distill_cfg(False).label_assignment is False
    assert a_base.distill_cfg().la_class_aware is True


def test_kd_so_is_shared_by_recipes_that_differ_only_in_label_assignment(ablation, tmp_path):
    """kd_so never reads the la_* fields: a recipe that changes only those reads and writes the kd_so
    units (and runs) of the recipe without them; any other override makes kd_so its own unit."""
    student = "centerpoint_fast@0.5x+iou+axis"
    base = _protocol(ablation, student)
    la_only = ablation.Protocol(**{**base.to_dict(), "distill": {"la_class_norm": True, "la_box_gamma": 0.0}})
    mixed = ablation.Protocol(**{**base.to_dict(), "distill": {"la_class_norm": True, "so_max": 32}})
    args = SimpleNamespace(out=tmp_path, runs=tmp_path / "runs", student=student)
    a_base, a_la, a_mixed = (ablation.Ablation(args, p, tmp_path / "t.pth") for p in (base, la_only, mixed))
    for row in ("kd_so", "kd_so_e24"):
        assert a_la.result_path(row, 1) == a_base.result_path(row, 1)
        assert a_la.runs_of(row) == a_base.runs_of(row) and a_la.protocol_of(row) == base.to_dict()
        # so_max is read by kd_so: the unit of the recipe with only so_max=32
        assert a_mixed.protocol_of(row) == {**base.to_dict(), "distill": {"so_max": 32}}
        assert a_mixed.result_path(row, 1).parent.name == f"ablation@{student}@so_max=32"
    p = a_base.result_path("kd_so", 1)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"row": "kd_so", "seed": 1, "protocol": base.to_dict()}))
    assert a_la.stored("kd_so", 1) is not None and a_mixed.stored("kd_so", 1) is None
    # the label-assignment rows stay the recipe's own
    assert a_la.result_path("cakd", 1) != a_base.result_path("cakd", 1)
    assert a_la.runs_of("prune_masked_0.5x_ft12") == a_la.runs_of("cakd") != a_base.runs_of("cakd")


def test_long_finetune_default_follows_the_targets(ablation, tmp_path):
    """The default longer fine-tuning is T:12 for each --targets budget: one budget alone is a valid
    command (it stopped at '--long-finetune: 0.3:12' when the default named both budgets)."""
    common = ["--out", str(tmp_path), "--runs", str(tmp_path / "runs"), "--rows", "no_such_row"]
    with pytest.raises(SystemExit, match="--rows: unknown") as e:
        ablation.main(["--targets", "0.5", *common])
    assert "prune_masked_0.5x_ft12" in str(e.value) and "0.3x" not in str(e.value)
    with pytest.raises(SystemExit, match="--rows: unknown") as e:
        ablation.main(common)
    assert "clean_0.3x_ft12" in str(e.value) and "clean_0.5x_ft12" in str(e.value)


def test_list_valued_recipe_names_a_study(ablation):
    d = ablation.parse_distill(["class_weights=[1,3,3]"])
    assert d == {"class_weights": [1.0, 3.0, 3.0]}
    assert ablation.study_name("centerpoint_fast@0.5x+iou+axis", d) == \
        "ablation@centerpoint_fast@0.5x+iou+axis@class_weights=1.0+3.0+3.0"


def test_a_unit_trains_in_one_process_at_a_time(ablation, tmp_path):
    import fcntl
    import threading
    import time

    args = SimpleNamespace(out=tmp_path, runs=tmp_path / "runs", student=ablation.DEFAULT_STUDENT)
    abl = ablation.Ablation(args, _protocol(ablation, args.student), tmp_path / "t.pth")
    entered = threading.Event()

    def second():
        with abl.unit_lock("plain", 0):
            entered.set()

    with abl.unit_lock("plain", 0):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        assert not entered.is_set()  # held: the second one waits
    t.join(5)
    assert entered.is_set()
    lock = abl.runs_of("plain") / "plain_s0.lock"
    with open(lock, "a") as fh:  # released: free for anyone
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_iterative_pruning_rows_and_their_comparisons(ablation, tmp_path):
    """--iterative 0.3:2 adds the masked-pruned and CLEAN rows pruned in 2 rounds, at each fine-tuning
    length of that budget; they are compared with one-shot pruning at the same FLOPs and fine-tuning
    epochs (paired), with the scratch and equal-steps controls, and never stand in for the one-shot row
    in the importance comparisons."""
    from scipy import stats

    rows = ablation.row_names([0.5, 0.3], ["masked", "l1"], [(0.3, 12)], epochs=12, iterative=[(0.3, 2)])
    it_rows = [r for r in rows if "_it" in r]
    assert it_rows == ["prune_masked_0.3x_it2", "clean_0.3x_it2", "prune_masked_0.3x_it2_ft12", "clean_0.3x_it2_ft12"]
    assert ablation.split_iter("prune_masked_0.3x_it2") == ("prune_masked_0.3x", 2)
    assert ablation.split_iter("prune_masked_0.3x") == ("prune_masked_0.3x", 1)
    assert ablation.training_length("clean_0.3x_it2_ft12", 12, 6) == ("clean_0.3x_it2", 24)
    assert "2 rounds" in ablation.describe("clean_0.3x_it2_ft12") and "12 fine-tuning epochs" in ablation.describe(
        "clean_0.3x_it2_ft12")
    ap = {"clean_0.3x_ft12": [46.1, 47.2, 43.4], "clean_0.3x_it2_ft12": [49.0, 48.1, 47.9],
          "scratch_0.3x_ft12": [40.0, 41.0, 39.5], "plain_e24": [65.3, 61.1, 67.2],
          "prune_masked_0.3x_ft12": [45.0, 46.0, 43.0], "prune_masked_0.3x_it2_ft12": [50.0, 49.0, 48.0],
          "prune_l1_0.3x_ft12": [44.0, 45.0, 42.0]}
    units = [_unit(r, s, v[s]) for r, v in ap.items() for s in range(3)] + [_unit("teacher", None, 71.6)]
    comps = ablation.summarise(units, epochs=12)["comparisons"]
    c = comps["clean_0.3x_it2_ft12_vs_one_shot"]
    assert (c["a"], c["b"]) == ("clean_0.3x_ft12", "clean_0.3x_it2_ft12")
    a, b = ap["clean_0.3x_ft12"], ap["clean_0.3x_it2_ft12"]
    assert c["mean"] == pytest.approx(sum(y - x for x, y in zip(a, b)) / 3)
    assert c["p_paired_t"] == pytest.approx(stats.ttest_rel(b, a).pvalue)
    assert comps["clean_0.3x_it2_ft12_vs_scratch"]["a"] == "scratch_0.3x_ft12"
    assert comps["clean_0.3x_it2_ft12_vs_plain_e24"]["a"] == "plain_e24"
    assert "teacher_minus_clean_0.3x_it2_ft12" in comps
    # the importance comparison stays one-shot masked vs one-shot L1
    assert comps["masked_vs_l1_0.3x_ft12"]["b"] == "prune_masked_0.3x_ft12"
    for bad, msg in [(["0.4:2"], "one of --targets"), (["0.3:1"], "K >= 2"), (["0.3"], "T:K")]:
        with pytest.raises(SystemExit, match=msg):
            ablation.parse_iterative(bad, [0.5, 0.3])
    common = ["--out", str(tmp_path), "--runs", str(tmp_path / "runs"), "--rows", "no_such_row"]
    with pytest.raises(SystemExit, match="--rows: unknown") as e:
        ablation.main(["--iterative", "0.3:2", *common])
    assert "clean_0.3x_it2_ft12" in str(e.value)


def test_other_training_settings_are_a_study_of_their_own(ablation, tmp_path):
    """--epochs 24 (or any setting other than the defaults) writes to its own folder: before, its units
    landed in the default study's folder, where a unit of either protocol replaced the other's."""
    student = "centerpoint_fast@0.5x+iou+axis"
    base = _protocol(ablation, student)
    e24 = ablation.Protocol(**{**base.to_dict(), "epochs": 24})
    assert ablation.protocol_settings(base.to_dict()) == {}
    assert ablation.protocol_settings(e24.to_dict()) == {"epochs": 24}
    assert ablation.study_name(student, None, {"epochs": 24, "lr": 0.0015}) == f"ablation@{student}@epochs=24,lr=0.0015"
    args = SimpleNamespace(out=tmp_path, runs=tmp_path / "runs", student=student, keep_dir=tmp_path / "keep")
    a_base, a_e24 = ablation.Ablation(args, base, tmp_path / "t.pth"), ablation.Ablation(args, e24, tmp_path / "t.pth")
    for row in ("plain", "cakd", "clean_0.5x_ft12"):
        assert a_base.result_path(row, 0).parent.name == f"ablation@{student}"
        assert a_e24.result_path(row, 0).parent.name == f"ablation@{student}@epochs=24"
    p = a_base.result_path("cakd", 0)
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({"row": "cakd", "seed": 0, "protocol": base.to_dict()}))
    assert a_e24.stored("cakd", 0) is None and a_base.stored("cakd", 0) is not None and p.is_file()
    assert a_e24.runs_of("cakd") != a_base.runs_of("cakd")
    assert a_e24.kept("cakd", 0) != a_base.kept("cakd", 0)


def test_a_longer_study_reads_its_unpruned_students_from_the_default_study(ablation, tmp_path):
    """--epochs 24: plain / kd_so / cakd of that study are the same trainings as the default study's
    plain_e24 / kd_so_e24 / cakd_e24 units (and the teacher's evaluation reads no training setting):
    they are read from there, renamed, instead of being trained again; never across any other setting,
    never for a pruned row, and a unit of the study's own wins."""
    student = "centerpoint_fast@0.5x+iou+axis"
    base = _protocol(ablation, student)
    e24 = ablation.Protocol(**{**base.to_dict(), "epochs": 24})
    lr = ablation.Protocol(**{**base.to_dict(), "epochs": 24, "lr": 0.0015})
    args = SimpleNamespace(out=tmp_path, runs=tmp_path / "runs", student=student, keep_dir=tmp_path / "keep")
    a_base = ablation.Ablation(args, base, tmp_path / "t.pth")
    a_e24, a_lr = ablation.Ablation(args, e24, tmp_path / "t.pth"), ablation.Ablation(args, lr, tmp_path / "t.pth")
    for row, seed, ap in (("plain_e24", 0, 64.5), ("cakd_e24", 0, 72.9), ("plain_e36", 0, 1.0),
                          ("teacher", None, 71.6), ("prune_masked_0.5x_ft12", 0, 9.0)):
        p = a_base.result_path(row, seed)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"row": row, "seed": seed, "protocol": base.to_dict(), "test": {"mean_moderate_3d": ap}}))
    u = a_e24.stored("plain", 0)
    assert u["row"] == "plain" and u["test"]["mean_moderate_3d"] == 64.5 and u["protocol"] == base.to_dict()
    assert u["same_training_as"] == {"study": f"ablation@{student}", "row": "plain_e24", "file": "plain_e24_s0.json"}
    assert u["description"] == ablation.describe("plain")
    assert a_e24.stored("cakd", 0)["test"]["mean_moderate_3d"] == 72.9
    assert a_e24.stored("teacher", None)["test"]["mean_moderate_3d"] == 71.6
    # its box errors are the other study's business: never computed from this study's predictions
    # (here a stray pred_test folder) nor stored here as a unit of this study
    (a_e24.runs_of("cakd") / "cakd_s0" / "pred_test").mkdir(parents=True)
    assert a_e24.add_box_errors(a_e24.stored("cakd", 0), predict=True) is False
    assert not a_e24.result_path("cakd", 0).exists()
    assert a_e24.stored("plain", 1) is None  # no such seed
    assert a_e24.stored("kd_so", 0) is None  # no kd_so_e24 stored
    assert a_e24.stored("prune_masked_0.5x_ft12", 0) is None  # a pruned row starts from this study's cakd
    assert a_e24.stored("plain_e36", 0) is None  # plain_e36 of a 24-epoch study is another training
    assert a_lr.stored("plain", 0) is None  # another lr: another training
    assert a_base.stored("plain", 0) is None  # the default study has nothing to alias
    # a unit the study stored itself wins
    own = a_e24.result_path("plain", 0)
    own.parent.mkdir(parents=True, exist_ok=True)
    own.write_text(json.dumps({"row": "plain", "seed": 0, "protocol": e24.to_dict(), "test": {"mean_moderate_3d": 60.0}}))
    assert a_e24.stored("plain", 0)["test"]["mean_moderate_3d"] == 60.0 and "same_training_as" not in a_e24.stored("plain", 0)
    # the table says which rows were read from elsewhere
    units = [a_e24.stored("cakd", 0), a_e24.stored("teacher", None)]
    doc = {"date": "2026-12-04", "machine": "m", "protocol": e24.to_dict(), "row_order": ["teacher", "cakd"],
           "summary": {"rows": {}, "comparisons": {}}, "units": units, "missing": []}
    md = ablation.render(doc)
    assert f"cakd = `cakd_e24` of `ablation@{student}`, teacher = `teacher` of `ablation@{student}`" in md

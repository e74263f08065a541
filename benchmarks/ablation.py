"""CLEAN ablation with error bars: every row trained with several seeds, the table computed on a
held-out test split of its own seed; the val split is where any hyper-parameter choice is made
(this script makes none: it reports val beside test so that choices never need the test split).

    .venv/bin/python benchmarks/ablation.py                          # every row, seeds 0 1 2
    .venv/bin/python benchmarks/ablation.py --rows plain cakd --seeds 0 1 2
    .venv/bin/python benchmarks/ablation.py --report                 # table from the finished units only

Rows (student ``centerpoint_fast@0.5x+iou``, teacher ``voxel_rcnn_fast`` from
``benchmarks/checkpoints``, see ``benchmarks/teacher.py``):

    teacher | plain | kd_so (student-oriented KD) | cakd (+ label-assignment KD)
    | prune_<method>_<t>x (from cakd, CaKD fine-tuning; masked / l1 / random importance)
    | scratch_<t>x (the masked-pruned architecture trained from scratch, as many steps as cakd + fine-tuning)
    | clean_<t>x (prune_masked + IoU-aware redundancy elimination), at --targets (0.5 and 0.3 x FLOPs)
    | prune_<method>_<t>x_ft<n>, scratch_<t>x_ft<n>, clean_<t>x_ft<n>: the same with <n> fine-tuning epochs
      instead of --finetune-epochs (the scratch control again as many steps), at --long-finetune T:N
    | plain_e<m>, cakd_e<m> (m = --epochs + n): the unpruned students trained as many epochs as the
      CaKD student + <n> fine-tuning epochs took, the equal-steps controls of the _ft<n> rows

Seeds are paired: seed k of every row starts from the same initial weights and data order (plain
and KD students alike) and the pruned rows of seed k start from cakd seed k. Data: ``--frames``
train frames and ``--val-frames`` val frames of data seed 0 (the teacher's train split), and
``--test-frames`` frames of data seed ``--test-seed`` that no choice looks at.

Resumable: each finished (row, seed) writes ``benchmarks/results/ablation/<row>_s<seed>.json``
(commit them: a fresh checkout skips those units); a unit whose protocol differs from the current
one is run again. Run directories (``benchmarks/runs/ablation/<protocol hash>/``) resume an
interrupted training; another protocol gets other directories, so no model of one protocol is ever
reported under another.
Writes ``benchmarks/results/ablation.{json,md}`` and ``ablation_accuracy_vs_compute.png``. Another
``--student`` is another study: its units, table and plot are named ``ablation@<student>`` (e.g.
``ablation@centerpoint_fast@0.5x+iou+axis/``), so it never replaces the default student's results.
``--distill KEY=VALUE ...`` changes the CaKD recipe (``DistillConfig`` fields, e.g.
``la_class_aware=false``) of every KD row (kd_so, cakd, the pruned rows' fine-tuning, and through
the pruned architecture the scratch rows): another protocol and another study,
``ablation@<student>@<key>=<value>,...``. The rows that use no KD (teacher, plain, plain_e<m>) are
those of the study without it, shared and never run twice; so are the kd_so rows (KD without label
assignment) of the recipes that differ only in label-assignment fields (``la_*``), which they never
read: theirs are the kd_so units of the study without those fields.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import math
import re
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from clean_deploy.atomic import atomic_write
from clean_deploy.bench.results import markdown_table

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("Car", "Pedestrian", "Cyclist")
KEPT_TEACHER = ROOT / "benchmarks" / "checkpoints" / "teacher_voxel_rcnn_fast.pth"
PRUNE_METHODS = ("masked", "l1", "random")
DEFAULT_STUDENT = "centerpoint_fast@0.5x+iou"
#: version of the stored true-positive box errors; units holding another are computed again from their
#: test predictions (2: height between box centres, not bottoms; axis-off and reversed fractions)
TP_ERRORS_VERSION = 2

sys.path.insert(0, str(ROOT / "benchmarks"))
from baselines import ensure_data  # noqa: E402  (the same synthetic-data cache)


#: the training and data settings of the default protocol (the CLI's defaults); a study with others is
#: a study of its own (:func:`study_name`), never stored over this one's units
PROTOCOL_DEFAULTS = {"epochs": 12, "finetune_epochs": 6, "batch_size": 4, "lr": 0.003, "calib_frames": 8,
                     "frames": 300, "val_frames": 500, "test_frames": 500, "test_seed": 1000}


def protocol_settings(protocol: dict) -> dict:
    """The settings of a protocol (as a dict) that differ from :data:`PROTOCOL_DEFAULTS`."""
    return {k: protocol[k] for k, v in PROTOCOL_DEFAULTS.items() if k in protocol and protocol[k] != v}


@dataclass(frozen=True)
class Protocol:
    """Everything a unit's result depends on; a stored result with another protocol is not reused."""

    student: str
    teacher_sha: str
    epochs: int
    finetune_epochs: int
    batch_size: int
    lr: float
    calib_frames: int
    frames: int
    val_frames: int
    test_frames: int
    test_seed: int
    #: DistillConfig fields that differ from its defaults (--distill); left out of the dict (and the
    #: digest) when empty, so the units stored before this field existed stay valid
    distill: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        if not d["distill"]:
            del d["distill"]
        return d

    def without_distill(self) -> "Protocol":
        """The protocol of the rows that use no KD (teacher, plain, plain_e<m>): shared by every recipe."""
        return replace(self, distill={})

    def without_label_assignment(self) -> "Protocol":
        """The protocol of the rows distilled without label assignment (kd_so, kd_so_e<m>): the
        recipe without its ``la_*`` overrides, which such a row never reads (shared by the recipes
        that differ only there)."""
        from clean_deploy.compress.config import DistillConfig

        la = set(DistillConfig.label_assignment_fields())
        return replace(self, distill={k: v for k, v in self.distill.items() if k not in la})

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def row_names(targets: list[float], methods: list[str], long_finetune: list[tuple[float, int]] = (),
              epochs: int = 12, iterative: list[tuple[float, int]] = ()) -> list[str]:
    rows = ["teacher", "plain", "kd_so", "cakd"]
    for t in targets:
        rows += [f"prune_{m}_{t:g}x" for m in methods] + [f"scratch_{t:g}x", f"clean_{t:g}x"]
        for lt, n in long_finetune:
            if lt == t:
                rows += [f"prune_{m}_{t:g}x_ft{n}" for m in methods] + [f"scratch_{t:g}x_ft{n}", f"clean_{t:g}x_ft{n}"]
        for it, k in iterative:
            if it == t:  # masked importance only (the CLEAN rows), at each fine-tuning length of this budget
                for suffix in [""] + [f"_ft{n}" for lt, n in long_finetune if lt == t]:
                    rows += [f"prune_masked_{t:g}x_it{k}{suffix}", f"clean_{t:g}x_it{k}{suffix}"]
    for m in sorted({epochs + n for _, n in long_finetune}):
        rows += [f"plain_e{m}", f"cakd_e{m}"]
    return rows


def split_row(row: str) -> tuple[str, int | None]:
    """``prune_masked_0.5x_ft12`` -> (``prune_masked_0.5x``, 12); a row without the suffix -> (row, None)."""
    m = re.fullmatch(r"(.+)_ft(\d+)", row)
    return (m.group(1), int(m.group(2))) if m else (row, None)


def split_iter(base: str) -> tuple[str, int]:
    """``prune_masked_0.3x_it2`` -> (``prune_masked_0.3x``, 2): pruned in 2 prune -> fine-tune rounds
    (the fine-tuning epochs split between them); any other -> (base, 1)."""
    m = re.fullmatch(r"(.+)_it(\d+)", base)
    return (m.group(1), int(m.group(2))) if m else (base, 1)


def split_epochs(row: str) -> tuple[str, int | None]:
    """``plain_e24`` -> (``plain``, 24): an unpruned student trained 24 epochs instead of --epochs;
    any other row -> (row, None)."""
    m = re.fullmatch(r"(plain|kd_so|cakd)_e(\d+)", row)
    return (m.group(1), int(m.group(2))) if m else (row, None)


def training_length(row: str, epochs: int, finetune_epochs: int) -> tuple[str, int] | None:
    """(pipeline, total training epochs) of a row: ``plain_e24`` -> (``plain``, 24),
    ``prune_masked_0.5x_ft12`` -> (``prune_masked_0.5x``, epochs + 12), ``clean_0.5x`` -> (``clean_0.5x``,
    epochs + finetune_epochs) (a pruned row counts its CaKD parent's epochs; a scratch row trains as
    many); None for the teacher (trained by its own recipe)."""
    if row == "teacher":
        return None
    student, ep = split_epochs(row)
    if student in ("plain", "kd_so", "cakd"):
        return student, epochs if ep is None else ep
    base, ft = split_row(row)
    return base, epochs + (finetune_epochs if ft is None else ft)


def _parse_budget_pairs(items: list[str], targets: list[float], flag: str, letter: str, what: str, example: str,
                        least: int) -> list[tuple[float, int]]:
    """``T:<letter>`` items of ``flag`` -> [(FLOPs target, count)], T one of ``targets`` and count >= ``least``."""
    out = []
    for item in items:
        t, _, n = item.partition(":")
        try:
            pair = (float(t), int(n))
        except ValueError:
            raise SystemExit(f"{flag}: {item!r} is not T:{letter} (a FLOPs target and {what}, e.g. {example})")
        if pair[0] not in targets or pair[1] < least:
            raise SystemExit(f"{flag}: {item!r}: T must be one of --targets {targets} and {letter} >= {least}")
        out.append(pair)
    return out


def parse_iterative(items: list[str], targets: list[float]) -> list[tuple[float, int]]:
    return _parse_budget_pairs(items, targets, "--iterative", "K", "a number of rounds", "0.3:2", 2)


def parse_long_finetune(items: list[str], targets: list[float]) -> list[tuple[float, int]]:
    return _parse_budget_pairs(items, targets, "--long-finetune", "N", "an epoch count", "0.5:12", 1)


def describe(row: str) -> str:
    student, ep = split_epochs(row)
    if ep is not None:
        return describe(student) + f", {ep} epochs (equal steps to the _ft rows)"
    base, ft = split_row(row)
    if ft is not None:
        if base.startswith("scratch_"):
            return f"pruned architecture ({base.split('_')[1]}) from scratch, as many steps as cakd + {ft} fine-tuning epochs"
        return describe(base) + f", {ft} fine-tuning epochs"
    core, k = split_iter(row)
    if k > 1:
        return describe(core) + f", iteratively in {k} rounds (fine-tuning split between them)"
    if row.startswith("prune_"):
        _, m, t = row.split("_")
        return f"pruned to {t} FLOPs, {m} importance, CaKD fine-tuning"
    if row.startswith("scratch_"):
        return f"pruned architecture ({row.split('_')[1]}) from scratch, equal steps"
    if row.startswith("clean_"):
        return f"CLEAN at {row.split('_')[1]} FLOPs (masked pruning + CaKD + IoU-aware RE)"
    return {"teacher": "teacher (two-stage)", "plain": "student, plain training",
            "kd_so": "+ student-oriented KD", "cakd": "+ label-assignment KD (CaKD)"}[row]


def study_name(student: str, distill: dict | None = None, settings: dict | None = None) -> str:
    """The name of a study's results: ``ablation`` for the default student, ``ablation@<student>``
    for another, then ``@<setting>=<value>,...`` for training / data settings other than
    :data:`PROTOCOL_DEFAULTS` (e.g. ``@epochs=24``) and ``@<key>=<value>,...`` for a CaKD recipe other
    than the default (a stored unit of another protocol is run again and replaced, so two studies must
    not share a folder)."""
    if not re.fullmatch(r"[A-Za-z0-9_.@+-]+", student):
        raise SystemExit(f"--student: {student!r} has characters a file name should not carry")
    name = "ablation" if student == DEFAULT_STUDENT else f"ablation@{student}"
    if settings:
        name += "@" + ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(settings.items()))
    if distill:
        tag = ",".join(f"{k}={distill_value(v)}" for k, v in sorted(distill.items()))
        if not re.fullmatch(r"[A-Za-z0-9_.,=+-]+", tag):
            raise SystemExit(f"--distill: {tag!r} has characters a file name should not carry")
        name += f"@{tag}"
    return name


def distill_value(v) -> str:
    """A --distill value as the CLI spells it (``false``, ``0.25``, ``iou_branch``); a list's items
    joined by ``+`` (``1.0+3.0+3.0``), as file names carry them."""
    if isinstance(v, (list, tuple)):
        return "+".join(distill_value(x) for x in v)
    return v if isinstance(v, str) else json.dumps(v)


#: rows that use no KD (their units are those of the study without --distill)
def uses_kd(row: str) -> bool:
    return not (row == "teacher" or split_epochs(row)[0] == "plain")


def parse_distill(items: list[str]) -> dict:
    """``["la_class_aware=false", "la_target=iou_branch"]`` -> the DistillConfig fields that differ
    from its defaults, values typed as the config's (JSON literals; anything else a string)."""
    from clean_deploy.compress.config import DistillConfig

    raw = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--distill: {item!r} is not KEY=VALUE (a DistillConfig field, e.g. la_class_aware=false)")
        if key == "label_assignment":
            raise SystemExit("--distill: label_assignment is what tells the kd_so and cakd rows apart; it is not an override")
        try:
            raw[key] = json.loads(text)
        except json.JSONDecodeError:
            raw[key] = text
    try:
        cfg = DistillConfig.from_dict(raw)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"--distill: {e}") from None
    default = DistillConfig().to_dict()
    return {k: v for k, v in cfg.to_dict().items() if k in raw and v != default[k]}


class Ablation:
    def __init__(self, args, protocol: Protocol, teacher: Path) -> None:
        self.args, self.protocol, self.teacher = args, protocol, teacher
        self.runs = args.runs / protocol.digest()
        # the rows without KD: those of the study without --distill (its runs, its units); the rows
        # without label assignment: those of the study without its la_* overrides
        self.base = protocol.without_distill()

    def row_protocol(self, row: str) -> Protocol:
        """The protocol (recipe) that ``row``'s training reads: none for the rows without KD, the
        recipe without its label-assignment fields for kd_so, the whole recipe otherwise."""
        if not uses_kd(row):
            return self.base
        if split_epochs(row)[0] == "kd_so":
            return self.protocol.without_label_assignment()
        return self.protocol

    def protocol_of(self, row: str) -> dict:
        return self.row_protocol(row).to_dict()

    def runs_of(self, row: str) -> Path:
        return self.args.runs / self.row_protocol(row).digest()

    def distill_cfg(self, label_assignment: bool = True):
        """The CaKD recipe of this study (--distill over the defaults)."""
        from clean_deploy.compress.config import DistillConfig

        return DistillConfig.from_dict({**self.protocol.distill, "label_assignment": label_assignment})

    # ------------------------------------------------------------------ helpers
    def tcfg(self, epochs: int, seed: int, lr: float | None = None):
        from clean_deploy.config import TrainConfig

        return TrainConfig(epochs=epochs, batch_size=self.args.batch_size, lr=lr or self.args.lr,
                           num_workers=self.args.workers, seed=seed)

    def result_path(self, row: str, seed: int | None) -> Path:
        rp = self.row_protocol(row)
        study = self.args.out / study_name(self.args.student, rp.distill, protocol_settings(rp.to_dict()))
        return study / (f"{row}.json" if seed is None else f"{row}_s{seed}.json")

    def stored(self, row: str, seed: int | None) -> dict | None:
        p = self.result_path(row, seed)
        if not p.is_file():
            return self.equivalent(row, seed)
        r = json.loads(p.read_text())
        if r.get("protocol") != self.protocol_of(row):
            print(f"[ablation] {p.name}: stored with another protocol, running it again", flush=True)
            return self.equivalent(row, seed)
        return r

    def equivalent(self, row: str, seed: int | None) -> dict | None:
        """The stored unit of another study that is (row, seed) under another name, or None.

        In a study with ``--epochs E`` other than the default, an unpruned student (plain, kd_so, cakd)
        is trained exactly as the ``<row>_e<E>`` control of the study with the default epochs and
        otherwise equal settings (the same call: E epochs, the seed's initial weights and data order,
        the same recipe), and the teacher's evaluation reads no training setting at all. Such a unit is
        read from there (renamed, with ``same_training_as`` naming its study, row and file) instead of being
        trained again; the pruned rows still start from this study's own CaKD checkpoints."""
        rp = self.row_protocol(row)
        default = PROTOCOL_DEFAULTS["epochs"]
        if rp.epochs == default:
            return None
        if row == "teacher":
            other_row = row
        elif row in ("plain", "kd_so", "cakd"):
            other_row = f"{row}_e{rp.epochs}"
        else:
            return None
        other = replace(rp, epochs=default)
        p = (self.args.out / study_name(self.args.student, other.distill, protocol_settings(other.to_dict()))
             / (f"{other_row}.json" if seed is None else f"{other_row}_s{seed}.json"))
        if not p.is_file():
            return None
        r = json.loads(p.read_text())
        if r.get("protocol") != other.to_dict():
            return None
        return {**r, "row": row, "description": describe(row),
                "same_training_as": {"study": p.parent.name, "row": other_row, "file": p.name}}

    def student_cfg(self):
        from clean_deploy.models.zoo import get_config

        return get_config(self.args.student)

    def fresh_student(self, seed: int, cfg=None):
        """The initial weights of seed ``seed`` (of ``cfg``, default the student): those the plain
        Trainer builds for that seed."""
        import torch

        from clean_deploy.models.detector import build_detector

        torch.manual_seed(seed)
        return build_detector(cfg or self.student_cfg())

    def evaluate(self, ckpt: Path, row: str, seed: int | None, extra: dict) -> dict:
        from clean_deploy.bench.model_info import load_frames, model_summary
        from clean_deploy.bench.run import machine_description
        from clean_deploy.eval.tp_errors import tp_errors_dirs
        from clean_deploy.models.checkpoint import load_checkpoint, load_detector
        from clean_deploy.train.evaluate import evaluate_predictions, mean_moderate_ap, predict_split

        model, _ = load_detector(ckpt)
        cfg = model.cfg
        # one evaluation range for every row (the student's), so the teacher is scored on the same objects
        rng = self.student_cfg().point_cloud_range
        res = {"row": row, "seed": seed, "description": describe(row), "checkpoint": str(ckpt),
               "config_name": cfg.name, "protocol": self.protocol_of(row), "date": date.today().isoformat(),
               "machine": machine_description()}
        out_dir = self.runs_of(row) / (f"{row}_s{seed}" if seed is not None else row)
        for split_name, data in (("val", self.args.data), ("test", self.args.test_data)):
            pred = out_dir / f"pred_{split_name}"  # never next to a committed checkpoint (the teacher's)
            predict_split(model, data, "val", pred_dir=pred, progress=True)
            ap = evaluate_predictions(data, "val", pred, cfg.class_names, eval_range=rng)
            res[split_name] = {"mean_moderate_3d": mean_moderate_ap(ap),
                               "ap_3d": {c: ap[c]["3d"] for c in CLASSES if c in ap},
                               "ap_bev": {c: ap[c]["bev"] for c in CLASSES if c in ap},
                               "tp_errors": tp_errors_dirs(data, "val", pred, CLASSES, eval_range=rng),
                               "tp_errors_version": TP_ERRORS_VERSION}
        info = model_summary(model, load_frames(self.args.data, "val", 10))
        res.update({k: info[k] for k in ("params", "gmacs", "weight_mb")})
        meta = load_checkpoint(ckpt)["meta"]
        res["train_seconds"] = meta.get("train_seconds")
        res["sparse_backend"] = meta.get("sparse_backend")
        res.update(extra)
        out = self.result_path(row, seed)
        atomic_write(out, lambda f: f.write((json.dumps(res, indent=1, default=str) + "\n").encode()))
        print(f"[ablation] {out.name}: val {res['val']['mean_moderate_3d']:.2f}, test "
              f"{res['test']['mean_moderate_3d']:.2f} mean moderate 3D AP", flush=True)
        return res

    def add_box_errors(self, u: dict, predict: bool) -> bool:
        """Give a unit stored without them the true-positive box errors of its test predictions (from
        its run directory's ``pred_test``; with ``predict`` from its checkpoint when those are gone)
        and store it again. Returns whether the unit changed."""
        from clean_deploy.eval.tp_errors import tp_errors_dirs

        if u["test"].get("tp_errors_version") == TP_ERRORS_VERSION:  # stored with the BEV AP beside them
            return False
        if u.get("same_training_as"):  # another study's unit (Ablation.equivalent): its own study updates it
            return False
        row, seed = u["row"], u["seed"]
        pred = self.runs_of(row) / (row if seed is None else f"{row}_s{seed}") / "pred_test"
        if not pred.is_dir():
            ck = self.teacher if row == "teacher" else self.checkpoint(row, seed)
            if not (predict and ck.is_file()):
                return False
            from clean_deploy.models.checkpoint import load_detector
            from clean_deploy.train.evaluate import predict_split

            model, _ = load_detector(ck)
            predict_split(model, self.args.test_data, "val", pred_dir=pred, progress=True)
        from clean_deploy.train.evaluate import evaluate_predictions

        rng = self.student_cfg().point_cloud_range
        errors = tp_errors_dirs(self.args.test_data, "val", pred, CLASSES, eval_range=rng)
        ap = evaluate_predictions(self.args.test_data, "val", pred, CLASSES, eval_range=rng)
        if abs(statistics.fmean(ap[c]["3d"]["moderate"] for c in CLASSES) - u["test"]["mean_moderate_3d"]) > 1e-6:
            print(f"[ablation] {pred}: these predictions score another test AP than "
                  f"{self.result_path(row, seed).name} (another model's?): its box errors are left out", flush=True)
            return False
        u["test"]["tp_errors"], u["test"]["tp_errors_version"] = errors, TP_ERRORS_VERSION
        u["test"]["ap_bev"] = {c: ap[c]["bev"] for c in CLASSES}
        atomic_write(self.result_path(row, seed), lambda f: f.write((json.dumps(u, indent=1, default=str) + "\n").encode()))
        return True

    @staticmethod
    def curve(run_dir: Path) -> list[float]:
        """Mean training loss per epoch from a run's ``log.csv`` (the fine-tuning convergence curve;
        the log spans resumed runs)."""
        import csv

        by: dict[int, list[float]] = {}
        with open(run_dir / "log.csv", newline="") as f:
            for h in csv.DictReader(f):
                by.setdefault(int(h["epoch"]), []).append(float(h["loss"]))
        return [statistics.fmean(v) for _, v in sorted(by.items())]

    # ------------------------------------------------------------------ units
    def unit(self, row: str, seed: int | None) -> dict:
        done = self.stored(row, seed)
        if done is not None:
            return done
        print(f"[ablation] running {row}" + ("" if seed is None else f" seed {seed}"), flush=True)
        if row == "teacher":
            return self.evaluate(self.teacher, row, None, {})
        ckpt, extra = self.train_unit(row, seed)
        return self.evaluate(ckpt, row, seed, extra)

    def kept(self, row: str, seed: int) -> Path:
        """Where the checkpoints that later rows start from (the CaKD students, ~1.6 MB each) are kept
        in the repository, so that a fresh machine prunes them instead of training them again."""
        return self.args.keep_dir / self.protocol.digest() / f"{row}_s{seed}.pth"

    def checkpoint(self, row: str, seed: int) -> Path:
        """Where the final checkpoint of (row, seed) is: the kept copy of a CaKD student, else its run dir."""
        if row == "cakd" and self.kept(row, seed).is_file():
            return self.kept(row, seed)
        return self.runs_of(row) / f"{row}_s{seed}" / ("compressed.pth" if row.startswith("clean_") else "model.pth")

    def model_of(self, row: str, seed: int) -> Path:
        """The final checkpoint of (row, seed), training it (and what it starts from) when missing."""
        ck = self.checkpoint(row, seed)
        if not ck.is_file():
            ck, _ = self.train_unit(row, seed)
        return ck

    def pruned(self, method: str, t: str, seed: int) -> Path:
        """The CaKD student of ``seed`` pruned to budget ``t`` (e.g. "0.5x") with ``method``
        importance, before fine-tuning; pruned when missing."""
        from clean_deploy.compress.config import PruneConfig
        from clean_deploy.compress.prune.run import calibration_batches, prune_model
        from clean_deploy.models.checkpoint import load_detector, save_checkpoint

        path = self.runs / f"prune_{method}_{t}_s{seed}" / "pruned.pth"
        if not path.is_file():
            det, _ = load_detector(self.model_of("cakd", seed))
            batches = calibration_batches(det, self.args.data, self.args.calib_frames, 4)
            target = float(t.rstrip("x"))
            pruned, rep = prune_model(det, batches, PruneConfig(method=method, target=target, seed=seed))
            save_checkpoint(path, pruned, pruned.cfg, meta={"kind": "pruned", "prune_report": rep})
        return path

    def prune_iteratively(self, core: str, rounds: int, ft_epochs: int, seed: int, d: Path, ck: Path) -> None:
        """``core`` (``prune_masked_0.3x``) in ``rounds`` rounds from the CaKD student of ``seed`` with the
        library's iterative pruning (:func:`clean_deploy.compress.prune.run.prune`, resumable per round):
        round i prunes the previous round's fine-tuned model to target^(i/rounds) of the CaKD student's
        FLOPs and fine-tunes it with CaKD for its share of ``ft_epochs`` at lr/2 (``d/round<i>/``); the
        last round's fine-tuned model becomes ``ck``."""
        from clean_deploy.compress.config import PruneConfig
        from clean_deploy.compress.prune.run import prune

        _, method, t = core.split("_")
        cfg = PruneConfig(method=method, target=float(t.rstrip("x")), seed=seed, steps=rounds,
                          calib_frames=self.args.calib_frames, calib_batch=4)
        rep = prune(self.model_of("cakd", seed), self.args.data, d, cfg, self.tcfg(ft_epochs, seed, self.args.lr / 2),
                    self.teacher, self.distill_cfg())
        atomic_write(ck, lambda f: f.write(Path(rep["finetuned"]).read_bytes()))

    @contextlib.contextmanager
    def unit_lock(self, row: str, seed: int):
        """Held while (row, seed) trains: a second process on the same unit (two studies share the rows
        without KD; two commands may ask for the same CaKD parent) waits, then finds its checkpoint."""
        lock = self.runs_of(row) / f"{row}_s{seed}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def train_unit(self, row: str, seed: int) -> tuple[Path, dict]:
        with self.unit_lock(row, seed):
            return self._train_unit(row, seed)

    def _train_unit(self, row: str, seed: int) -> tuple[Path, dict]:
        from clean_deploy.compress.distill.run import distill
        from clean_deploy.models.config import RedundancyConfig
        from clean_deploy.models.checkpoint import load_detector, save_checkpoint
        from clean_deploy.train.loop import train

        a = self.args
        d = self.runs_of(row) / f"{row}_s{seed}"
        ck = self.checkpoint(row, seed)
        extra: dict = {}
        base, ft = split_row(row)
        ft_epochs = a.finetune_epochs if ft is None else ft
        student, ep = split_epochs(row)
        epochs = a.epochs if ep is None else ep
        if student == "plain":
            if not ck.is_file():
                train(self.student_cfg(), a.data, d, self.tcfg(epochs, seed), resume=True,
                      model=self.fresh_student(seed))
        elif student in ("kd_so", "cakd"):
            if not ck.is_file():
                dcfg = self.distill_cfg(label_assignment=(student == "cakd"))
                distill(self.teacher, self.student_cfg(), a.data, d, self.tcfg(epochs, seed), dcfg, resume=True,
                        student_model=self.fresh_student(seed))
            if row == "cakd" and not self.kept(row, seed).is_file():
                # the pruned rows of this seed start from it: keep it where a new machine finds it
                atomic_write(self.kept(row, seed), lambda f: f.write(ck.read_bytes()))
        elif row.startswith("prune_") and split_iter(base)[1] > 1:
            core, rounds = split_iter(base)
            if not ck.is_file():
                self.prune_iteratively(core, rounds, ft_epochs, seed, d, ck)
            extra["finetune_loss_per_epoch"] = [v for i in range(1, rounds + 1)
                                                for v in self.curve(d / f"round{i}" / "finetune")]
        elif row.startswith("prune_"):
            _, method, t = base.split("_")
            pruned_path = self.pruned(method, t, seed)  # the same pruned model whatever the fine-tuning length
            if not ck.is_file():
                pruned, _ = load_detector(pruned_path)
                distill(self.teacher, pruned.cfg, a.data, d, self.tcfg(ft_epochs, seed, a.lr / 2),
                        self.distill_cfg(), resume=True, student_model=pruned.train())
            extra["finetune_loss_per_epoch"] = self.curve(d)
        elif row.startswith("scratch_"):
            t = base.split("_")[1]
            if not ck.is_file():
                # only the pruned architecture is needed, not its fine-tuned weights
                arch, _ = load_detector(self.pruned("masked", t, seed))
                # equal steps: the KD student's epochs plus the fine-tuning epochs
                train(arch.cfg, a.data, d, self.tcfg(a.epochs + ft_epochs, seed), resume=True,
                      model=self.fresh_student(seed, arch.cfg))
        elif row.startswith("clean_"):
            # clean_<t>x[_it<k>][_ft<n>] is prune_masked_<t>x[_it<k>][_ft<n>] with RE switched on
            src = self.model_of("prune_masked_" + row[len("clean_"):], seed)
            model, _ = load_detector(src)
            model.cfg = model.cfg.replace(post=model.cfg.post.replace(redundancy=RedundancyConfig()))
            save_checkpoint(ck, model, model.cfg, meta={"kind": "compressed", "teacher": str(self.teacher),
                                                        "source": str(src)})
        else:
            raise SystemExit(f"unknown row {row!r}")
        return ck, extra


# ---------------------------------------------------------------------- statistics
def mean_std(v: list[float]) -> dict:
    return {"n": len(v), "mean": statistics.fmean(v) if v else float("nan"),
            "std": statistics.stdev(v) if len(v) > 1 else float("nan"), "values": v}


def paired(a: dict[int, float], b: dict[int, float]) -> dict | None:
    """b - a over the seeds both have: mean, standard error of the mean difference, two-sided p
    (paired t-test); seeds share initial weights and data order, so pairing removes that noise."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    d = [b[s] - a[s] for s in seeds]
    m, sd = statistics.fmean(d), statistics.stdev(d)
    se = sd / math.sqrt(len(d))
    p = float("nan")
    if se > 0:
        from scipy import stats

        p = float(2 * stats.t.sf(abs(m / se), len(d) - 1))
    return {"seeds": seeds, "mean": m, "standard_error": se, "p_paired_t": p, "beyond_2se": abs(m) > 2 * se}


def summarise(units: list[dict], epochs: int = 12) -> dict:
    rows: dict[str, dict] = {}
    for u in units:
        r = rows.setdefault(u["row"], {"description": u["description"], "params": u["params"], "gmacs": u["gmacs"],
                                       "by_seed": {"val": {}, "test": {}}, "train_seconds": []})
        key = -1 if u["seed"] is None else u["seed"]
        for split in ("val", "test"):
            r["by_seed"][split][key] = u[split]["mean_moderate_3d"]
        if u.get("train_seconds"):
            r["train_seconds"].append(u["train_seconds"])
    for r in rows.values():
        for split in ("val", "test"):
            r[split] = mean_std(list(r["by_seed"][split].values()))
    comparisons = {}

    def cmp(name: str, a: str, b: str, goal: float | None) -> None:
        if a in rows and b in rows:
            c = paired(rows[a]["by_seed"]["test"], rows[b]["by_seed"]["test"])
            if c is not None:
                c.update({"a": a, "b": b, "goal_ap": goal,
                          "met": None if goal is None else bool(c["mean"] >= goal and (goal <= 0 or c["beyond_2se"]))})
                comparisons[name] = c

    cmp("cakd_vs_plain", "plain", "cakd", 2.0)
    cmp("kd_so_vs_plain", "plain", "kd_so", None)
    cmp("cakd_vs_kd_so", "kd_so", "cakd", None)
    for name in list(rows):
        base, ft = split_row(name)
        if name.startswith("clean_"):
            t = base.split("_")[1]
            suffix = name[len(base):]
            cmp(f"{name}_vs_plain", "plain", name, 0.0)
            cmp(f"{name}_vs_scratch", f"scratch_{t}{suffix}", name, 2.0)
            cmp(f"{name}_vs_cakd", "cakd", name, None)
            core, rounds = split_iter(base)
            if rounds > 1:  # iterative vs one-shot pruning at the same FLOPs and fine-tuning epochs
                cmp(f"{name}_vs_one_shot", core + suffix, name, None)
            if ft is not None:
                if rounds == 1:
                    cmp(f"{name}_vs_{base}", base, name, None)  # what the longer fine-tuning bought
                # the equal-steps controls: unpruned students trained as long as the whole pipeline
                m = epochs + ft
                cmp(f"{name}_vs_plain_e{m}", f"plain_e{m}", name, 0.0)
                cmp(f"{name}_vs_cakd_e{m}", f"cakd_e{m}", name, None)
        student, ep = split_epochs(name)
        if student == "cakd" and ep is not None:
            cmp(f"{name}_vs_plain_e{ep}", f"plain_e{ep}", name, 2.0)
        if student == "plain" and ep is not None:
            # reported against the CaKD student too: a CaKD step costs about 1.9 plain steps
            # (benchmarks/results/train_speed_rulebooks), so with --epochs 12 the CaKD student had
            # about the compute of a plain student trained 23 epochs; plain_e24 is then an
            # equal-compute control, stricter than the equal-steps one (other m: neither)
            cmp(f"cakd_vs_{name}", name, "cakd", None)
        if base.startswith("prune_masked_") and split_iter(base)[1] == 1:
            # the importance criteria at the same FLOPs and the same fine-tuning length
            t, suffix = base.split("_")[2], name[len(base):]
            for other in ("l1", "random"):
                cmp(f"masked_vs_{other}_{t}{suffix}", f"prune_{other}_{t}{suffix}", name, None)
    if "teacher" in rows:
        for name in rows:
            if name.startswith("clean_"):
                gap = rows["teacher"]["test"]["mean"] - rows[name]["test"]["mean"]
                comparisons[f"teacher_minus_{name}"] = {"mean": gap, "goal_ap_at_most": 5.0, "met": gap <= 5.0}
    return {"rows": rows, "comparisons": comparisons}


def render(doc: dict) -> str:
    p = doc["protocol"]
    lines = [f"# CLEAN ablation ({doc['date']}): student `{p['student']}`, mean +- std over seeds", "",
             f"{doc['machine']}. Students {p['epochs']} epochs (batch {p['batch_size']}, AdamW one-cycle lr {p['lr']}); "
             f"pruned students fine-tuned {p['finetune_epochs']} epochs with CaKD at lr/2 (`_ft<n>` rows: <n> "
             f"epochs); `scratch` rows train the pruned architecture as many epochs as KD + fine-tuning "
             f"({p['epochs'] + p['finetune_epochs']}; `scratch_<t>x_ft<n>`: {p['epochs']} + <n>); `plain_e<m>` / `cakd_e<m>`: the "
             f"unpruned students trained m = {p['epochs']} + <n> epochs, as many as the `_ft<n>` pipeline. Train: {p['frames']} synthetic frames "
             f"(data seed 0). **Test**: {p['test_frames']} frames of data seed {p['test_seed']}, never used for a "
             f"choice; val: {p['val_frames']} frames of data seed 0. Mean moderate 3D AP_R40 (%), KITTI protocol, "
             f"objects inside the student's point-cloud range. Teacher checkpoint sha256 {p['teacher_sha']}.", ""]
    if p.get("distill"):
        lines[-2] += (" **CaKD recipe** of the KD rows (kd_so, cakd, the pruned rows' fine-tuning; scratch through "
                      "the pruned architecture): DistillConfig defaults except "
                      + ", ".join(f"`{k}={distill_value(v)}`" for k, v in sorted(p["distill"].items()))
                      + "; the rows without KD (teacher, plain, plain_e<m>) are the default recipe's study's units.")
    units = doc["units"]
    rows = []
    for name in doc["row_order"]:
        r = doc["summary"]["rows"].get(name)
        if r is None:
            continue
        us = [u for u in units if u["row"] == name]
        cls = " / ".join(f"{statistics.fmean(u['test']['ap_3d'][c]['moderate'] for u in us):.1f}" for c in CLASSES)
        t, v = r["test"], r["val"]
        sd = lambda x: "" if math.isnan(x["std"]) else f" +- {x['std']:.2f}"  # noqa: E731
        per = ", ".join(f"{x:.2f}" for x in t["values"])
        rows.append([name, r["description"], t["n"], f"**{t['mean']:.2f}{sd(t)}**", per, f"{v['mean']:.2f}{sd(v)}", cls,
                     f"{r['params'] / 1e6:.3f}", f"{r['gmacs']:.2f}"])
    lines += markdown_table(["row", "what", "seeds", "**test** mean mod 3D", "per seed (test)", "val mean mod 3D",
                             "Car / Ped / Cyc mod 3D (test, mean)", "params (M)", "GMACs"], rows)
    comps = doc["summary"]["comparisons"]
    if comps:
        lines += ["", "## Comparisons on the test split (paired by seed: b - a)", ""]
        rows = []
        for name, c in comps.items():
            if "seeds" not in c:
                rows.append([name, f"{c['mean']:+.2f}", "", "", "", f"<= {c['goal_ap_at_most']:.0f} AP gap",
                             "yes" if c["met"] else "no"])
                continue
            goal = "-" if c["goal_ap"] is None else f">= {c['goal_ap']:+.0f} AP" + (" and > 2 SE" if c["goal_ap"] > 0 else "")
            met = "-" if c["met"] is None else ("yes" if c["met"] else "**no**")
            rows.append([name, f"{c['mean']:+.2f}", f"{c['standard_error']:.2f}", f"{c['p_paired_t']:.3f}",
                         len(c["seeds"]), goal, met])
        lines += markdown_table(["comparison", "b - a (AP)", "SE", "paired t p", "seeds", "goal", "met"], rows)
    lines += box_error_table(doc)
    curves = [(u["row"], u["seed"], u["finetune_loss_per_epoch"]) for u in units if u.get("finetune_loss_per_epoch")]
    if curves:
        lines += ["", "## Fine-tuning loss per epoch (pruned students)", "",
                  f"Plotted, with test AP against total training epochs, in `{study_name(doc['protocol']['student'], doc['protocol'].get('distill'), protocol_settings(doc['protocol']))}"
                  "_convergence.png` (one-cycle lr: a falling end is partly the lr annealing, not only learning).", ""]
        lines += [f"- {r} seed {s}: " + ", ".join(f"{x:.3f}" for x in c) for r, s, c in curves]
    shared = sorted({f"{u['row']} = `{u['same_training_as']['row']}` of `{u['same_training_as']['study']}`"
                     for u in units if u.get("same_training_as")})
    if shared:
        lines += ["", "Rows read from another study where they are the same training under another name "
                  "(`Ablation.equivalent`; e.g. this study's plain student is the default-epochs study's "
                  "equal-steps control): " + ", ".join(shared) + "."]
    missing = [r if s is None else f"{r} s{s}" for r, s in doc["missing"]]
    if missing:
        lines += ["", f"Not yet run ({len(missing)}): " + ", ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def box_error_table(doc: dict) -> list[str]:
    """Medians of the true-positive box errors (clean_deploy.eval.tp_errors) per row, mean over the
    seeds that have them: where the AP at 3D IoU 0.7 is lost (centre, height, size or heading)."""
    rows = []
    for name in doc["row_order"]:
        us = [u for u in doc["units"] if u["row"] == name and u["test"].get("tp_errors_version") == TP_ERRORS_VERSION]
        if not us:
            continue
        def m(cls: str, key: str) -> float:  # noqa: E306
            return statistics.fmean(u["test"]["tp_errors"][cls][key]["median"] for u in us)

        def frac(key: str, sub: str) -> str:  # noqa: E306
            return f"{100 * statistics.fmean(u['test']['tp_errors']['Car'][key][sub] for u in us):.1f} %"

        rows.append([name, ", ".join(str(u["seed"]) for u in us if u["seed"] is not None) or "-",
                     f"{m('Car', 'orientation_axis'):.3f}", frac("orientation_axis", "frac_off"),
                     frac("orientation", "frac_reversed"), f"{m('Car', 'height'):.3f}",
                     f"{m('Car', 'translation'):.3f}", f"{m('Car', 'scale'):.3f}",
                     f"{statistics.fmean(u['test']['tp_errors']['Car']['recall'] for u in us):.3f}",
                     f"{statistics.fmean(u['test']['ap_bev']['Car']['moderate'] for u in us):.1f}",
                     f"{m('Pedestrian', 'orientation_axis'):.3f}", f"{m('Cyclist', 'orientation_axis'):.3f}"])
    if not rows:
        return []
    return ["", "## Box errors of the true positives (test split)", "",
            "Medians over the matched detections (nuScenes-style matching: BEV centre within 2 m, by descending "
            "score; `clean_deploy/eval/tp_errors.py`), mean over the seeds listed (those whose test predictions "
            "were at hand: not every row has all seeds, so compare rows with care). Heading: radians, folded to "
            "[0, pi/2] (what the IoU sees); `> 0.3 rad`: share of matched cars that far off in axis; reversed: "
            "share facing backwards (IoU does not see it); height: centre offset along the vertical axis (m); "
            "translation: BEV centre distance (m); scale: 1 - IoU of the aligned sizes. KITTI result files "
            "round locations and angles to 0.01.", ""] + markdown_table(
        ["row", "seeds", "Car heading", "Car > 0.3 rad", "Car reversed", "Car height", "Car BEV centre", "Car scale",
         "Car recall", "Car BEV AP (mod)", "Ped heading", "Cyc heading"], rows)


def ap_point(r: dict) -> dict:
    """A summary row's test AP as a plotted point: mean, std (0 for a single seed) and seeds."""
    t = r["test"]
    return {"mean": t["mean"], "std": 0.0 if math.isnan(t["std"]) else t["std"], "n": t["n"]}


def plot(doc: dict, out: Path) -> None:
    from clean_deploy.bench.plots import accuracy_compute_errorbar_plot

    pts = [{"label": name, "gmacs": r["gmacs"], **ap_point(r)} for name, r in doc["summary"]["rows"].items()]
    accuracy_compute_errorbar_plot(pts, out, f"CLEAN ablation, test split (mean +- std over seeds), {doc['date']}")


def convergence(doc: dict, out: Path) -> None:
    """The convergence figure: fine-tuning loss per epoch of the pruned rows, and test AP against
    total training epochs of every pipeline (its rows of different lengths joined by a line)."""
    from clean_deploy.bench.plots import convergence_plot

    p = doc["protocol"]
    losses: dict[str, list[list[float]]] = {}
    for u in doc["units"]:
        if u.get("finetune_loss_per_epoch"):
            losses.setdefault(u["row"], []).append(u["finetune_loss_per_epoch"])
    series: dict[str, list[dict]] = {}
    for name, r in doc["summary"]["rows"].items():
        tl = training_length(name, p["epochs"], p["finetune_epochs"])
        if tl is not None:
            series.setdefault(tl[0], []).append({"epochs": tl[1], **ap_point(r)})
    convergence_plot(losses, series, out, f"Convergence, {doc['protocol']['student']}, {doc['date']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data" / "synth")
    ap.add_argument("--test-data", type=Path, default=ROOT / "benchmarks" / "data" / "synth_test")
    ap.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "runs" / "ablation")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--teacher", type=Path, default=KEPT_TEACHER)
    ap.add_argument("--keep-dir", type=Path, default=ROOT / "benchmarks" / "checkpoints" / "ablation",
                    help="where the CaKD students that the pruned rows start from are kept (commit them)")
    ap.add_argument("--student", default=DEFAULT_STUDENT)
    ap.add_argument("--distill", nargs="*", default=[], metavar="KEY=VALUE",
                    help="CaKD recipe of the KD rows: DistillConfig fields other than the defaults (another study)")
    ap.add_argument("--rows", nargs="*", default=None, help="default: every row (see the module docstring)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--targets", nargs="+", type=float, default=[0.5, 0.3], help="FLOPs budgets of the pruned rows")
    ap.add_argument("--prune-methods", nargs="+", default=list(PRUNE_METHODS))
    ap.add_argument("--epochs", type=int, default=PROTOCOL_DEFAULTS["epochs"])
    ap.add_argument("--finetune-epochs", type=int, default=PROTOCOL_DEFAULTS["finetune_epochs"])
    ap.add_argument("--iterative", nargs="*", default=[], metavar="T:K",
                    help="also the rows pruned to FLOPs target T in K prune -> CaKD fine-tune rounds "
                         "(prune_masked_<t>x_it<K>[_ft<n>], clean_<t>x_it<K>[_ft<n>]), e.g. 0.3:2")
    ap.add_argument("--long-finetune", nargs="*", default=None, metavar="T:N",
                    help="also run the pruned, CLEAN and scratch rows of budget T with N fine-tuning epochs (rows "
                         "*_ft<N>): does the pruned student gain from a longer fine-tuning? Default: T:12 for each "
                         "of --targets")
    ap.add_argument("--batch-size", type=int, default=PROTOCOL_DEFAULTS["batch_size"])
    ap.add_argument("--lr", type=float, default=PROTOCOL_DEFAULTS["lr"])
    ap.add_argument("--frames", type=int, default=PROTOCOL_DEFAULTS["frames"])
    ap.add_argument("--val-frames", type=int, default=PROTOCOL_DEFAULTS["val_frames"])
    ap.add_argument("--test-frames", type=int, default=PROTOCOL_DEFAULTS["test_frames"])
    ap.add_argument("--test-seed", type=int, default=PROTOCOL_DEFAULTS["test_seed"])
    ap.add_argument("--calib-frames", type=int, default=PROTOCOL_DEFAULTS["calib_frames"], help="train frames that score the filters")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (0 is fastest on 2 cores)")
    ap.add_argument("--report", action="store_true", help="only rebuild the table from the stored units")
    ap.add_argument("--checkpoints", nargs="+", metavar="ROW:SEED", default=None,
                    help="only make sure these final checkpoints exist (training them and what they start from "
                         "when missing, e.g. after a fresh checkout) and print their paths; for benchmarks/deploy.py")
    ap.add_argument("--box-errors-predict", action="store_true",
                    help="for finished units without true-positive box errors whose test predictions are gone: "
                         "predict the test split again from their checkpoints (else they are left without)")
    args = ap.parse_args(argv)
    if not args.teacher.is_file():
        raise SystemExit(f"{args.teacher}: teacher checkpoint missing (run benchmarks/teacher.py)")
    from clean_deploy.bench.run import machine_description
    from clean_deploy.models.zoo import get_config

    try:
        student = get_config(args.student)
    except KeyError as e:
        raise SystemExit(f"--student: {e.args[0]}") from None
    distill = parse_distill(args.distill)
    if not student.dense_head.iou_branch:
        raise SystemExit(f"{args.student}: the ablation needs the IoU-quality branch (append '+iou')")
    protocol = Protocol(args.student, sha256(args.teacher), args.epochs, args.finetune_epochs, args.batch_size,
                        args.lr, args.calib_frames, args.frames, args.val_frames, args.test_frames, args.test_seed,
                        distill)
    # also checks that its result files can carry it
    name = study_name(args.student, distill, protocol_settings(protocol.to_dict()))
    if args.long_finetune is None:
        args.long_finetune = [f"{t:g}:12" for t in args.targets]
    order = row_names(args.targets, args.prune_methods, parse_long_finetune(args.long_finetune, args.targets),
                      args.epochs, parse_iterative(args.iterative, args.targets))
    wanted = args.rows or order
    unknown = [r for r in wanted if r not in order]
    if unknown:
        raise SystemExit(f"--rows: unknown {unknown}; rows are {order}")
    abl = Ablation(args, protocol, args.teacher)
    if args.checkpoints:
        wanted_ck = []
        for item in args.checkpoints:
            row, _, seed = item.partition(":")
            if row not in order or row == "teacher" or not seed.isdigit():
                raise SystemExit(f"--checkpoints: {item!r} is not ROW:SEED with ROW one of {order[1:]}")
            wanted_ck.append((row, int(seed)))
        ensure_data(args.data, args.frames, args.val_frames, 0)
        for row, seed in wanted_ck:
            print(f"{row}:{seed} {abl.model_of(row, seed).resolve()}", flush=True)
        return 0
    t0 = time.time()
    if not args.report:
        ensure_data(args.data, args.frames, args.val_frames, 0)
        ensure_data(args.test_data, 0, args.test_frames, args.test_seed)
        for row in [r for r in order if r in wanted]:  # row-major: a row's seeds finish before the next row
            for seed in ([None] if row == "teacher" else args.seeds):
                abl.unit(row, seed)
    units, missing = [], []
    for row in order:
        for seed in ([None] if row == "teacher" else args.seeds):
            u = abl.stored(row, seed)
            (units.append(u) if u is not None else missing.append((row, seed)))
    for u in units:  # units stored before the box errors existed
        abl.add_box_errors(u, args.box_errors_predict)
    doc = {"date": date.today().isoformat(), "machine": machine_description(), "protocol": protocol.to_dict(),
           "row_order": order, "summary": summarise(units, args.epochs), "units": units, "missing": missing,
           "wall_seconds_this_run": time.time() - t0}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / f"{name}.json", lambda f: f.write((json.dumps(doc, indent=1, default=str) + "\n").encode()))
    md = render(doc)
    atomic_write(args.out / f"{name}.md", lambda f: f.write(md.encode()))
    if units:
        plot(doc, args.out / f"{name}_accuracy_vs_compute.png")
        convergence(doc, args.out / f"{name}_convergence.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

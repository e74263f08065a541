"""Profile of one CPU training step: plain student, CaKD step, teacher step, per sparse conv backend.

    .venv/bin/python benchmarks/train_speed.py                       # both backends, all three steps
    .venv/bin/python benchmarks/train_speed.py --backends clean_deploy --steps 7

Each (backend, step kind) runs in its own subprocess (so one backend's threads or caches cannot
affect the other) through the real training loop (``Trainer.train_step``, DataLoader with
``--workers`` workers) on a synthetic KITTI-format set of full-size frames (64-beam, ~105k points),
and splits every step into: data (loading + augmentation + voxelisation; voxelisation alone is
also shown), forward per detector part (VFE, 3D backbone, BEV scatter, BEV backbone, dense head, RoI
head with its grid pooling), the teacher's forward in a CaKD step (and its RoI pooling), losses
(with the KD terms), backward, optimiser (clip + AdamW + one-cycle). The 3D backbone's forward +
backward is also timed alone on the step's batch (the forward hooks cannot split backward).

Medians over ``--steps`` steps after ``--warmup``; the load average before each run is recorded.
The teacher is untrained (timing only: its RoI head pools a fixed number of proposals) unless
``--teacher-checkpoint`` names a trained one (what CaKD training runs with). ``--repeats N`` runs
every (kind, backend) N times, alternating the kinds, and reports the CaKD / plain ratio of each
pair of neighbouring runs (median [range]): one pair of single runs moves by 10-20 % between runs
on the 2-core machines.
Writes ``benchmarks/results/train_speed.json`` (every step's times) and ``train_speed.md`` (the
before/after table: the ``spconv`` backend is the path training used before our kernels).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = {
    "student": "plain student step (centerpoint_fast@0.5x+iou)",
    "cakd": "CaKD step (teacher voxel_rcnn_fast -> centerpoint_fast@0.5x+iou)",
    "teacher": "teacher step (voxel_rcnn_fast)",
}
STUDENT, TEACHER = "centerpoint_fast@0.5x+iou", "voxel_rcnn_fast"
PARTS = ["data", "voxelisation", "teacher forward", "teacher RoI pooling", "VFE", "3D backbone forward",
         "BEV scatter", "BEV backbone", "dense head", "RoI head", "RoI pooling", "losses", "backward", "optimizer",
         "step total", "3D backbone fwd+bwd (alone)"]
NESTED = {"voxelisation", "teacher RoI pooling", "RoI pooling", "3D backbone fwd+bwd (alone)"}  # inside other rows


# ------------------------------------------------------------------------------ worker (one run)
_HOOKS_ON = [True]  # off while the 3D backbone is timed alone


def _timed_module(module, name: str, acc: dict) -> None:
    def pre(mod, args):
        mod._cd_t0 = time.perf_counter()

    def post(mod, args, out):
        if _HOOKS_ON[0]:
            acc[name] = acc.get(name, 0.0) + time.perf_counter() - mod._cd_t0

    module.register_forward_pre_hook(pre)
    module.register_forward_hook(post)


def _instrument(det, acc: dict, prefix: str = "") -> None:
    names = {"vfe": "VFE", "backbone3d": "3D backbone forward", "to_bev": "BEV scatter",
             "backbone2d": "BEV backbone", "dense_head": "dense head", "roi_head": "RoI head"}
    if prefix:  # the teacher: whole forward and its pooling only
        _timed_module(det, "teacher forward", acc)
        if det.roi_head is not None:
            for pool in det.roi_head.pools.values():
                _timed_module(pool, "teacher RoI pooling", acc)
        return
    for attr, name in names.items():
        mod = getattr(det, attr, None)
        if mod is not None:
            _timed_module(mod, name, acc)
    if det.roi_head is not None:
        for pool in det.roi_head.pools.values():
            _timed_module(pool, "RoI pooling", acc)


def _backbone_alone(det, batch) -> float:
    """Forward + backward of the 3D backbone on the batch's voxel features (grad of a fixed weighting
    of every output that the detector uses)."""
    import torch

    if det.backbone3d is None:
        return float("nan")
    _HOOKS_ON[0] = False
    try:
        with torch.no_grad():
            vf = det.vfe(batch["voxels"], batch["voxel_num_points"], batch["voxel_coords"])
        t0 = time.perf_counter()
        out = det.backbone3d(vf, batch["voxel_coords"], int(batch["batch_size"]))
        loss = sum((v.features * 1e-3).sum() for v in out.values())
        loss.backward()
        det.zero_grad(set_to_none=True)
        return time.perf_counter() - t0
    finally:
        _HOOKS_ON[0] = True


def worker(kind: str, backend: str, data: str, steps: int, warmup: int, workers: int, threads: int, out: str,
           teacher_ckpt: str | None = None) -> None:
    import torch

    torch.set_num_threads(threads)
    from clean_deploy.compress.config import DistillConfig
    from clean_deploy.compress.distill.cakd import CaKDLoss
    from clean_deploy.config import TrainConfig
    from clean_deploy.models.detector import build_detector
    try:
        from clean_deploy.models.sparse import describe_backend, set_sparse_backend
    except ImportError:  # a checkout from before the backends existed: spconv only (the "before" column)
        set_sparse_backend = None

        def describe_backend(device):
            return "spconv (CPU, single-threaded)"
    from clean_deploy.models.zoo import get_config
    from clean_deploy.train.loop import Trainer

    if set_sparse_backend is not None:
        set_sparse_backend(backend)
    elif backend != "spconv":
        raise SystemExit("this checkout has only the spconv backend")
    torch.manual_seed(0)
    cfg = get_config(TEACHER if kind == "teacher" else STUDENT)
    acc: dict[str, float] = {}
    kw = {}
    if kind == "cakd":
        if teacher_ckpt:
            from clean_deploy.models.checkpoint import load_detector

            teacher, _ = load_detector(teacher_ckpt)
            if teacher.cfg.name != TEACHER:
                raise SystemExit(f"{teacher_ckpt}: expected a {TEACHER} checkpoint, got {teacher.cfg.name}")
        else:
            teacher = build_detector(get_config(TEACHER))
        student = build_detector(cfg)
        kd = CaKDLoss(teacher, student, DistillConfig())
        _instrument(kd.teacher, acc, prefix="teacher")  # the frozen copy CaKD runs
        kw = {"model": student, "loss_fn": kd, "extra_modules": kd.extra_modules()}
    # epochs: room for warm-up + steps beyond one epoch of the small set (the one-cycle schedule counts them)
    tcfg = TrainConfig(epochs=20, batch_size=4, num_workers=workers, seed=0, device="cpu")
    with tempfile.TemporaryDirectory() as run:
        tr = Trainer(cfg, tcfg, data, run, progress=False, **kw)
        _instrument(tr.model, acc)
        vox = tr.dataset.voxelizer
        orig_vox = vox.__class__.__call__

        def timed_vox(self, *a, **k):  # voxelisation inside the dataset (main process when workers == 0)
            t0 = time.perf_counter()
            r = orig_vox(self, *a, **k)
            acc["voxelisation"] = acc.get("voxelisation", 0.0) + time.perf_counter() - t0
            return r

        vox.__class__.__call__ = timed_vox
        loss_fn = tr.loss_fn

        def timed_loss(model, batch):
            t0 = time.perf_counter()
            r = loss_fn(model, batch)
            acc["_loss_fn"] = time.perf_counter() - t0
            return r

        tr.loss_fn = timed_loss
        opt_t = {}
        tr.optimizer.register_step_pre_hook(lambda *a: opt_t.__setitem__("t0", time.perf_counter()))
        tr.optimizer.register_step_post_hook(lambda *a: opt_t.__setitem__("t1", time.perf_counter()))
        rows = []
        it = iter(tr._loader(0))
        for i in range(warmup + steps):
            acc.clear()
            t0 = time.perf_counter()
            batch = next(it, None)
            if batch is None:  # more steps than one epoch has batches: the next epoch's order
                tr.sampler.set_epoch(tr.sampler.epoch + 1)
                it = iter(tr._loader(0))
                batch = next(it)
            t1 = time.perf_counter()
            tr.train_step(batch)
            t2 = time.perf_counter()
            alone = _backbone_alone(tr.model, batch)
            fwd = sum(acc.get(k, 0.0) for k in ("VFE", "3D backbone forward", "BEV scatter", "BEV backbone",
                                                 "dense head", "RoI head"))
            row = {k: v for k, v in acc.items() if not k.startswith("_")}
            row["data"] = t1 - t0
            row["losses"] = acc["_loss_fn"] - fwd - acc.get("teacher forward", 0.0)
            row["optimizer"] = opt_t["t1"] - opt_t["t0"]
            row["backward"] = (t2 - t1) - acc["_loss_fn"] - row["optimizer"]  # incl. zero_grad and clipping
            row["step total"] = t2 - t0
            row["3D backbone fwd+bwd (alone)"] = alone
            if workers > 0:
                row.pop("voxelisation", None)  # ran in the workers, hidden behind the step
            if i >= warmup:
                rows.append({k: v * 1e3 for k, v in row.items()})
        res = {"kind": kind, "backend": backend, "backend_detail": describe_backend("cpu"), "threads": threads,
               "workers": workers, "steps": rows,
               "median_ms": {k: statistics.median(r[k] for r in rows) for k in rows[0]}}
    Path(out).write_text(json.dumps(res, indent=1))


# ------------------------------------------------------------------------------ driver
def ensure_data(root: Path, frames: int) -> Path:
    from clean_deploy.data.synth import generate_dataset

    meta = root / "synth_meta.json"
    if not meta.is_file() or json.loads(meta.read_text()).get("frames", {}).get("train") != frames:
        generate_dataset(root, frames, 4, seed=11, workers=2)
    return root


def loadavg() -> float:
    return os.getloadavg()[0]


def _column_text(label: str, commit: str | None) -> str:
    known = {"before": f"`before` = the code before our kernels (commit {commit}: spconv 2.3.8, single-threaded on "
                       "CPU, RoI pooling max through torch's scatter_reduce)",
             "spconv": f"`spconv` = the code at {commit} with spconv forced",
             "clean_deploy": f"`clean_deploy` = the code at {commit} with our C++ kernels (forward + backward)"}
    return known.get(label, f"`{label}` = the code at {commit}")


def _teacher_text(meta: dict) -> str:
    teachers = meta.get("teachers") or {}
    if not teachers or all(t == "untrained" for t in teachers.values()):
        return "The teacher is untrained (timing only)."
    return "The CaKD step's teacher: " + "; ".join(f"`{b}`: {t}" for b, t in teachers.items()) + "."


def render(results: dict, meta: dict, sweep: dict | None = None) -> str:
    from clean_deploy.bench.results import markdown_table

    backends = meta["columns"]
    lines = [f"# Training step profile (CPU)", "",
             f"{meta['date']}, {meta['machine']}, {meta['threads']} torch threads, DataLoader workers "
             f"{meta['workers']}, batch 4 of full-size synthetic frames ({meta['frames']} train frames, "
             f"~105k points each); median of {meta['steps']} steps after {meta['warmup']} warm-up, ms"
             + (f" (with repeated runs: the median of the runs' medians)" if any(
                 "runs_median_ms" in r for r in results.values()) else "") + ". "
             "Columns: " + "; ".join(_column_text(b, meta["commits"].get(b)) for b in backends) + ". "
             "Speed-up: first column over last. Rows in italics are part of the row above "
             "them (voxelisation is inside data when the loader runs in the main process). "
             + _teacher_text(meta), ""]
    for kind, title in KINDS.items():
        if not any((b, kind) in results for b in backends):
            continue
        lines += [f"## {title}", ""]
        rows = []
        for part in PARTS:
            vals = [results.get((b, kind), {}).get("median_ms", {}).get(part) for b in backends]
            if all(v is None for v in vals):
                continue
            name = f"*{part}*" if part in NESTED else (f"**{part}**" if part == "step total" else part)
            cells = ["-" if v is None else f"{v:.0f}" for v in vals]
            sp = (f"{vals[0] / vals[-1]:.2f}x" if len(vals) > 1 and vals[0] and vals[-1] and vals[-1] > 0.5
                  else "")
            rows.append([name, *cells, sp])
        lines += markdown_table(["part", *backends, "speed-up"], rows)
        loads = [x for b in backends if (b, kind) in results
                 for x in results[(b, kind)].get("loads_before", [results[(b, kind)].get("load_before")])]
        lines += ["", "load average (1 min) before each run: " + ", ".join(f"{x:.2f}" for x in loads if x is not None),
                  ""]
    s = {b: results.get((b, "student"), {}).get("median_ms", {}).get("step total") for b in backends}
    c = {b: results.get((b, "cakd"), {}).get("median_ms", {}).get("step total") for b in backends}
    ratio = []
    for b in backends:
        if not (s.get(b) and c.get(b)):
            continue
        pr = paired_ratios(results[(b, "student")], results[(b, "cakd")])
        ratio.append(f"{b}: {c[b] / s[b]:.2f}x" if not pr else
                     f"{b}: {statistics.median(pr):.2f}x [{min(pr):.2f}..{max(pr):.2f}] (median [range] of "
                     f"{len(pr)} paired runs: " + ", ".join(f"{x:.2f}" for x in pr) + ")")
    if ratio:
        lines += ["CaKD step / plain student step: " + "; ".join(ratio), ""]
    if sweep:
        lines += ["## DataLoader workers (plain student step, clean_deploy backend)", ""]
        lines += markdown_table(["workers", "step total ms", "waiting for data ms", "load before"],
                                [[w, f"{sweep[w]['step_total_ms']:.0f}", f"{sweep[w]['data_ms']:.0f}",
                                  f"{sweep[w]['load_before']:.2f}"] for w in sorted(sweep, key=int)])
        lines += ["", "With workers, data is loaded in other processes that share the same two cores with the "
                      "step's threads; `waiting for data` is the time the step waited for its batch.", ""]
    return "\n".join(lines) + "\n"


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _run_worker(kind: str, backend: str, args, workers: int) -> dict:
    """One (step kind, backend) in a fresh subprocess; its result dict with the load before it."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        tmp = f.name
    load = loadavg()
    print(f"[train_speed] {kind} / {backend} / {workers} loader workers (load {load:.2f}) ...", flush=True)
    cmd = [sys.executable, __file__, "--worker", kind, backend, tmp, "--data", str(args.data), "--steps",
           str(args.steps), "--warmup", str(args.warmup), "--workers", str(workers), "--threads", str(args.threads)]
    if args.teacher_checkpoint is not None:
        cmd += ["--teacher-checkpoint", str(args.teacher_checkpoint)]
    subprocess.run(cmd, check=True)
    res = json.loads(Path(tmp).read_text())
    os.unlink(tmp)
    res["load_before"] = load
    res["date"] = date.today().isoformat()
    return res


def merge_repeats(runs: list[dict]) -> dict:
    """Repeated runs of one (column, kind) -> one result: per part the median of the runs' medians,
    each run's medians and load kept (``runs_median_ms``, ``loads_before``)."""
    if len(runs) == 1:
        return runs[0]
    parts = [k for k in runs[0]["median_ms"] if all(k in r["median_ms"] for r in runs)]
    out = {k: v for k, v in runs[0].items() if k not in ("steps", "median_ms", "load_before")}
    out["median_ms"] = {k: statistics.median(r["median_ms"][k] for r in runs) for k in parts}
    out["runs_median_ms"] = [r["median_ms"] for r in runs]
    out["runs_steps"] = [r.get("steps") for r in runs]
    out["loads_before"] = [r["load_before"] for r in runs]
    out["load_before"] = runs[0]["load_before"]
    return out


def paired_ratios(student: dict, cakd: dict) -> list[float]:
    """CaKD step / plain step of each repeat (per backend the runs alternate plain, CaKD, plain,
    CaKD, ...: a pair shares the machine's state of the moment); [] without repeats or when the two
    come from different invocations of this script."""
    a, b = student.get("runs_median_ms"), cakd.get("runs_median_ms")
    if not a or not b or len(a) != len(b) or student.get("session") != cakd.get("session"):
        return []  # not run together (one of them kept from an earlier invocation)
    return [y["step total"] / x["step total"] for x, y in zip(a, b)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", nargs="+", default=["spconv", "clean_deploy"], choices=["spconv", "clean_deploy"])
    ap.add_argument("--label", help="column name of this run (default: the backend); e.g. 'before' for a run "
                                    "of an older checkout (PYTHONPATH=<worktree> ... --backends spconv --label before)")
    ap.add_argument("--commit", help="the commit the run measured (recorded with the column)")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (0: data on the critical path)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data" / "train_speed")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--workers-sweep", action="store_true",
                    help="also time the plain student step (clean_deploy backend) with 0, 1 and 2 loader workers")
    ap.add_argument("--teacher-checkpoint", type=Path, default=None,
                    help="time the CaKD step with this trained teacher (default: an untrained one)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="run every (kind, backend) this many times, alternating the kinds; the table shows the "
                         "median of the runs and the CaKD / plain ratio of each pair")
    ap.add_argument("--worker", nargs=3, metavar=("KIND", "BACKEND", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker[0], args.worker[1], str(args.data), args.steps, args.warmup, args.workers, args.threads,
               args.worker[2], None if args.teacher_checkpoint is None else str(args.teacher_checkpoint))
        return 0
    if args.repeats < 1:
        raise SystemExit(f"--repeats: expected >= 1, got {args.repeats}")
    if args.teacher_checkpoint is not None and not args.teacher_checkpoint.is_file():
        raise SystemExit(f"--teacher-checkpoint: {args.teacher_checkpoint} is not a file")
    from clean_deploy.bench.run import machine_description

    ensure_data(args.data, args.frames)
    args.out.mkdir(parents=True, exist_ok=True)
    jpath = args.out / "train_speed.json"
    old = json.loads(jpath.read_text()) if jpath.is_file() else {"runs": []}
    results = {(r.get("label", r["backend"]), r["kind"]): r for r in old.get("runs", [])}
    teacher = "untrained"
    if args.teacher_checkpoint is not None:
        import hashlib

        digest = hashlib.sha256(args.teacher_checkpoint.read_bytes()).hexdigest()[:16]
        teacher = f"{args.teacher_checkpoint.name} (sha256 {digest})"
    runs: dict[tuple[str, str], list[dict]] = {}
    session = f"{time.time():.0f}-{os.getpid()}"  # which runs were taken together (paired ratios)
    for _ in range(args.repeats):
        for backend in args.backends:
            for kind in args.kinds:  # one backend's kinds back to back: neighbouring runs form a pair
                res = _run_worker(kind, backend, args, workers=args.workers)
                res["label"] = args.label or backend
                res["commit"] = args.commit or _git_commit()
                res["teacher"] = teacher
                res["session"] = session
                runs.setdefault((res["label"], kind), []).append(res)
                print(f"[train_speed]   step total {res['median_ms']['step total']:.0f} ms", flush=True)
    for key, rs in runs.items():
        results[key] = merge_repeats(rs)
    sweep = old.get("workers_sweep", {})
    if args.workers_sweep:
        for w in (0, 1, 2):
            res = _run_worker("student", "clean_deploy", args, workers=w)
            sweep[str(w)] = {"step_total_ms": res["median_ms"]["step total"], "data_ms": res["median_ms"]["data"],
                             "load_before": res["load_before"]}
            print(f"[train_speed]   workers {w}: step total {res['median_ms']['step total']:.0f} ms", flush=True)
    order = ["before", "spconv", "clean_deploy"]
    labels = sorted({k[0] for k in results}, key=lambda x: (order.index(x) if x in order else len(order), x))
    meta = {"date": date.today().isoformat(), "machine": machine_description(), "threads": args.threads,
            "workers": args.workers, "frames": args.frames, "steps": args.steps, "warmup": args.warmup,
            "columns": labels, "commits": {k[0]: r.get("commit") for k, r in results.items()},
            "teachers": {k[0]: r.get("teacher", "untrained") for k, r in results.items() if k[1] == "cakd"}}
    tmp = jpath.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "runs": list(results.values()), "workers_sweep": sweep}, indent=1))
    tmp.replace(jpath)
    (args.out / "train_speed.md").write_text(render(results, meta, sweep))
    print((args.out / "train_speed.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Behaviour fingerprints of the library on fixed inputs, for refactors that must not change it.

``compute()`` builds small detectors with weights fixed by parameter *name* (so any code that keeps
the state-dict keys rebuilds them exactly, whatever order it creates modules in), runs them on the
toy frames and returns numbers: eval-mode dense outputs and decoded candidates, post-processed
detections, train-mode losses, CaKD losses against a two-stage teacher, masked pruning importance
(exact on two units, first-order on all) and the pruning plan, and the exported ONNX graph's detections on ONNX Runtime.

``tests/fixtures/behaviour_<commit>.json`` holds ``compute()``'s numbers as written at that commit;
``tests/test_behaviour.py`` requires today's code to reproduce them. Regenerate only at a commit
whose behaviour is the reference (``python tests/behaviour.py OUT.json``), never to make a failing
comparison pass.

Detection lists are fingerprinted in a tie-order-free order (``_tie_order_free``): the first
fixture, written on an Intel Xeon, failed on an AMD EPYC only in the projections of detections that
share an exactly equal score. ``behaviour_5b9f9f6.json`` was rewritten on 2026-12-02 from the
reference commit's library (a worktree at baf4655, this file) on the AMD EPYC; all its sums and
absolute sums equal the Intel ones to 1e-5.
"""
from __future__ import annotations

import json
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy import toy_batch, toy_samples  # noqa: E402

STUDENTS = ("centerpoint_fast@0.25x+iou", "second_fast@0.25x+iou", "pointpillars_fast@0.25x")
TEACHER = "voxel_rcnn_fast@0.25x"


def fixed_weights(model: torch.nn.Module) -> torch.nn.Module:
    """Every float parameter/buffer drawn from a generator seeded by its state-dict key."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.05)
            elif name.endswith(".weight") and t.dim() == 1:  # BN / norm scales
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            else:
                fan_in = max(1, t[0].numel()) if t.dim() > 1 else 16
                t.copy_(torch.randn(t.shape, generator=g) / fan_in ** 0.5)
    return model


def _fp(x: torch.Tensor) -> dict:
    """Shape, sum, absolute sum and a fixed random projection of a tensor (float64)."""
    x = x.detach().double().reshape(-1)
    g = torch.Generator().manual_seed(1234)
    proj = torch.randn(x.numel(), generator=g, dtype=torch.float64)
    return {"n": int(x.numel()), "sum": float(x.sum()), "abs": float(x.abs().sum()), "proj": float(x @ proj)}


def _tie_order_free(d: dict) -> dict:
    """``d``'s per-candidate tensors (last candidate axis = ``scores``' last axis) reordered by
    score (descending), then label, then box coordinates. Detections with *exactly* equal scores
    (common with these random weights: up to 35 of 500 share one value) come out of top-k and sort
    in an order that depends on the CPU's vector width, not on the code; this order does not."""
    scores = d["scores"].detach()
    flat = scores.reshape(-1, scores.shape[-1]).double().numpy()
    rows = []
    for b in range(flat.shape[0]):
        keys = [-flat[b]]
        if d.get("labels") is not None:
            keys.append(d["labels"].reshape(flat.shape)[b].double().numpy())
        if d.get("boxes") is not None:
            box = d["boxes"].detach().reshape(*flat.shape, -1)[b].double().numpy()
            keys += [box[:, j] for j in range(box.shape[1])]
        rows.append(np.lexsort(keys[::-1]))
    order = torch.from_numpy(np.stack(rows))
    out = {}
    for k, v in d.items():
        if torch.is_tensor(v) and v.shape[:scores.dim()] == scores.shape:
            v2 = v.reshape(*flat.shape, *v.shape[scores.dim():])
            idx = order.view(*order.shape, *([1] * (v2.dim() - 2))).expand(*order.shape, *v2.shape[2:])
            v = torch.gather(v2, 1, idx).reshape(v.shape)
        out[k] = v
    return out


def _model(name: str):
    from clean_deploy.models.detector import build_detector
    from clean_deploy.models.zoo import get_config

    return fixed_weights(build_detector(get_config(name))).eval()


def _student(name: str, teacher) -> dict:
    from clean_deploy.compress.config import DistillConfig
    from clean_deploy.compress.distill.cakd import CaKDLoss
    from clean_deploy.compress.prune.importance import compute_importance
    from clean_deploy.compress.prune.pruner import plan_by_budget
    from clean_deploy.compress.prune.units import find_units
    from clean_deploy.compress.prune.run import merged_profile

    det = _model(name)
    batch = toy_batch(det.cfg, 2, seed=0)
    res: dict = {}
    with torch.no_grad():
        out = det(batch)
        res["dense"] = {k: _fp(v) for k, v in sorted(out["dense"].items()) if torch.is_tensor(v)}
        dec = _tie_order_free(det.decode(out))
        res["decode"] = {k: _fp(v) for k, v in sorted(dec.items()) if torch.is_tensor(v)}
        res["predict"] = [{k: _fp(v) for k, v in sorted(p.items()) if v is not None} for p in map(_tie_order_free, det.predict(out))]
    torch.manual_seed(0)
    det.train()
    out = det(batch)
    _, res["loss"] = det.loss(out, batch)
    torch.manual_seed(0)
    kd = CaKDLoss(teacher, det, DistillConfig())
    if kd.adapter is not None:
        fixed_weights(kd.adapter)
    _, res["cakd"] = kd(det, batch)
    det.eval()
    units = find_units(det)
    # the exact masked criterion costs one forward per filter: its first and last unit only
    ends = [units[0], units[-1]]
    masked = compute_importance("masked", det, [batch], ends, progress=False)
    res["masked_importance"] = {u.name: _fp(masked[u.name]) for u in ends}
    scores = compute_importance("taylor", det, [batch], units, seed=0, progress=False)
    res["importance"] = {u.name: _fp(scores[u.name]) for u in units}
    res["units"] = [[u.name, u.kind, u.channels, u.fan, list(u.consumers)] for u in units]
    keep, plan = plan_by_budget(det, units, scores, 0.5, merged_profile(det, [batch]), "flops", 4, 0.2)
    res["plan"] = {"keep": {k: v.tolist() for k, v in keep.items()}, "ratio": plan["ratio"]}
    res["export"] = _exported(det)
    return res


def _exported(det) -> dict:
    from clean_deploy.export.onnx_export import export_onnx
    from clean_deploy.runtime.ort_session import OrtSession

    frame = toy_samples(det.cfg, 1, seed=7)[0]
    with tempfile.TemporaryDirectory() as d:
        export_onnx(det, Path(d) / "m.onnx")
        sess = OrtSession(Path(d) / "m.onnx", threads=1)
        dets = sess(frame["points"])
        side = json.loads((Path(d) / "m.json").read_text())
    for key in ("source_checkpoint", "created", "clean_deploy_version"):
        side.pop(key, None)
    d = _tie_order_free({"boxes": torch.from_numpy(np.asarray(dets.boxes)), "scores": torch.from_numpy(np.asarray(dets.scores)),
                         "labels": torch.from_numpy(np.asarray(dets.labels))})
    return {"boxes": _fp(d["boxes"]), "scores": _fp(d["scores"]), "labels": d["labels"].tolist(), "sidecar": side}


def compute() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _compute()
    finally:
        torch.set_num_threads(threads)


def _compute() -> dict:
    teacher = _model(TEACHER)
    batch = toy_batch(teacher.cfg, 2, seed=0)
    res = {"teacher": {}}
    with torch.no_grad():
        out = teacher(batch)
        res["teacher"]["dense"] = {k: _fp(v) for k, v in sorted(out["dense"].items()) if torch.is_tensor(v)}
        res["teacher"]["decode"] = {k: _fp(v) for k, v in sorted(teacher.decode(out).items()) if torch.is_tensor(v)}
    for name in STUDENTS:
        res[name] = _student(name, teacher)
    return res


def compare(ref, new, path: str = "", rtol: float = 1e-5, atol: float = 1e-6) -> list[str]:
    """Differences between two fingerprints: floats to ``rtol``/``atol``, everything else exact."""
    errs = []
    if isinstance(ref, dict):
        if not isinstance(new, dict) or set(ref) != set(new):
            return [f"{path}: keys {sorted(ref) if isinstance(ref, dict) else ref} != "
                    f"{sorted(new) if isinstance(new, dict) else new}"]
        for k in ref:
            errs += compare(ref[k], new[k], f"{path}.{k}", rtol, atol)
    elif isinstance(ref, list):
        if not isinstance(new, list) or len(ref) != len(new):
            return [f"{path}: length {len(ref)} != {len(new) if isinstance(new, list) else new}"]
        for i, (a, b) in enumerate(zip(ref, new)):
            errs += compare(a, b, f"{path}[{i}]", rtol, atol)
    elif isinstance(ref, float) or isinstance(new, float):
        if not abs(float(ref) - float(new)) <= atol + rtol * abs(float(ref)):
            errs.append(f"{path}: {ref} != {new}")
    elif ref != new:
        errs.append(f"{path}: {ref!r} != {new!r}")
    return errs


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")

"""Statistics of a KITTI-format dataset read from disk (class counts, points per frame and per
object vs distance, occlusion / difficulty histograms) and a plain-text report of them."""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from clean_deploy.data.kitti.label import KittiObject, read_label_file
from clean_deploy.data.kitti.reader import read_points_file
from clean_deploy.geometry.boxes import boxes_camera_to_lidar, points_in_boxes_index
from clean_deploy.geometry.calib import KITTI_IMAGE_SHAPE, Calibration
from clean_deploy.kitti import DIFFICULTY_NAMES, difficulty_level

DIST_BINS = (0, 10, 20, 30, 40, 50, 60, 70)
DIFFICULTIES = ("easy", "moderate", "hard", "ignored")


def kitti_difficulty(obj: KittiObject) -> str:
    """Easiest KITTI difficulty an object counts for ("ignored" if none; :func:`difficulty_level`)."""
    level = int(difficulty_level(obj.bbox[3] - obj.bbox[1], obj.occluded, obj.truncated, obj.type == "DontCare")[0])
    return DIFFICULTY_NAMES[level] if level >= 0 else "ignored"


def _splits(root: Path) -> dict[str, list[str]]:
    out = {}
    for split in ("train", "val"):
        f = root / "ImageSets" / f"{split}.txt"
        if f.is_file():
            out[split] = [s.strip() for s in f.read_text().splitlines() if s.strip()]
    if not out:
        out["all"] = sorted(p.stem for p in (root / "training" / "velodyne").glob("*.bin"))
    return out


def dataset_stats(root: str | Path, max_frames: int | None = None) -> dict:
    """Statistics of ``root`` (KITTI layout); frames of ImageSets/{train,val}.txt (all when absent).

    Returns a dict with ``frames``, ``class_counts`` {split: {cls: n}}, ``points_per_frame`` and
    ``fov_points_per_frame`` (mean/min/max), ``points_vs_distance`` {cls: {bin: mean points in
    box}}, ``objects_vs_distance`` {cls: {bin: n}}, ``occlusion`` {cls: {level: n}},
    ``difficulty`` {cls: {easy|moderate|hard|ignored: n}} and ``zero_point_objects`` {cls: n}.
    """
    root = Path(root)
    train = root / "training"
    class_counts: dict[str, Counter] = {}
    n_pts, n_fov = [], []
    pts_dist: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    occ: dict[str, Counter] = defaultdict(Counter)
    diff: dict[str, Counter] = defaultdict(Counter)
    zero: Counter = Counter()
    bins = np.asarray(DIST_BINS, dtype=np.float64)
    labels_bins = [f"{a}-{b}" for a, b in zip(DIST_BINS[:-1], DIST_BINS[1:])]
    labels_bins.append(f"{DIST_BINS[-1]}+")
    n_frames = 0
    for split, ids in _splits(root).items():
        cc = class_counts.setdefault(split, Counter())
        for fid in ids[:max_frames]:
            # the validating reader: a truncated or NaN cloud is an error naming the file
            pts = read_points_file(train / "velodyne" / f"{fid}.bin")
            calib = Calibration.from_file(train / "calib" / f"{fid}.txt")
            objs = read_label_file(train / "label_2" / f"{fid}.txt")
            n_frames += 1
            n_pts.append(len(pts))
            n_fov.append(int(calib.fov_mask(pts[:, :3], KITTI_IMAGE_SHAPE).sum()))
            cc.update(o.type for o in objs)
            objs = [o for o in objs if o.type != "DontCare"]
            if not objs:
                continue
            cam = np.array([[*o.location, o.dimensions[2], o.dimensions[0], o.dimensions[1],
                             o.rotation_y] for o in objs])
            boxes = boxes_camera_to_lidar(cam, calib)
            idx = points_in_boxes_index(pts[:, :3].astype(np.float64), boxes)
            counts = np.bincount(idx[idx >= 0], minlength=len(objs))
            dist = np.hypot(boxes[:, 0], boxes[:, 1])
            which = np.digitize(dist, bins[1:])
            for o, n, b in zip(objs, counts, which):
                pts_dist[o.type][labels_bins[b]].append(int(n))
                occ[o.type][str(int(o.occluded))] += 1
                diff[o.type][kitti_difficulty(o)] += 1
                zero[o.type] += int(n == 0)

    def summary(v: list[int]) -> dict:
        return {"mean": float(np.mean(v)) if v else 0.0, "min": int(min(v)) if v else 0,
                "max": int(max(v)) if v else 0}

    return {
        "root": str(root),
        "frames": n_frames,
        "class_counts": {s: dict(sorted(c.items())) for s, c in class_counts.items()},
        "points_per_frame": summary(n_pts),
        "fov_points_per_frame": summary(n_fov),
        "distance_bins": labels_bins,
        "points_vs_distance": {c: {b: float(np.mean(v)) for b, v in sorted(d.items())}
                               for c, d in sorted(pts_dist.items())},
        "objects_vs_distance": {c: {b: len(v) for b, v in sorted(d.items())}
                                for c, d in sorted(pts_dist.items())},
        "occlusion": {c: dict(sorted(v.items())) for c, v in sorted(occ.items())},
        "difficulty": {c: {d: int(v.get(d, 0)) for d in DIFFICULTIES}
                       for c, v in sorted(diff.items())},
        "zero_point_objects": dict(sorted(zero.items())),
    }


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).rjust(w) for v, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def format_stats(stats: dict) -> str:
    """Plain-text report of :func:`dataset_stats`."""
    out = [f"dataset {stats['root']}: {stats['frames']} frames"]
    ppf, fov = stats["points_per_frame"], stats["fov_points_per_frame"]
    out.append(f"points/frame: mean {ppf['mean']:.0f} min {ppf['min']} max {ppf['max']}   "
               f"in camera FOV: mean {fov['mean']:.0f} min {fov['min']} max {fov['max']}")
    splits = list(stats["class_counts"])
    classes = sorted({c for s in splits for c in stats["class_counts"][s]})
    out += ["", "objects per class",
            _table(["class"] + splits, [[c] + [str(stats["class_counts"][s].get(c, 0))
                                          for s in splits] for c in classes])]
    bins = stats["distance_bins"]
    pvd, ovd = stats["points_vs_distance"], stats["objects_vs_distance"]
    rows = []
    for c in pvd:
        rows.append([c] + [(f"{pvd[c][b]:.0f} ({ovd[c][b]})" if b in pvd[c] else "-")
                           for b in bins])
    out += ["", "mean points in box vs distance [m] (number of objects)",
            _table(["class"] + bins, rows)]
    occ, diff = stats["occlusion"], stats["difficulty"]
    rows = [[c] + [str(occ[c].get(k, 0)) for k in ("0", "1", "2", "3")]
            + [str(diff[c][d]) for d in DIFFICULTIES] + [str(stats["zero_point_objects"].get(c, 0))]
            for c in occ]
    out += ["", "occlusion levels and KITTI difficulty",
            _table(["class", "occ0", "occ1", "occ2", "occ3", *DIFFICULTIES, "0 pts"], rows)]
    return "\n".join(out)

"""Ground-truth database sampling: extract every training object's points, paste sampled objects
into other frames without collisions (OpenPCDet's ``gt_sampling`` / ``DataBaseSampler``).

The database stores each object's points relative to its box centre in one concatenated array
(``points[starts[i] : starts[i] + num_points[i]]``) so it saves to a single ``.npz`` and gathers
sampled objects with one vectorised index. Objects are pasted at their recorded position (as in
OpenPCDet without road planes), so a pasted box keeps its original range and camera FOV.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np

from clean_deploy.atomic import atomic_write
from clean_deploy.config import GTSamplingConfig
from clean_deploy.data.preprocess import kitti_difficulty, label_mask
from clean_deploy.geometry.boxes import enlarge_boxes, points_in_boxes_mask

__all__ = ["GTDatabase", "GTSampler", "build_gt_database", "dataset_fingerprint", "gather_ranges"]


def gather_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Indices ``concat(arange(s, s + c) for s, c)`` without a Python loop."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - (ends - counts), counts)
    return np.arange(total, dtype=np.int64) + shift


@dataclass
class GTDatabase:
    """Objects extracted from training frames (index-aligned arrays of length K)."""

    names: np.ndarray  # (K,) str
    boxes: np.ndarray  # (K,7) float32 LiDAR boxes
    difficulty: np.ndarray  # (K,) int64 KITTI level (0 easy, 1 moderate, 2 hard, -1 other)
    num_points: np.ndarray  # (K,) int64
    starts: np.ndarray  # (K,) int64 first row of the object in ``points``
    frame_ids: np.ndarray  # (K,) str
    gt_index: np.ndarray  # (K,) int64 index of the object in its frame's label file
    points: np.ndarray  # (P,C) float32, xyz relative to the object's box centre

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, mask_or_index: np.ndarray) -> "GTDatabase":
        """Objects selected by a bool mask or an index array (the point buffer is shared)."""
        kw = {f.name: getattr(self, f.name)[mask_or_index]
              for f in fields(self) if f.name != "points"}
        return GTDatabase(points=self.points, **kw)

    def object_points(self, index: np.ndarray | Sequence[int], absolute: bool = True) -> np.ndarray:
        """Concatenated points of objects ``index`` (in that order); ``absolute`` adds each box
        centre back (LiDAR frame), else box-relative xyz."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        rows = gather_ranges(self.starts[index], self.num_points[index])
        pts = self.points[rows].copy()
        if absolute and len(pts):
            pts[:, :3] += np.repeat(self.boxes[index, :3], self.num_points[index], axis=0)
        return pts

    def class_counts(self) -> dict[str, int]:
        u, c = np.unique(self.names, return_counts=True)
        return {str(k): int(v) for k, v in zip(u, c)}

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | Path, fingerprint: str = "") -> None:
        """``fingerprint``: :func:`dataset_fingerprint` of the frames it was built from."""
        arrays = {fl.name: getattr(self, fl.name) for fl in fields(self)}
        arrays["fingerprint"] = np.array(fingerprint)
        # atomic: concurrent writers (torchrun ranks) or a crash never leave a broken database
        atomic_write(path, lambda f: np.savez(f, **arrays))

    @staticmethod
    def stored_fingerprint(path: str | Path) -> str:
        """The fingerprint saved with a database ("" for databases of older versions)."""
        with np.load(path, allow_pickle=False) as z:
            return str(z["fingerprint"]) if "fingerprint" in z else ""

    @classmethod
    def load(cls, path: str | Path) -> "GTDatabase":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"gt database not found: {path}")
        with np.load(path, allow_pickle=False) as z:
            missing = [f.name for f in fields(cls) if f.name not in z]
            if missing:
                raise ValueError(f"{path}: not a gt database (missing arrays {missing})")
            return cls(**{f.name: z[f.name] for f in fields(cls)})

    @classmethod
    def empty(cls, num_point_features: int = 4) -> "GTDatabase":
        z = np.zeros(0, dtype=np.int64)
        return cls(names=np.zeros(0, dtype="<U16"), boxes=np.zeros((0, 7), np.float32),
                   difficulty=z, num_points=z, starts=z, frame_ids=np.zeros(0, dtype="<U16"),
                   gt_index=z, points=np.zeros((0, num_point_features), np.float32))


def dataset_fingerprint(reader, class_names: Sequence[str] | None = None) -> str:
    """Identity of the frames a database is built from: the split's frame ids, every label and calib
    file's bytes, every point file's size and modification time, the reader's NaN policy and the
    classes kept (hashing the points themselves would read the whole dataset; a rewritten cloud
    changes its time). A database whose fingerprint differs belongs to other data."""
    import hashlib

    h = hashlib.sha256()
    h.update(repr((sorted(class_names) if class_names else None, getattr(reader, "nan_policy", None))).encode())
    for fid in reader.frame_ids:
        h.update(fid.encode() + b"\0")
        for path in (reader.label_path(fid), reader.calib_path(fid)):
            h.update(path.read_bytes() if path.is_file() else b"<missing>")
        velo = reader.velodyne_path(fid)
        st = velo.stat() if velo.is_file() else None
        h.update(f"{st.st_size if st else -1}:{st.st_mtime_ns if st else -1}".encode())
    return h.hexdigest()


def build_gt_database(reader, class_names: Sequence[str] | None = None,
                      out_path: str | Path | None = None, progress: bool = False,
                      fingerprint: str | None = None) -> GTDatabase:
    """Extract every labelled object (DontCare excluded; only ``class_names`` when given) of the
    reader's frames: its points inside the box (raw point cloud, not FOV-cropped, as OpenPCDet),
    box, name, difficulty and point count. Saved to ``out_path`` (``.npz``) when given, with
    ``fingerprint`` (:func:`dataset_fingerprint`, computed here when the caller has none)."""
    names, boxes, diffs, counts, fids, gidx, pts_list = [], [], [], [], [], [], []
    ids = reader.frame_ids
    if progress:
        from tqdm import tqdm
        ids = tqdm(ids, desc="gt database")
    num_feat = None
    for fid in ids:
        frame = reader.get_frame(fid)
        num_feat = frame.points.shape[1]
        if frame.labels is None or len(frame.labels) == 0:
            continue
        keep = np.flatnonzero(label_mask(frame.gt_names, class_names))
        if len(keep) == 0:
            continue
        b = frame.gt_boxes[keep]
        inside = points_in_boxes_mask(frame.points[:, :3], b)  # (P, n)
        bi, pi = np.nonzero(inside.T)  # (box, point) pairs sorted by box, then by point
        obj = frame.points[pi].copy()
        obj[:, :3] -= b[bi, :3]
        names.append(frame.gt_names[keep])
        boxes.append(b)
        diffs.append(kitti_difficulty(frame.labels)[keep])
        counts.append(np.bincount(bi, minlength=len(keep)).astype(np.int64))
        fids.append(np.full(len(keep), fid))
        gidx.append(keep.astype(np.int64))
        pts_list.append(obj.astype(np.float32))
    if not names:
        db = GTDatabase.empty(num_feat or 4)
    else:
        num_points = np.concatenate(counts)
        db = GTDatabase(
            names=np.concatenate(names).astype(str), boxes=np.concatenate(boxes).astype(np.float32),
            difficulty=np.concatenate(diffs), num_points=num_points,
            starts=np.concatenate([[0], np.cumsum(num_points)[:-1]]).astype(np.int64),
            frame_ids=np.concatenate(fids).astype(str), gt_index=np.concatenate(gidx),
            points=np.concatenate(pts_list, 0).astype(np.float32))
    if out_path is not None:
        db.save(out_path, fingerprint if fingerprint is not None else dataset_fingerprint(reader, class_names))
    return db


class GTSampler:
    """Paste database objects into a frame until it holds ``sample_counts[cls]`` objects of each
    class, skipping any candidate whose BEV box overlaps (``iou_bev > 0``) an existing box or an
    already accepted one; the scene's points inside pasted boxes are removed."""

    def __init__(self, database: GTDatabase, cfg: GTSamplingConfig | None = None) -> None:
        self.cfg = cfg or GTSamplingConfig()
        self.database = database
        ok = database.num_points >= max(int(self.cfg.min_points), 1)
        if len(self.cfg.drop_difficulties):
            ok &= ~np.isin(database.difficulty, np.asarray(self.cfg.drop_difficulties))
        #: database indices each class samples from
        self.pools: dict[str, np.ndarray] = {
            cls: np.flatnonzero(ok & (database.names == cls)) for cls in self.cfg.sample_counts}

    def __repr__(self) -> str:
        sizes = {k: len(v) for k, v in self.pools.items()}
        return f"GTSampler(pools={sizes}, targets={self.cfg.sample_counts})"

    def select(self, gt_boxes: np.ndarray, gt_names: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
        """Database indices to paste into a frame holding ``gt_boxes``/``gt_names``."""
        from clean_deploy.geometry.boxes import bev_overlap

        occupied = np.asarray(gt_boxes, dtype=np.float64)[:, :7].reshape(-1, 7)
        chosen: list[np.ndarray] = []
        for cls, target in self.cfg.sample_counts.items():
            pool = self.pools.get(cls)
            need = int(target) - int(np.sum(np.asarray(gt_names) == cls))
            if pool is None or len(pool) == 0 or need <= 0:
                continue
            cand = rng.choice(pool, size=min(need, len(pool)), replace=False)
            cb = self.database.boxes[cand].astype(np.float64)
            hit = bev_overlap(cb, occupied).any(1) if len(occupied) else np.zeros(len(cand), bool)
            pair = bev_overlap(cb, cb)
            keep = np.zeros(len(cand), dtype=bool)
            for i in np.flatnonzero(~hit):  # greedy over a few dozen candidates, not points
                if not (pair[i] & keep).any():
                    keep[i] = True
            chosen.append(cand[keep])
            occupied = np.concatenate([occupied, cb[keep]], 0)
        return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)

    def __call__(self, points: np.ndarray, gt_boxes: np.ndarray, gt_names: np.ndarray,
                 rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Returns ``(points, gt_boxes, gt_names, sampled)``: the new points (pasted objects first,
        then the remaining scene points), the existing boxes followed by the pasted ones, and the
        database indices pasted."""
        idx = self.select(gt_boxes, gt_names, rng)
        if len(idx) == 0:
            return points, gt_boxes, gt_names, idx
        db = self.database
        if db.points.shape[1] != points.shape[1]:
            raise ValueError(f"gt database points have {db.points.shape[1]} features, "
                             f"the frame has {points.shape[1]}")
        sb = db.boxes[idx]
        remove = enlarge_boxes(sb, tuple(self.cfg.remove_extra_width))
        if len(points):
            scene = points[~points_in_boxes_mask(points[:, :3], remove).any(1)]
        else:
            scene = points
        obj = db.object_points(idx, absolute=True).astype(points.dtype)
        new_boxes = np.zeros((len(idx), gt_boxes.shape[1]), dtype=gt_boxes.dtype)
        new_boxes[:, :7] = sb
        return (np.concatenate([obj, scene], 0),
                np.concatenate([gt_boxes, new_boxes], 0),
                np.concatenate([np.asarray(gt_names).astype(str), db.names[idx]]),
                idx)

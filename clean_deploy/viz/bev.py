"""Bird's-eye-view drawing of a LiDAR frame: points coloured by height, ground-truth and
predicted boxes (with heading ticks and scores)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from clean_deploy.data.kitti.label import read_label_file, to_arrays  # noqa: E402
from clean_deploy.data.kitti.reader import KittiReader  # noqa: E402
from clean_deploy.geometry.boxes import bev_corners, boxes_camera_to_lidar  # noqa: E402
from clean_deploy.viz.figure import save_figure  # noqa: E402

CLASS_COLOURS = {"Car": "tab:green", "Van": "tab:olive", "Truck": "tab:olive", "Pedestrian": "tab:orange",
                 "Person_sitting": "tab:orange", "Cyclist": "tab:cyan", "Tram": "tab:gray", "Misc": "tab:gray"}


def _draw_boxes(ax, boxes: np.ndarray, names, style: str, scores=None) -> None:
    if len(boxes) == 0:
        return
    corners = bev_corners(np.asarray(boxes, dtype=np.float64)[:, :7])
    for i, (c, name) in enumerate(zip(corners, names)):
        colour = CLASS_COLOURS.get(str(name), "white") if style == "gt" else "tab:red"
        loop = np.vstack([c, c[:1]])
        ax.plot(loop[:, 0], loop[:, 1], color=colour, lw=1.4 if style == "gt" else 1.0,
                ls="-" if style == "gt" else "--")
        front = (c[0] + c[3]) / 2
        centre = c.mean(0)
        ax.plot([centre[0], front[0]], [centre[1], front[1]], color=colour, lw=1.0)
        if scores is not None:
            ax.text(c[:, 0].max(), c[:, 1].max(), f"{scores[i]:.2f}", color="tab:red", fontsize=6)


def draw_bev(points: np.ndarray, out: str | Path, gt_boxes=None, gt_names=None, pred_boxes=None,
             pred_names=None, pred_scores=None, extent=(0.0, -40.0, 70.4, 40.0), title: str = "") -> Path:
    """Save a BEV PNG. ``extent`` = (x_min, y_min, x_max, y_max) in LiDAR metres."""
    x0, y0, x1, y1 = extent
    fig, ax = plt.subplots(figsize=(11, 11 * (y1 - y0) / max(x1 - x0, 1e-6) + 0.6), dpi=130)
    ax.set_facecolor("black")
    m = (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)
    p = points[m]
    ax.scatter(p[:, 0], p[:, 1], c=np.clip(p[:, 2], -2.0, 1.0), s=0.6, cmap="plasma", linewidths=0)
    if gt_boxes is not None:
        _draw_boxes(ax, gt_boxes, gt_names if gt_names is not None else ["Car"] * len(gt_boxes), "gt")
    if pred_boxes is not None:
        _draw_boxes(ax, pred_boxes, pred_names if pred_names is not None else [""] * len(pred_boxes), "pred",
                    pred_scores)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m, forward)")
    ax.set_ylabel("y (m, left)")
    ax.set_title(title or "BEV", fontsize=9)
    return save_figure(fig, out)


def viz_frame(data_dir: str | Path, frame_id: str, out: str | Path, pred_dir: str | Path | None = None,
              split: str = "val", extent=(0.0, -40.0, 70.4, 40.0)) -> Path:
    """Draw frame ``frame_id`` of a KITTI-format folder with its labels and (optionally) the
    detections in ``pred_dir/ID.txt``."""
    reader = KittiReader(data_dir, split)
    frame = reader.get_frame(frame_id)
    keep = frame.gt_names != "DontCare"
    pred_boxes = pred_names = pred_scores = None
    if pred_dir is not None:
        det = to_arrays(read_label_file(Path(pred_dir) / f"{frame_id}.txt", require_score=True))
        pred_boxes = boxes_camera_to_lidar(det.boxes_camera, frame.calib) if len(det) else np.zeros((0, 7))
        pred_names, pred_scores = det.name, det.score
    title = f"{Path(data_dir).name} frame {frame_id}: {len(frame.points)} points, {int(keep.sum())} labels"
    if pred_boxes is not None:
        title += f", {len(pred_boxes)} detections (red, dashed)"
    return draw_bev(frame.points, out, frame.gt_boxes[keep], frame.gt_names[keep], pred_boxes, pred_names,
                    pred_scores, extent, title)

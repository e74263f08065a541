"""Bird's-eye-view preview of a KITTI-format frame: points coloured by height, label boxes.
Reads the files on disk (velodyne, label_2, calib) so it checks what was written."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from clean_deploy.data.kitti.label import read_label_file
from clean_deploy.geometry.boxes import bev_corners, boxes_camera_to_lidar
from clean_deploy.geometry.calib import Calibration

_COLORS = {"Car": "lime", "Van": "cyan", "Truck": "orange", "Tram": "yellow",
           "Pedestrian": "red", "Person_sitting": "magenta", "Cyclist": "deepskyblue"}


def render_bev(root: str | Path, frame: str | int, path: str | Path,
               extent: tuple[float, float, float, float] = (-40.0, 80.0, -40.0, 40.0),
               dpi: int = 110) -> Path:
    """Write a BEV PNG of ``root/training`` frame ``frame`` to ``path``; returns ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(root) / "training"
    fid = f"{int(frame):06d}" if not isinstance(frame, str) else frame
    pts = np.fromfile(root / "velodyne" / f"{fid}.bin", dtype=np.float32).reshape(-1, 4)
    calib = Calibration.from_file(root / "calib" / f"{fid}.txt")
    objs = [o for o in read_label_file(root / "label_2" / f"{fid}.txt") if o.type != "DontCare"]
    x0, x1, y0, y1 = extent
    m = (pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > y0) & (pts[:, 1] < y1)
    p = pts[m]
    res = 0.1  # one BEV pixel per 10 cm, coloured by the highest point in it
    nx, ny = int(round((x1 - x0) / res)), int(round((y1 - y0) / res))
    ix = ((p[:, 0] - x0) / res).astype(np.int64).clip(0, nx - 1)
    iy = ((p[:, 1] - y0) / res).astype(np.int64).clip(0, ny - 1)
    top = np.full(nx * ny, -np.inf)
    np.maximum.at(top, iy * nx + ix, p[:, 2])
    top = top.reshape(ny, nx)
    img = np.ma.masked_invalid(np.where(np.isfinite(top), top, np.nan))
    scale = 12.0 / max(x1 - x0, y1 - y0)  # longest side 12 inches
    fig, ax = plt.subplots(figsize=((x1 - x0) * scale, (y1 - y0) * scale + 0.4))
    ax.set_facecolor("black")
    # LiDAR x forward is drawn to the right, y (left) upwards
    ax.imshow(img, origin="lower", extent=(x0, x1, y0, y1), cmap="turbo", vmin=-3.0, vmax=1.5,
              interpolation="nearest")
    if objs:
        cam = np.array([[*o.location, o.dimensions[2], o.dimensions[0], o.dimensions[1],
                         o.rotation_y] for o in objs])
        corners = bev_corners(boxes_camera_to_lidar(cam, calib))
        for o, c in zip(objs, corners):
            if not (x0 < c[:, 0].mean() < x1 and y0 < c[:, 1].mean() < y1):
                continue
            cc = np.vstack([c, c[:1]])
            col = _COLORS.get(o.type, "white")
            ax.plot(cc[:, 0], cc[:, 1], color=col, lw=0.8)
            front = (c[0] + c[3]) / 2
            ax.plot([c.mean(0)[0], front[0]], [c.mean(0)[1], front[1]], color=col, lw=0.8)
            ax.text(c[:, 0].max(), c[:, 1].max(), f"{o.type[:3]} o{o.occluded}", color=col,
                    fontsize=5)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_title(f"frame {fid}: {len(pts)} points, {len(objs)} labelled objects", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)

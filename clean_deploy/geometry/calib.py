"""KITTI calibration: parse/write calib files and map points between LiDAR, camera and image.

Frames (as in the KITTI devkit): LiDAR ``velo`` (x forward, y left, z up), rectified camera
``rect`` (x right, y down, z forward), image pixels of camera 2 (``P2``).
``rect = R0_rect @ Tr_velo_to_cam @ [velo; 1]``; ``pixel ~ P2 @ [rect; 1]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CALIB_KEYS = ("P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam", "Tr_imu_to_velo")
_SHAPES = {"P0": (3, 4), "P1": (3, 4), "P2": (3, 4), "P3": (3, 4), "R0_rect": (3, 3),
           "Tr_velo_to_cam": (3, 4), "Tr_imu_to_velo": (3, 4)}
_REQUIRED = ("P2", "R0_rect", "Tr_velo_to_cam")


class CalibError(ValueError):
    """A calibration file that does not follow KITTI's format."""


def _affine_rows(rows: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(3, N) float64 coordinates -> (3, N) ``m[:3, :3] @ rows + m[:3, 3:]``, evaluated row by row as
    ``((x*m0 + y*m1) + z*m2) + t``: the C++ sample's arithmetic (built with -ffp-contract=off), so
    both crop exactly the same points. Contiguous rows make it ~20x faster than numpy's matmul."""
    out = np.empty_like(rows)
    tmp = np.empty_like(rows[0])
    for r in range(3):
        o = out[r]
        np.multiply(rows[0], m[r, 0], out=o)
        o += np.multiply(rows[1], m[r, 1], out=tmp)
        o += np.multiply(rows[2], m[r, 2], out=tmp)
        o += m[r, 3]
    return out


def _rows(pts) -> np.ndarray:
    """(N, >=3) points -> (3, N) contiguous float64 x, y, z rows."""
    pts = np.asarray(pts)
    return np.array(pts[:, :3].T, dtype=np.float64, order="C")


def _affine(pts, m: np.ndarray) -> np.ndarray:
    """(N, 3) points -> (N, 3) float64 ``pts @ m[:3, :3].T + m[:3, 3]`` (see :func:`_affine_rows`)."""
    return _affine_rows(_rows(pts), m).T


@dataclass
class Calibration:
    """KITTI calibration of one frame. Matrices are float64 numpy arrays."""

    P2: np.ndarray
    R0_rect: np.ndarray
    Tr_velo_to_cam: np.ndarray
    P0: np.ndarray | None = None
    P1: np.ndarray | None = None
    P3: np.ndarray | None = None
    Tr_imu_to_velo: np.ndarray | None = None
    source: str = field(default="<memory>", compare=False)

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_file(cls, path: str | Path) -> "Calibration":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"calib file not found: {path}")
        return cls.from_text(path.read_text(), source=str(path))

    @classmethod
    def from_text(cls, text: str, source: str = "<memory>") -> "Calibration":
        mats: dict[str, np.ndarray] = {}
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line:
                continue
            if ":" not in line:
                raise CalibError(f"{source}:{lineno}: expected 'KEY: v1 v2 ...', got {raw!r}")
            key, vals = line.split(":", 1)
            key = key.strip()
            # KITTI raw/odometry spell R0_rect as R_rect and Tr_velo_to_cam as Tr_velo_cam
            key = {"R_rect": "R0_rect", "Tr_velo_cam": "Tr_velo_to_cam",
                   "Tr_imu_velo": "Tr_imu_to_velo"}.get(key, key)
            if key not in _SHAPES:
                continue  # unknown keys are tolerated (other KITTI tasks add their own)
            try:
                arr = np.array([float(v) for v in vals.split()], dtype=np.float64)
            except ValueError as e:
                raise CalibError(f"{source}:{lineno}: {key}: non-numeric value ({e})") from None
            shape = _SHAPES[key]
            if arr.size != shape[0] * shape[1]:
                raise CalibError(
                    f"{source}:{lineno}: {key} needs {shape[0] * shape[1]} numbers, got {arr.size}"
                )
            if not np.all(np.isfinite(arr)):
                raise CalibError(f"{source}:{lineno}: {key} has NaN/inf values")
            mats[key] = arr.reshape(shape)
        missing = [k for k in _REQUIRED if k not in mats]
        if missing:
            raise CalibError(f"{source}: missing calibration entries {missing}")
        return cls(source=source, **mats)

    def to_text(self) -> str:
        lines = []
        for key in CALIB_KEYS:
            m = getattr(self, key)
            if m is None:
                m = np.eye(3, 4) if key.startswith("P") or key.startswith("Tr") else np.eye(3)
            lines.append(f"{key}: " + " ".join(f"{v:.12e}" for v in np.asarray(m).ravel()))
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_text())

    # ------------------------------------------------------------ transforms
    @property
    def velo_to_rect(self) -> np.ndarray:
        """4x4 homogeneous transform LiDAR -> rectified camera."""
        t = np.eye(4)
        t[:3, :4] = self.Tr_velo_to_cam
        r = np.eye(4)
        r[:3, :3] = self.R0_rect
        return r @ t

    @property
    def rect_to_velo(self) -> np.ndarray:
        return np.linalg.inv(self.velo_to_rect)

    def lidar_to_rect(self, pts: np.ndarray) -> np.ndarray:
        """(N,3) LiDAR points -> (N,3) rectified camera points."""
        return _affine(pts, self.velo_to_rect)

    def rect_to_lidar(self, pts: np.ndarray) -> np.ndarray:
        """(N,3) rectified camera points -> (N,3) LiDAR points."""
        return _affine(pts, self.rect_to_velo)

    def rect_to_img(self, pts_rect: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project (N,3) rect points with P2: returns pixels (N,2) and depth (N,) in rect z."""
        hom = _affine(pts_rect, self.P2)
        depth = hom[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = hom[:, :2] / depth[:, None]
        # P2 has a translation along z of ~0: depth in the camera equals rect z + P2[2,3]
        return uv, depth

    def lidar_to_img(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.rect_to_img(self.lidar_to_rect(pts))

    def fov_mask(self, pts_lidar: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
        """Points that project inside the image (H, W) with positive depth."""
        hom = _affine_rows(_affine_rows(_rows(pts_lidar), self.velo_to_rect), self.P2)
        h, w = image_shape
        keep = hom[2] > 0  # only these are divided (and compared), as in the C++ sample's crop
        d = hom[2][keep]
        u, v = hom[0][keep] / d, hom[1][keep] / d
        keep[keep] = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        return keep


def kitti_default_calibration() -> Calibration:
    """A calibration with the geometry of KITTI's recording car (KITTI raw 2011_09_26, rounded).

    Used by the synthetic benchmark so its files look like (and project like) real KITTI frames.
    """
    p2 = np.array([[721.5377, 0.0, 609.5593, 44.85728],
                   [0.0, 721.5377, 172.854, 0.2163791],
                   [0.0, 0.0, 1.0, 0.002745884]])
    p0 = np.array([[721.5377, 0.0, 609.5593, 0.0],
                   [0.0, 721.5377, 172.854, 0.0],
                   [0.0, 0.0, 1.0, 0.0]])
    p1 = p0.copy()
    p1[0, 3] = -387.5744
    p3 = np.array([[721.5377, 0.0, 609.5593, -339.5242],
                   [0.0, 721.5377, 172.854, 2.199936],
                   [0.0, 0.0, 1.0, 0.002729905]])
    r0 = np.array([[0.9999239, 0.00983776, -0.007445048],
                   [-0.009869795, 0.9999421, -0.004278459],
                   [0.007402527, 0.004351614, 0.9999631]])
    tr = np.array([[7.533745e-03, -9.999714e-01, -6.166020e-04, -4.069766e-03],
                   [1.480249e-02, 7.280733e-04, -9.998902e-01, -7.631618e-02],
                   [9.998621e-01, 7.523790e-03, 1.480755e-02, -2.717806e-01]])
    imu = np.array([[9.999976e-01, 7.553071e-04, -2.035826e-03, -8.086759e-01],
                    [-7.854027e-04, 9.998898e-01, -1.482298e-02, 3.195559e-01],
                    [2.024406e-03, 1.482454e-02, 9.998881e-01, -7.997231e-01]])
    return Calibration(P2=p2, R0_rect=r0, Tr_velo_to_cam=tr, P0=p0, P1=p1, P3=p3,
                       Tr_imu_to_velo=imu, source="kitti_default")


#: KITTI image size of camera 2 (height, width)
KITTI_IMAGE_SHAPE = (375, 1242)

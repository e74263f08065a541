"""Scene geometry container: oriented boxes, cylinders and ellipsoids with material and owner.
Builders add primitives in an object's local frame; ``freeze()`` gives the ray caster's arrays."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# primitive kinds (local frame: x along the heading, y left, z up; rotation = yaw about z)
BOX = 0  # half extents (hx, hy, hz)
CYL_Z = 1  # vertical cylinder: (radius, radius, half height)
CYL_Y = 2  # cylinder with its axis along local y (wheels, discs): (radius, half width, radius)
ELLIPSOID = 3  # semi-axes (a, b, c)

# semantic tags of primitives and ground (for tests, statistics and debugging)
SEM_NONE = 0
SEM_ROAD, SEM_SIDEWALK, SEM_KERB, SEM_TERRAIN, SEM_MARKING = 1, 2, 3, 4, 5
SEM_BUILDING, SEM_WALL, SEM_POLE, SEM_TRUNK, SEM_VEGETATION, SEM_CLUTTER, SEM_SIGN = (
    10, 11, 12, 13, 14, 15, 16)
SEM_VEHICLE, SEM_GLASS, SEM_WHEEL, SEM_PERSON, SEM_BIKE = 20, 21, 22, 23, 24


@dataclass
class Primitives:
    """Frozen struct-of-arrays of all primitives of a scene (read by the ray caster)."""

    kind: np.ndarray  # (P,) int32
    center: np.ndarray  # (P,3) float64
    cos_sin: np.ndarray  # (P,2) cos(yaw), sin(yaw)
    half: np.ndarray  # (P,3) shape parameters (see kinds)
    refl: np.ndarray  # (P,) reflectivity in [0,1]
    porosity: np.ndarray  # (P,) probability a ray passes through (foliage, fences)
    dropout: np.ndarray  # (P,) extra probability of a lost return (glass, black rubber)
    sem: np.ndarray  # (P,) int16 semantic tag
    obj: np.ndarray  # (P,) int32 owning object index, -1 for static scenery

    def __len__(self) -> int:
        return len(self.kind)

    def bev_radius(self) -> np.ndarray:
        """Radius of a circle around each primitive's centre that holds its footprint."""
        h = self.half
        r = np.hypot(h[:, 0], h[:, 1])
        cyl = (self.kind == CYL_Z)
        r[cyl] = h[cyl, 0]
        return r


class PrimitiveSet:
    """Growable list of primitives; ``frame`` places a local part into the world."""

    def __init__(self) -> None:
        self._rows: list[tuple] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, kind: int, center, yaw: float, half, refl: float, sem: int, obj: int = -1,
            porosity: float = 0.0, dropout: float = 0.0) -> None:
        cx, cy, cz = (float(v) for v in center)
        hx, hy, hz = (float(v) for v in half)
        if min(hx, hy, hz) <= 0:
            raise ValueError(f"primitive with non-positive size {half}")
        self._rows.append((kind, cx, cy, cz, math.cos(yaw), math.sin(yaw), hx, hy, hz,
                           float(np.clip(refl, 0.0, 1.0)), porosity, dropout, sem, obj))

    def add_local(self, pose: "Pose", kind: int, local_center, local_yaw: float, half,
                  refl: float, sem: int, obj: int = -1, porosity: float = 0.0,
                  dropout: float = 0.0) -> None:
        """Add a part given in the frame of ``pose`` (x forward, y left, z up from the base)."""
        self.add(kind, pose.to_world(local_center), pose.yaw + local_yaw, half, refl, sem, obj,
                 porosity, dropout)

    def extend(self, other: "PrimitiveSet") -> None:
        self._rows.extend(other._rows)

    def freeze(self) -> Primitives:
        if not self._rows:
            a = np.zeros((0, 14))
        else:
            a = np.array(self._rows, dtype=np.float64)
        return Primitives(kind=a[:, 0].astype(np.int32), center=np.ascontiguousarray(a[:, 1:4]),
                          cos_sin=np.ascontiguousarray(a[:, 4:6]),
                          half=np.ascontiguousarray(a[:, 6:9]), refl=a[:, 9].copy(),
                          porosity=a[:, 10].copy(), dropout=a[:, 11].copy(),
                          sem=a[:, 12].astype(np.int16), obj=a[:, 13].astype(np.int32))


@dataclass(frozen=True)
class Pose:
    """Position of an object's base (bottom centre) and its heading."""

    x: float
    y: float
    z: float
    yaw: float

    def to_world(self, local) -> tuple[float, float, float]:
        lx, ly, lz = local
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return (self.x + c * lx - s * ly, self.y + s * lx + c * ly, self.z + lz)

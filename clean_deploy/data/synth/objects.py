"""Labelled road users: KITTI-like size priors and part-based shapes (car, van, truck, tram,
pedestrian, sitting person, cyclist) that exactly fill their label box minus a small margin."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clean_deploy.data.synth.primitives import (BOX, CYL_Y, CYL_Z, ELLIPSOID, SEM_BIKE,
                                                SEM_GLASS, SEM_PERSON, SEM_VEHICLE, SEM_WHEEL,
                                                Pose, PrimitiveSet)

#: (mean, std) of label length, width, height per class (KITTI training-set statistics)
SIZE_PRIORS: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "Car": ((3.88, 0.43), (1.63, 0.10), (1.53, 0.14)),
    "Van": ((5.08, 0.55), (1.90, 0.14), (2.21, 0.25)),
    "Truck": ((10.1, 2.6), (2.59, 0.19), (3.25, 0.40)),
    "Tram": ((16.1, 3.9), (2.54, 0.10), (3.53, 0.15)),
    "Pedestrian": ((0.84, 0.23), (0.66, 0.14), (1.76, 0.11)),
    "Person_sitting": ((0.80, 0.20), (0.58, 0.10), (1.27, 0.10)),
    "Cyclist": ((1.76, 0.18), (0.60, 0.12), (1.74, 0.09)),
}
#: hard limits (min, max) of l, w, h so every shape can be built
SIZE_LIMITS = {
    "Car": ((3.0, 5.2), (1.4, 1.95), (1.25, 1.95)),
    "Van": ((4.2, 6.5), (1.65, 2.3), (1.8, 2.9)),
    "Truck": ((6.0, 16.5), (2.2, 2.9), (2.6, 4.0)),
    "Tram": ((12.0, 30.0), (2.3, 2.7), (3.2, 3.8)),
    "Pedestrian": ((0.45, 1.3), (0.45, 0.95), (1.45, 2.0)),
    "Person_sitting": ((0.6, 1.2), (0.45, 0.8), (1.05, 1.45)),
    "Cyclist": ((1.4, 2.1), (0.42, 0.85), (1.5, 1.95)),
}
LABELLED_CLASSES = tuple(SIZE_PRIORS)
_PAINT = ((0.70, 0.22), (0.50, 0.25), (0.30, 0.12), (0.12, 0.10), (0.05, 0.20), (0.22, 0.11))
_GLASS = dict(refl=0.06, sem=SEM_GLASS, dropout=0.4)


@dataclass
class ObjectInstance:
    """A labelled road user: class, LiDAR box (x, y, z, l, w, h, yaw) and its primitive range."""

    cls: str
    box: np.ndarray  # (7,) centre-based LiDAR box = the KITTI label box
    prim_lo: int = 0
    prim_hi: int = 0


def sample_size(cls: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """Label dimensions (l, w, h) drawn from the class prior, clipped to buildable limits."""
    out = []
    for (mu, sd), (lo, hi) in zip(SIZE_PRIORS[cls], SIZE_LIMITS[cls]):
        out.append(float(np.clip(rng.normal(mu, sd), lo, hi)))
    return out[0], out[1], out[2]


def paint_reflectivity(rng: np.random.Generator) -> float:
    vals = np.array([v for v, _ in _PAINT])
    probs = np.array([p for _, p in _PAINT])
    return float(np.clip(rng.choice(vals, p=probs / probs.sum()) + rng.normal(0, 0.03), 0.03, 0.9))


class Parts:
    """Adds parts given by local extents (x0, x1, y0, y1, z0, z1) to a PrimitiveSet."""

    def __init__(self, ps: PrimitiveSet, pose: Pose, obj: int) -> None:
        self.ps, self.pose, self.obj = ps, pose, obj

    def box(self, x0, x1, y0, y1, z0, z1, refl, sem, porosity=0.0, dropout=0.0) -> None:
        self.ps.add_local(self.pose, BOX, ((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2), 0.0,
                          ((x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2), refl, sem, self.obj,
                          porosity, dropout)

    def cyl_z(self, x, y, r, z0, z1, refl, sem, porosity=0.0) -> None:
        self.ps.add_local(self.pose, CYL_Z, (x, y, (z0 + z1) / 2), 0.0, (r, r, (z1 - z0) / 2),
                          refl, sem, self.obj, porosity)

    def wheel(self, x, y, r, half_width, refl, sem=SEM_WHEEL, porosity=0.0,
              dropout=0.0) -> None:
        self.ps.add_local(self.pose, CYL_Y, (x, y, r), 0.0, (r, half_width, r), refl, sem,
                          self.obj, porosity, dropout)

    def ellipsoid(self, x, y, z, a, b, c, refl, sem, porosity=0.0) -> None:
        self.ps.add_local(self.pose, ELLIPSOID, (x, y, z), 0.0, (a, b, c), refl, sem, self.obj,
                          porosity)


def _inner(dims, margin: float) -> tuple[float, float, float]:
    l, w, h = dims
    return l - 2 * margin, w - 2 * margin, h - margin / 2


def _plates_and_lights(p: Parts, L: float, W: float, z_plate: float, z_light: float) -> None:
    for sgn in (1.0, -1.0):
        x_out = sgn * (L / 2 + 0.012)
        x0, x1 = sorted((sgn * (L / 2 - 0.005), x_out))
        p.box(x0, x1, -0.26, 0.26, z_plate, z_plate + 0.11, 0.92, SEM_VEHICLE)
        for side in (1.0, -1.0):
            y0, y1 = sorted((side * (W / 2 - 0.05), side * (W / 2 - 0.3)))
            p.box(x0, x1, y0, y1, z_light, z_light + 0.14, 0.75, SEM_VEHICLE)


def build_car(ps: PrimitiveSet, pose: Pose, dims, obj: int, rng: np.random.Generator,
              margin: float = 0.04) -> None:
    """Body box + narrower glass cabin with roof, stepped windshield, 4 wheels, plates, lights."""
    L, W, H = _inner(dims, margin)
    p = Parts(ps, pose, obj)
    paint = paint_reflectivity(rng)
    r = float(np.clip(rng.normal(0.31, 0.02), 0.27, min(0.36, 0.24 * H)))
    clear = 0.2
    belt = float(np.clip(0.57 * H + rng.normal(0, 0.03), 0.72, H - 0.4))
    xf, xr = L / 2 - np.clip(0.22 * L, 0.7, 1.0), -(L / 2 - np.clip(0.24 * L, 0.75, 1.1))
    for x in (xf, xr):
        for side in (1.0, -1.0):
            p.wheel(x, side * (W / 2 - 0.13), r, 0.1, 0.06, dropout=0.25)
    p.box(-L / 2, L / 2, -W / 2, W / 2, clear, belt, paint, SEM_VEHICLE)
    hood = float(np.clip(0.27 * L, 0.85, 1.35))
    cab_front = L / 2 - hood
    hatch = rng.random() < 0.4
    cab_rear = -L / 2 + 0.15 if hatch else cab_front - float(np.clip(0.45 * L, 1.5, 2.3))
    cw = W / 2 - 0.08
    roof = 0.06
    p.box(cab_rear, cab_front, -cw, cw, belt, H - roof, **_GLASS)
    p.box(cab_rear + 0.1, cab_front - 0.25, -cw, cw, H - roof, H, paint, SEM_VEHICLE)
    # stepped windshield / rear window (the cabin's slopes)
    step = 0.45 * (H - belt)
    p.box(cab_front, min(cab_front + 0.35, L / 2 - 0.2), -cw, cw, belt, belt + step, **_GLASS)
    if not hatch:
        p.box(max(cab_rear - 0.3, -L / 2 + 0.1), cab_rear, -cw, cw, belt, belt + step, **_GLASS)
    _plates_and_lights(p, L, W, 0.38, belt - 0.24)


def build_van(ps: PrimitiveSet, pose: Pose, dims, obj: int, rng: np.random.Generator,
              margin: float = 0.04) -> None:
    """Tall box body with a short nose, windshield and side-window band, 4 wheels."""
    L, W, H = _inner(dims, margin)
    p = Parts(ps, pose, obj)
    paint = paint_reflectivity(rng)
    r = 0.34
    for x in (L / 2 - 0.95, -(L / 2 - 1.0)):
        for side in (1.0, -1.0):
            p.wheel(x, side * (W / 2 - 0.14), r, 0.11, 0.06, dropout=0.25)
    nose = 0.8
    belt = 0.52 * H
    p.box(-L / 2, L / 2, -W / 2, W / 2, 0.25, belt, paint, SEM_VEHICLE)  # lower body
    p.box(-L / 2, L / 2 - nose, -W / 2, W / 2, belt, H, paint, SEM_VEHICLE)  # cargo / cabin
    p.box(L / 2 - nose, L / 2 - 0.35, -W / 2 + 0.05, W / 2 - 0.05, belt, 0.86 * H, **_GLASS)
    p.box(L / 2 - nose - 0.9, L / 2 - nose + 0.01, -W / 2 - 0.005, W / 2 + 0.005, belt + 0.1,
          0.86 * H, **_GLASS)  # side windows of the driver's cabin
    _plates_and_lights(p, L, W, 0.42, belt - 0.3)


def build_truck(ps: PrimitiveSet, pose: Pose, dims, obj: int, rng: np.random.Generator,
                margin: float = 0.04) -> None:
    """Cab + cargo box on a chassis, 6 wheels."""
    L, W, H = _inner(dims, margin)
    p = Parts(ps, pose, obj)
    paint = paint_reflectivity(rng)
    cargo_refl = float(np.clip(rng.normal(0.5, 0.15), 0.1, 0.85))
    r = 0.5
    for x in (L / 2 - 1.25, -(L / 2 - 1.6), -(L / 2 - 2.7)):
        for side in (1.0, -1.0):
            p.wheel(x, side * (W / 2 - 0.18), r, 0.16, 0.06, dropout=0.25)
    cab = 2.2
    cab_h = min(3.0, 0.9 * H)
    p.box(-L / 2 + 0.4, L / 2 - 0.3, -W / 2 + 0.25, W / 2 - 0.25, 0.45, 1.05, 0.2, SEM_VEHICLE)
    p.box(L / 2 - cab, L / 2, -W / 2, W / 2, 0.5, 0.6 * cab_h, paint, SEM_VEHICLE)
    p.box(L / 2 - cab, L / 2 - 0.05, -W / 2, W / 2, 0.6 * cab_h, cab_h, paint, SEM_VEHICLE)
    p.box(L / 2 - 0.05, L / 2, -W / 2 + 0.1, W / 2 - 0.1, 0.62 * cab_h, 0.92 * cab_h, **_GLASS)
    p.box(-L / 2, L / 2 - cab - 0.3, -W / 2, W / 2, 1.05, H, cargo_refl, SEM_VEHICLE)
    _plates_and_lights(p, L, W, 0.6, 0.75)


def build_tram(ps: PrimitiveSet, pose: Pose, dims, obj: int, rng: np.random.Generator,
               margin: float = 0.04) -> None:
    """Long car body with a window band, roof equipment and bogies."""
    L, W, H = _inner(dims, margin)
    p = Parts(ps, pose, obj)
    paint = float(np.clip(rng.normal(0.55, 0.1), 0.2, 0.85))
    roof = H - 0.35
    p.box(-L / 2, L / 2, -W / 2, W / 2, 0.35, 0.42 * H, paint, SEM_VEHICLE)
    p.box(-L / 2, L / 2, -W / 2, W / 2, 0.42 * H, 0.76 * H, **_GLASS)
    p.box(-L / 2, L / 2, -W / 2, W / 2, 0.76 * H, roof, paint, SEM_VEHICLE)
    p.box(-0.3 * L, 0.3 * L, -0.7, 0.7, roof, H, 0.3, SEM_VEHICLE)
    for x in (-0.35 * L, 0.0, 0.35 * L):
        p.box(x - 1.0, x + 1.0, -W / 2 + 0.3, W / 2 - 0.3, 0.05, 0.4, 0.1, SEM_WHEEL)


def build_pedestrian(ps: PrimitiveSet, pose: Pose, dims, obj: int, rng: np.random.Generator,
                     margin: float = 0.04) -> None:
    """Walking person: shins/thighs (stride along x), torso, swinging arms, head."""
    L, W, H = _inner(dims, margin)
    p = Parts(ps, pose, obj)
    cloth = float(np.clip(rng.normal(0.3, 0.12), 0.05, 0.7))
    skin = float(np.clip(rng.normal(0.35, 0.05), 0.2, 0.5))
    r_leg, r_arm = 0.065, 0.045
    hip, knee, shoulder = 0.5 * H, 0.27 * H, 0.81 * H
    s = L / 2 - r_leg  # feet at the front/back end of the box
    for sgn, y in ((1.0, 0.09), (-1.0, -0.09)):
        p.cyl_z(sgn * s, y, r_leg, 0.0, knee, cloth, SEM_PERSON)
        p.cyl_z(sgn * 0.45 * s, y, r_leg + 0.01, knee - 0.02, hip + 0.04, cloth, SEM_PERSON)
    tw = float(np.clip(W / 2 - 2 * r_arm - 0.01, 0.13, 0.2))
    p.ellipsoid(0.0, 0.0, (hip + shoulder) / 2, 0.13, tw, (shoulder - hip) / 2 + 0.05, cloth,
                SEM_PERSON)
    for sgn in (1.0, -1.0):
        p.cyl_z(-sgn * 0.5 * s, sgn * (W / 2 - r_arm), r_arm, 0.47 * H, 0.8 * H, cloth,
                SEM_PERSON)
    p.cyl_z(0.0, 0.0, 0.05, shoulder, H - 0.2, skin, SEM_PERSON)
    p.ellipsoid(0.0, 0.0, H - 0.115, 0.1, 0.085, 0.115, skin, SEM_PERSON)


def build_person_sitting(ps: PrimitiveSet, pose: Pose, dims, obj: int,
                         rng: np.random.Generator, margin: float = 0.04) -> None:
    """Seated person facing +x: upright torso and head at the back, thighs forward, shins."""
    L, W, H = _inner(dims, margin)
    p = Parts(ps, pose, obj)
    cloth = float(np.clip(rng.normal(0.3, 0.12), 0.05, 0.7))
    seat = 0.45
    x_back = -L / 2
    tw = min(0.2, W / 2 - 0.1)
    p.box(x_back, x_back + 0.26, -tw, tw, seat, H - 0.24, cloth, SEM_PERSON)
    p.ellipsoid(x_back + 0.13, 0.0, H - 0.115, 0.1, 0.085, 0.115, 0.35, SEM_PERSON)
    p.box(x_back + 0.1, L / 2, -0.17, 0.17, seat, seat + 0.16, cloth, SEM_PERSON)
    for y in (0.09, -0.09):
        p.cyl_z(L / 2 - 0.065, y, 0.065, 0.0, seat + 0.05, cloth, SEM_PERSON)
    for sgn in (1.0, -1.0):
        p.cyl_z(x_back + 0.2, sgn * (W / 2 - 0.045), 0.045, seat + 0.12, H - 0.32, cloth,
                SEM_PERSON)
    # the chair under the person
    p.box(x_back + 0.02, min(x_back + 0.45, L / 2 - 0.15), -0.2, 0.2, seat - 0.05, seat, 0.3,
          SEM_PERSON)


def build_bicycle(p: Parts, L: float, W: float, seat_z: float, bar_z: float,
                  rng: np.random.Generator) -> float:
    """Bike along x: two spoked wheels (porous discs), frame tubes, saddle, handlebar.
    Returns the handlebar x position."""
    frame = float(np.clip(rng.normal(0.35, 0.15), 0.05, 0.8))
    rw = float(np.clip(rng.normal(0.34, 0.01), 0.3, L / 4))
    for x in (L / 2 - rw, -(L / 2 - rw)):
        p.wheel(x, 0.0, rw, 0.02, 0.1, sem=SEM_BIKE, porosity=0.55)
    xb = L / 2 - rw - 0.08
    p.box(-0.28, xb, -0.02, 0.02, seat_z - 0.3, seat_z - 0.25, frame, SEM_BIKE)
    p.box(-0.2, 0.12, -0.02, 0.02, rw - 0.05, seat_z - 0.3, frame, SEM_BIKE, porosity=0.5)
    p.box(-0.33, -0.12, -0.07, 0.07, seat_z - 0.05, seat_z, 0.1, SEM_BIKE)
    p.box(xb - 0.03, xb + 0.03, -W / 2, W / 2, bar_z - 0.03, bar_z, frame, SEM_BIKE)
    return xb


def build_cyclist(ps: PrimitiveSet, pose: Pose, dims, obj: int, rng: np.random.Generator,
                  margin: float = 0.04) -> None:
    """Rider (legs, leaning torso, arms to the bar, head) on a bicycle."""
    L, W, H = _inner(dims, margin)
    p = Parts(ps, pose, obj)
    cloth = float(np.clip(rng.normal(0.3, 0.12), 0.05, 0.7))
    seat = 0.52 * H
    bar = seat + 0.1
    xb = build_bicycle(p, L, W, seat, bar, rng)
    top = H - 0.22
    mid = (seat + top) / 2
    for x, y in ((0.08, 0.11), (-0.12, -0.11)):
        p.cyl_z(x - 0.1, y, 0.06, 0.25, seat, cloth, SEM_PERSON)
    p.box(-0.36, -0.06, -0.17, 0.17, seat, mid, cloth, SEM_PERSON)
    p.box(-0.2, 0.12, -0.19, 0.19, mid, top, cloth, SEM_PERSON)
    for sgn in (1.0, -1.0):
        y0, y1 = sorted((sgn * 0.17, sgn * min(0.26, W / 2)))
        p.box(0.05, xb, y0, y1, bar, top - 0.05, cloth, SEM_PERSON)
    p.ellipsoid(0.02, 0.0, H - 0.115, 0.12, 0.1, 0.115, 0.4, SEM_PERSON)


BUILDERS = {"Car": build_car, "Van": build_van, "Truck": build_truck, "Tram": build_tram,
            "Pedestrian": build_pedestrian, "Person_sitting": build_person_sitting,
            "Cyclist": build_cyclist}


def add_object(ps: PrimitiveSet, objects: list[ObjectInstance], cls: str, box,
               rng: np.random.Generator, margin: float = 0.04) -> ObjectInstance:
    """Build the shape of a labelled object filling LiDAR box ``box`` (x,y,z,l,w,h,yaw)."""
    box = np.asarray(box, dtype=np.float64).reshape(7)
    x, y, z, l, w, h, yaw = box
    inst = ObjectInstance(cls=cls, box=box, prim_lo=len(ps))
    BUILDERS[cls](ps, Pose(x, y, z - h / 2, yaw), (l, w, h), len(objects), rng, margin)
    inst.prim_hi = len(ps)
    objects.append(inst)
    return inst

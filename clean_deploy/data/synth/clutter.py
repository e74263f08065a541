"""Unlabelled street scenery: buildings, walls, fences, hedges, poles, signs, trees, bushes and
small clutter (bins, bollards, benches, cabinets, parked bikes) that resembles road users."""
from __future__ import annotations

import numpy as np

from clean_deploy.data.synth.objects import Parts, build_bicycle
from clean_deploy.data.synth.primitives import (BOX, CYL_Y, CYL_Z, ELLIPSOID, SEM_BUILDING,
                                                SEM_CLUTTER, SEM_GLASS, SEM_POLE,
                                                SEM_SIGN, SEM_TRUNK, SEM_VEGETATION, SEM_WALL,
                                                Pose, PrimitiveSet)

#: footprint row: centre x, y, half length, half width, yaw, z bottom, z top (world frame)
Footprint = tuple[float, float, float, float, float, float, float]


def _fp(pose: Pose, hl: float, hw: float, z0: float, z1: float, dx: float = 0.0,
        dy: float = 0.0) -> Footprint:
    x, y, _ = pose.to_world((dx, dy, 0.0))
    return (x, y, hl, hw, pose.yaw, pose.z + z0, pose.z + z1)


def building(ps: PrimitiveSet, pose: Pose, rng: np.random.Generator, length: float,
             depth: float, height: float) -> list[Footprint]:
    """Block of ``length`` along local x, ``depth`` along local y; the facade faces -y.
    Extends 1 m below ``pose.z`` so it meets sloped ground. Shop windows and bay windows."""
    p = Parts(ps, pose, -1)
    refl = float(np.clip(rng.normal(0.45, 0.15), 0.12, 0.85))
    p.box(-length / 2, length / 2, 0.0, depth, -1.0, height, refl, SEM_BUILDING)
    if rng.random() < 0.5 and length > 4:  # shop windows on the ground floor
        p.box(-0.4 * length, 0.4 * length, -0.03, 0.01, 0.3, 2.8, 0.05, SEM_GLASS, dropout=0.5)
    if height > 7 and rng.random() < 0.5:  # bay windows / balconies on upper floors
        n = int(max(1, length // 6))
        for k in range(n):
            xc = -length / 2 + (k + 0.5) * length / n
            p.box(xc - 1.2, xc + 1.2, -0.8, 0.0, 3.5, min(height - 0.5, 3.5 + rng.uniform(2, 8)),
                  refl * 0.9, SEM_BUILDING)
    return [_fp(pose, length / 2, depth / 2 + 0.8, -1.0, height, dy=depth / 2 - 0.8)]


def wall(ps: PrimitiveSet, pose: Pose, rng: np.random.Generator, length: float, height: float,
         kind: str = "wall") -> list[Footprint]:
    """Garden wall (solid), fence (porous) or hedge (porous vegetation) along local x."""
    p = Parts(ps, pose, -1)
    if kind == "hedge":
        t = rng.uniform(0.5, 1.0)
        p.box(-length / 2, length / 2, -t / 2, t / 2, -0.2, height, rng.uniform(0.3, 0.5),
              SEM_VEGETATION, porosity=0.3)
    elif kind == "fence":
        t = 0.05
        p.box(-length / 2, length / 2, -t / 2, t / 2, 0.0, height, rng.uniform(0.2, 0.6),
              SEM_WALL, porosity=0.55)
    else:
        t = 0.25
        p.box(-length / 2, length / 2, -t / 2, t / 2, -0.3, height, rng.uniform(0.25, 0.6),
              SEM_WALL)
    return [_fp(pose, length / 2, t / 2, 0.0, height)]


def street_lamp(ps: PrimitiveSet, pose: Pose, rng: np.random.Generator) -> list[Footprint]:
    """Pole with an arm reaching over the road (local +x) and a lamp head."""
    p = Parts(ps, pose, -1)
    h = rng.uniform(5.0, 9.0)
    r = rng.uniform(0.07, 0.14)
    p.cyl_z(0.0, 0.0, r, -0.2, h, 0.45, SEM_POLE)
    arm = rng.uniform(0.8, 2.0)
    p.box(0.0, arm, -0.04, 0.04, h - 0.1, h, 0.45, SEM_POLE)
    p.box(arm - 0.5, arm, -0.15, 0.15, h - 0.25, h - 0.1, 0.6, SEM_POLE)
    return [_fp(pose, r, r, 0.0, h)]


def sign_post(ps: PrimitiveSet, pose: Pose, rng: np.random.Generator) -> list[Footprint]:
    """Thin pole with a retro-reflective plate (square or round) facing local +x."""
    p = Parts(ps, pose, -1)
    h = rng.uniform(2.2, 3.2)
    p.cyl_z(0.0, 0.0, 0.035, -0.2, h, 0.4, SEM_POLE)
    size = rng.uniform(0.5, 0.8)
    if rng.random() < 0.5:
        p.box(0.04, 0.07, -size / 2, size / 2, h - size, h, 0.95, SEM_SIGN)
    else:  # round plate: a thin disc whose axis is local x
        ps.add_local(pose, CYL_Y, (0.055, 0.0, h - size / 2), np.pi / 2,
                     (size / 2, 0.015, size / 2), 0.95, SEM_SIGN)
    return [_fp(pose, 0.05, 0.05, 0.0, h)]


def tree(ps: PrimitiveSet, pose: Pose, rng: np.random.Generator) -> list[Footprint]:
    """Trunk cylinder + porous ellipsoid canopy (foliage lets a share of rays through)."""
    p = Parts(ps, pose, -1)
    trunk_r = rng.uniform(0.1, 0.3)
    crown_base = rng.uniform(2.3, 4.0)
    rad = rng.uniform(1.2, 3.0)
    ch = rng.uniform(1.0, 2.0) * rad
    p.cyl_z(0.0, 0.0, trunk_r, -0.2, crown_base + 0.5 * ch, rng.uniform(0.25, 0.45), SEM_TRUNK)
    p.ellipsoid(0.0, 0.0, crown_base + ch, rad, rad * rng.uniform(0.85, 1.15), ch,
                rng.uniform(0.3, 0.5), SEM_VEGETATION, porosity=0.35)
    return [_fp(pose, trunk_r, trunk_r, 0.0, crown_base),
            _fp(pose, rad, rad, crown_base, crown_base + 2 * ch)]


def bush(ps: PrimitiveSet, pose: Pose, rng: np.random.Generator) -> list[Footprint]:
    a, b, c = rng.uniform(0.4, 1.5), rng.uniform(0.4, 1.2), rng.uniform(0.3, 0.8)
    ps.add_local(pose, ELLIPSOID, (0.0, 0.0, c * 0.8), 0.0, (a, b, c), rng.uniform(0.3, 0.5),
                 SEM_VEGETATION, porosity=0.25)
    return [_fp(pose, a, b, 0.0, 1.8 * c)]


def _small_box(ps, pose, l, w, h, refl, sem=SEM_CLUTTER) -> list[Footprint]:
    ps.add_local(pose, BOX, (0.0, 0.0, h / 2), 0.0, (l / 2, w / 2, h / 2), refl, sem)
    return [_fp(pose, l / 2, w / 2, 0.0, h)]


def trash_bin(ps: PrimitiveSet, pose: Pose, rng: np.random.Generator) -> list[Footprint]:
    """Wheelie bin (pedestrian-sized box) or a round public bin."""
    if rng.random() < 0.6:
        return _small_box(ps, pose, rng.uniform(0.55, 0.8), rng.uniform(0.5, 0.65),
                          rng.uniform(0.95, 1.15), rng.uniform(0.05, 0.35))
    r, h = rng.uniform(0.2, 0.3), rng.uniform(0.8, 1.0)
    ps.add_local(pose, CYL_Z, (0.0, 0.0, h / 2), 0.0, (r, r, h / 2), rng.uniform(0.2, 0.5),
                 SEM_CLUTTER)
    return [_fp(pose, r, r, 0.0, h)]


def bollard(ps: PrimitiveSet, pose: Pose, rng: np.random.Generator) -> list[Footprint]:
    r, h = rng.uniform(0.06, 0.12), rng.uniform(0.7, 1.1)
    ps.add_local(pose, CYL_Z, (0.0, 0.0, h / 2), 0.0, (r, r, h / 2), rng.uniform(0.3, 0.7),
                 SEM_CLUTTER)
    return [_fp(pose, r, r, 0.0, h)]


def cabinet(ps: PrimitiveSet, pose: Pose, rng: np.random.Generator) -> list[Footprint]:
    """Electrical cabinet / mailbox / ticket machine: a person-sized box."""
    return _small_box(ps, pose, rng.uniform(0.4, 1.0), rng.uniform(0.3, 0.5),
                      rng.uniform(1.1, 1.7), rng.uniform(0.2, 0.6))


def bench(ps: PrimitiveSet, pose: Pose, rng: np.random.Generator) -> list[Footprint]:
    p = Parts(ps, pose, -1)
    ln = rng.uniform(1.5, 2.2)
    refl = rng.uniform(0.2, 0.45)
    p.box(-ln / 2, ln / 2, -0.22, 0.22, 0.4, 0.46, refl, SEM_CLUTTER)
    p.box(-ln / 2, ln / 2, 0.18, 0.24, 0.46, 0.85, refl, SEM_CLUTTER)
    for x in (-ln / 2 + 0.1, ln / 2 - 0.1):
        p.box(x - 0.04, x + 0.04, -0.2, 0.2, 0.0, 0.4, refl, SEM_CLUTTER)
    return [_fp(pose, ln / 2, 0.25, 0.0, 0.85)]


def column(ps: PrimitiveSet, pose: Pose, rng: np.random.Generator) -> list[Footprint]:
    """Advertising column or thick pole."""
    r, h = rng.uniform(0.4, 0.7), rng.uniform(2.5, 3.5)
    ps.add_local(pose, CYL_Z, (0.0, 0.0, h / 2), 0.0, (r, r, h / 2), rng.uniform(0.3, 0.6),
                 SEM_CLUTTER)
    return [_fp(pose, r, r, 0.0, h)]


def parked_bike(ps: PrimitiveSet, pose: Pose, rng: np.random.Generator) -> list[Footprint]:
    """A bicycle without rider (not labelled, as in KITTI) - looks like a cyclist's bike."""
    p = Parts(ps, pose, -1)
    L, W = rng.uniform(1.6, 1.8), rng.uniform(0.45, 0.6)
    build_bicycle(p, L, W, 0.9, 1.0, rng)
    return [_fp(pose, L / 2, W / 2, 0.0, 1.0)]


def cone(ps: PrimitiveSet, pose: Pose, rng: np.random.Generator) -> list[Footprint]:
    ps.add_local(pose, ELLIPSOID, (0.0, 0.0, 0.0), 0.0, (0.15, 0.15, 0.7), 0.85, SEM_CLUTTER)
    return [_fp(pose, 0.15, 0.15, 0.0, 0.7)]


def bus_shelter(ps: PrimitiveSet, pose: Pose, rng: np.random.Generator) -> list[Footprint]:
    """Glass-walled shelter (rays partly pass the glass) with a roof; opening faces -y."""
    p = Parts(ps, pose, -1)
    ln, d, h = rng.uniform(3.0, 5.0), rng.uniform(1.3, 1.8), 2.5
    p.box(-ln / 2, ln / 2, d - 0.05, d, 0.1, h, 0.1, SEM_GLASS, porosity=0.6)
    for x in (-ln / 2, ln / 2 - 0.05):
        p.box(x, x + 0.05, 0.0, d, 0.1, h, 0.1, SEM_GLASS, porosity=0.6)
    p.box(-ln / 2 - 0.1, ln / 2 + 0.1, -0.1, d + 0.1, h, h + 0.12, 0.4, SEM_CLUTTER)
    return [_fp(pose, ln / 2 + 0.1, d / 2 + 0.1, 0.0, h + 0.12, dy=d / 2)]


#: sidewalk furniture: (builder, relative frequency, distance class: "kerb" or "inner")
FURNITURE = {
    "lamp": (street_lamp, 1.0, "kerb"),
    "sign": (sign_post, 1.0, "kerb"),
    "tree": (tree, 1.2, "kerb"),
    "bollard": (bollard, 0.8, "kerb"),
    "bin": (trash_bin, 1.0, "inner"),
    "cabinet": (cabinet, 0.6, "inner"),
    "bench": (bench, 0.4, "inner"),
    "column": (column, 0.15, "inner"),
    "bike": (parked_bike, 0.6, "inner"),
    "bush": (bush, 0.6, "inner"),
    "cone": (cone, 0.15, "kerb"),
}

__all__ = ["Footprint", "building", "wall", "street_lamp", "sign_post", "tree", "bush",
           "trash_bin", "bollard", "cabinet", "bench", "column", "parked_bike", "cone",
           "bus_shelter", "FURNITURE"]

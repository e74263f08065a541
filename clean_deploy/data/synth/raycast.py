"""Vectorised ray casting of a scene (ground + primitives) with numba, parallel over rays.
Primitives are culled per azimuth sector around the ray origin and visited nearest-first."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from clean_deploy.data.synth.ground import Ground, ground_hit
from clean_deploy.data.synth.primitives import BOX, CYL_Y, CYL_Z, Primitives

GROUND = -2  # ``prim`` of a ray that hit the ground
MISS = -1
_EPS = 1e-6
_FOLIAGE_DEPTH = 0.3  # returns from porous volumes spread this deep behind the entry point


@dataclass
class Hits:
    """First hit of every ray. ``prim`` is a primitive index, ``GROUND`` or ``MISS``."""

    t: np.ndarray  # (N,) float64 distance along the unit ray, inf when missed
    prim: np.ndarray  # (N,) int32
    cos_inc: np.ndarray  # (N,) float32 |cos| of the angle between ray and surface normal
    refl: np.ndarray  # (N,) float32 surface reflectivity
    sem: np.ndarray  # (N,) int16 semantic tag (primitives' or ground's)
    obj: np.ndarray  # (N,) int32 owning object, -1 for scenery / ground / miss


# ----------------------------------------------------------------- primitives
@njit(cache=True)
def _hash01(seed, i, j):
    """Uniform [0,1) from (seed, ray, primitive): splitmix64, independent of thread schedule."""
    x = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)) ^ (
        np.uint64(i) * np.uint64(0xBF58476D1CE4E5B9)) ^ (
        np.uint64(j) * np.uint64(0x94D049BB133111EB))
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return float(x >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _slab(p, d, h):
    if abs(d) < 1e-12:
        if abs(p) > h:
            return np.inf, -np.inf
        return -np.inf, np.inf
    t1 = (-h - p) / d
    t2 = (h - p) / d
    if t1 > t2:
        return t2, t1
    return t1, t2


@njit(cache=True)
def _hit_local(kind, px, py, pz, dx, dy, dz, hx, hy, hz):
    """Ray (p + t d) vs primitive centred at the local origin. Returns (t, nx, ny, nz)."""
    if kind == BOX:
        n0, f0 = _slab(px, dx, hx)
        n1, f1 = _slab(py, dy, hy)
        n2, f2 = _slab(pz, dz, hz)
        tn = max(n0, max(n1, n2))
        tf = min(f0, min(f1, f2))
        if tn > tf or tn < _EPS:
            return np.inf, 0.0, 0.0, 0.0
        if tn == n0:
            return tn, -math.copysign(1.0, dx), 0.0, 0.0
        if tn == n1:
            return tn, 0.0, -math.copysign(1.0, dy), 0.0
        return tn, 0.0, 0.0, -math.copysign(1.0, dz)
    if kind == CYL_Z or kind == CYL_Y:
        # radial coordinates (a, b), axial c
        if kind == CYL_Z:
            pa, pb, pc, da, db, dc, r, hc = px, py, pz, dx, dy, dz, hx, hz
        else:
            pa, pb, pc, da, db, dc, r, hc = px, pz, py, dx, dz, dy, hx, hy
        best = np.inf
        na = 0.0
        nb = 0.0
        nc = 0.0
        qa = da * da + db * db
        if qa > 1e-18:
            qb = pa * da + pb * db
            qc = pa * pa + pb * pb - r * r
            disc = qb * qb - qa * qc
            if disc >= 0.0:
                t = (-qb - math.sqrt(disc)) / qa
                if t > _EPS and abs(pc + t * dc) <= hc:
                    best = t
                    na = (pa + t * da) / r
                    nb = (pb + t * db) / r
        if abs(dc) > 1e-12:
            sgn = math.copysign(1.0, dc)
            t = (-sgn * hc - pc) / dc
            if _EPS < t < best:
                a = pa + t * da
                b = pb + t * db
                if a * a + b * b <= r * r:
                    best = t
                    na, nb, nc = 0.0, 0.0, -sgn
        if kind == CYL_Z:
            return best, na, nb, nc
        return best, na, nc, nb
    # ellipsoid: scale to the unit sphere (t is unchanged by the scaling)
    sx = px / hx
    sy = py / hy
    sz = pz / hz
    ex = dx / hx
    ey = dy / hy
    ez = dz / hz
    qa = ex * ex + ey * ey + ez * ez
    qb = sx * ex + sy * ey + sz * ez
    qc = sx * sx + sy * sy + sz * sz - 1.0
    disc = qb * qb - qa * qc
    if disc < 0.0:
        return np.inf, 0.0, 0.0, 0.0
    t = (-qb - math.sqrt(disc)) / qa
    if t < _EPS:
        return np.inf, 0.0, 0.0, 0.0
    return t, (sx + t * ex) / hx, (sy + t * ey) / hy, (sz + t * ez) / hz


@njit(cache=True)
def _hit_prim(p, ox, oy, oz, dx, dy, dz, kind, center, cos_sin, half):
    """World ray vs primitive ``p``: (t, |cos incidence|)."""
    c = cos_sin[p, 0]
    s = cos_sin[p, 1]
    qx = ox - center[p, 0]
    qy = oy - center[p, 1]
    qz = oz - center[p, 2]
    px = c * qx + s * qy
    py = -s * qx + c * qy
    ldx = c * dx + s * dy
    ldy = -s * dx + c * dy
    t, nx, ny, nz = _hit_local(kind[p], px, py, qz, ldx, ldy, dz, half[p, 0], half[p, 1],
                               half[p, 2])
    if t == np.inf:
        return np.inf, 0.0
    nn = math.sqrt(nx * nx + ny * ny + nz * nz)
    cosi = abs(nx * ldx + ny * ldy + nz * dz) / max(nn, 1e-12)
    return t, cosi


# ------------------------------------------------------------- sector index
def _sector_index(ox: float, oy: float, prims: Primitives, nsec: int):
    """CSR lists of the primitives whose footprint overlaps each azimuth sector seen from
    (ox, oy), sorted by their minimal horizontal distance (for early exit)."""
    n = len(prims)
    two_pi = 2.0 * math.pi
    c = prims.center[:, :2] - np.array([ox, oy])
    theta = np.arctan2(c[:, 1], c[:, 0])
    rect = (prims.kind == BOX) | (prims.kind == CYL_Y)
    hx, hy = prims.half[:, 0], prims.half[:, 1]
    cs, sn = prims.cos_sin[:, 0], prims.cos_sin[:, 1]
    # rectangles: distance origin -> rectangle and angular span of the 4 corners
    lx = -(cs * c[:, 0] + sn * c[:, 1])
    ly = -(-sn * c[:, 0] + cs * c[:, 1])
    d_rect = np.hypot(np.maximum(np.abs(lx) - hx, 0.0), np.maximum(np.abs(ly) - hy, 0.0))
    sx = np.array([1.0, -1.0, -1.0, 1.0])
    sy = np.array([1.0, 1.0, -1.0, -1.0])
    ax, ay = sx[None] * hx[:, None], sy[None] * hy[:, None]
    wx = c[:, 0:1] + cs[:, None] * ax - sn[:, None] * ay
    wy = c[:, 1:2] + sn[:, None] * ax + cs[:, None] * ay
    rel = (np.arctan2(wy, wx) - theta[:, None] + math.pi) % two_pi - math.pi
    lo_r, hi_r = rel.min(1), rel.max(1)
    # round footprints (vertical cylinders, ellipsoids): bounding circle
    r = np.maximum(hx, hy)
    dc = np.hypot(c[:, 0], c[:, 1])
    delta = np.arcsin(np.clip(r / np.maximum(dc, 1e-9), 0.0, 1.0))
    dmin = np.where(rect, d_rect, dc - r)
    lo = theta + np.where(rect, lo_r, -delta) - 1e-6
    hi = theta + np.where(rect, hi_r, delta) + 1e-6
    a = np.floor((lo + math.pi) / two_pi * nsec).astype(np.int64)
    b = np.floor((hi + math.pi) / two_pi * nsec).astype(np.int64)
    cnt = np.minimum(b - a + 1, nsec)
    around = dmin < 1e-6  # the origin is inside the footprint: every sector
    a[around], cnt[around] = 0, nsec
    dmin = np.maximum(dmin, 0.0)
    prim = np.repeat(np.arange(n, dtype=np.int64), cnt)
    first = np.repeat(np.cumsum(cnt) - cnt, cnt)
    sec = (np.repeat(a, cnt) + np.arange(len(prim)) - first) % nsec
    order = np.lexsort((dmin[prim], sec))
    sec, prim = sec[order], prim[order]
    start = np.zeros(nsec + 1, np.int64)
    start[1:] = np.cumsum(np.bincount(sec, minlength=nsec))
    return start, prim.astype(np.int32), dmin[prim]


# --------------------------------------------------------------------- kernels
@njit(parallel=True, cache=True)
def _cast_kernel(origin, dirs, g, use_ground, kind, center, cos_sin, half, porosity,
                 sec_start, sec_items, sec_dmin, nsec, tmax, seed):
    n = dirs.shape[0]
    t_out = np.full(n, np.inf)
    prim_out = np.full(n, -1, np.int32)
    cos_out = np.zeros(n, np.float32)
    grefl = np.zeros(n, np.float32)
    gsem = np.zeros(n, np.int16)
    ox = origin[0]
    oy = origin[1]
    oz = origin[2]
    two_pi = 2.0 * math.pi
    for i in prange(n):
        dx = dirs[i, 0]
        dy = dirs[i, 1]
        dz = dirs[i, 2]
        best = tmax
        bp = -1
        bcos = 0.0
        if use_ground:
            tg, gnx, gny, gnz, gr, gs = ground_hit(g, ox, oy, oz, dx, dy, dz, tmax)
            if tg < best:
                best = tg
                bp = -2
                bcos = abs(gnx * dx + gny * dy + gnz * dz)
                grefl[i] = gr
                gsem[i] = gs
        horiz = math.sqrt(dx * dx + dy * dy)
        if horiz > 1e-9:
            az = math.atan2(dy, dx)
            sec = int((az + math.pi) / two_pi * nsec)
            if sec >= nsec:
                sec = nsec - 1
            for j in range(sec_start[sec], sec_start[sec + 1]):
                if sec_dmin[j] > best * horiz:
                    break
                p = sec_items[j]
                t, cosi = _hit_prim(p, ox, oy, oz, dx, dy, dz, kind, center, cos_sin, half)
                if t < best:
                    if porosity[p] > 0.0:
                        if _hash01(seed, i, p) < porosity[p]:
                            continue
                        t += _hash01(seed, i, p + 1000003) * _FOLIAGE_DEPTH
                        if t >= best:
                            continue
                    best = t
                    bp = p
                    bcos = cosi
        else:  # vertical ray: test every primitive
            for p in range(kind.shape[0]):
                t, cosi = _hit_prim(p, ox, oy, oz, dx, dy, dz, kind, center, cos_sin, half)
                if t < best:
                    best = t
                    bp = p
                    bcos = cosi
        if bp != -1:
            t_out[i] = best
            prim_out[i] = bp
            cos_out[i] = bcos
    return t_out, prim_out, cos_out, grefl, gsem


@njit(parallel=True, cache=True)
def _cast_subset_kernel(origin, dirs, lo, hi, kind, center, cos_sin, half):
    """Nearest hit of ray i against primitives lo[i]..hi[i]-1 only (no culling, no porosity)."""
    n = dirs.shape[0]
    t_out = np.full(n, np.inf)
    for i in prange(n):
        best = np.inf
        for p in range(lo[i], hi[i]):
            t, _ = _hit_prim(p, origin[0], origin[1], origin[2], dirs[i, 0], dirs[i, 1],
                             dirs[i, 2], kind, center, cos_sin, half)
            if t < best:
                best = t
        t_out[i] = best
    return t_out


# ---------------------------------------------------------------------- API
class RayCaster:
    """Casts rays from one origin into a scene; builds its sector index once."""

    def __init__(self, prims: Primitives, ground: Ground | None, origin=(0.0, 0.0, 0.0),
                 n_sectors: int = 720, max_t: float = 250.0) -> None:
        self.prims = prims
        self.ground = ground
        self.origin = np.asarray(origin, dtype=np.float64).reshape(3)
        self.n_sectors = int(n_sectors)
        self.max_t = float(max_t)
        self.sec_start, self.sec_items, self.sec_dmin = _sector_index(
            float(self.origin[0]), float(self.origin[1]), prims, self.n_sectors)
        self._g = ground.params if ground is not None else np.zeros(64)

    def cast(self, dirs: np.ndarray, seed: int = 0) -> Hits:
        """First hits of unit rays ``dirs`` (N,3). ``seed`` drives foliage pass-through."""
        dirs = np.ascontiguousarray(dirs, dtype=np.float64)
        p = self.prims
        t, prim, cosi, grefl, gsem = _cast_kernel(
            self.origin, dirs, self._g, self.ground is not None, p.kind, p.center, p.cos_sin,
            p.half, p.porosity, self.sec_start, self.sec_items, self.sec_dmin, self.n_sectors,
            self.max_t, np.uint64(seed % (1 << 63)))
        is_p = prim >= 0
        idx = np.where(is_p, prim, 0)
        if len(p):
            refl = np.where(is_p, p.refl[idx], grefl).astype(np.float32)
            sem = np.where(is_p, p.sem[idx], gsem).astype(np.int16)
            obj = np.where(is_p, p.obj[idx], -1).astype(np.int32)
        else:
            refl, sem, obj = grefl, gsem, np.full(len(t), -1, np.int32)
        return Hits(t=t, prim=prim, cos_inc=cosi, refl=refl, sem=sem, obj=obj)

    def cast_subset(self, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """(N,) distance of each ray to its own primitive range ``lo[i]:hi[i]`` alone."""
        p = self.prims
        return _cast_subset_kernel(self.origin, np.ascontiguousarray(dirs, dtype=np.float64),
                                   np.ascontiguousarray(lo, dtype=np.int64),
                                   np.ascontiguousarray(hi, dtype=np.int64), p.kind, p.center,
                                   p.cos_sin, p.half)

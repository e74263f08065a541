"""Ground of a street scene: sloped, gently undulating terrain with a road, kerbs and markings.
``Ground`` packs its parameters into one float array read by the numba ray/height functions here."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from clean_deploy.data.synth.primitives import (SEM_KERB, SEM_MARKING, SEM_ROAD, SEM_SIDEWALK,
                                                SEM_TERRAIN)

# layout of the packed parameter array
G_Z0, G_GX, G_GY = 0, 1, 2
G_AMP, G_KX, G_KY, G_PH = 3, 6, 9, 12  # 3 undulation terms each
G_COS, G_SIN, G_V0 = 15, 16, 17  # road frame: u = c x + s y ; v = -s x + c y + v0
G_VLO, G_VHI = 18, 19  # main road band v in [vlo, vhi]
G_HASX, G_ULO, G_UHI = 20, 21, 22  # optional cross street band u in [ulo, uhi]
G_KERB = 23
G_R_ROAD, G_R_SIDE, G_R_TERR, G_R_MARK = 24, 25, 26, 27
G_SW_LO, G_SW_HI = 28, 29  # sidewalk widths on the low-v (right) and high-v (left) sides
G_NLINES = 30
G_LINE_V, G_LINE_DASH = 31, 39  # up to 8 lane lines: v position, dashed (1) or solid (0)
G_MARK_HW, G_DASH_ON, G_DASH_PERIOD, G_DASH_PHASE = 47, 48, 49, 50
G_ZEBRA, G_ZEBRA_U0, G_ZEBRA_U1 = 51, 52, 53
G_SIZE = 54
MAX_LINES = 8


@dataclass
class Ground:
    """Terrain ``z = base(x, y)`` (plane + 3 sinusoids) raised by ``kerb`` outside the road.

    Road frame: ``u`` along the road, ``v`` across it (left positive); the ego car stands on the
    road at the LiDAR origin with ``base(0, 0) = -mount_height``.
    """

    mount_height: float = 1.73
    slope: tuple[float, float] = (0.0, 0.0)
    undulation: tuple[tuple[float, float, float, float], ...] = ()  # (amp, kx, ky, phase)
    road_yaw: float = 0.0
    v0: float = 0.0  # v coordinate of the origin
    road_v: tuple[float, float] = (-4.0, 4.0)
    cross_u: tuple[float, float] | None = None
    kerb: float = 0.0
    refl_road: float = 0.15
    refl_sidewalk: float = 0.3
    refl_terrain: float = 0.4
    refl_marking: float = 0.8
    sidewalk: tuple[float, float] = (3.0, 3.0)  # widths right, left
    lines: tuple[tuple[float, bool], ...] = ()  # (v, dashed)
    mark_half_width: float = 0.07
    dash: tuple[float, float, float] = (3.0, 9.0, 0.0)  # on length, period, phase
    zebra_u: tuple[float, float] | None = None
    params: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        g = np.zeros(G_SIZE)
        g[G_GX], g[G_GY] = self.slope
        und = list(self.undulation)[:3] + [(0.0, 0.0, 0.0, 0.0)] * (3 - len(self.undulation))
        for k, (a, kx, ky, ph) in enumerate(und):
            g[G_AMP + k], g[G_KX + k], g[G_KY + k], g[G_PH + k] = a, kx, ky, ph
        g[G_Z0] = -self.mount_height - sum(a * math.sin(ph) for a, _, _, ph in und)
        g[G_COS], g[G_SIN], g[G_V0] = math.cos(self.road_yaw), math.sin(self.road_yaw), self.v0
        g[G_VLO], g[G_VHI] = self.road_v
        if self.cross_u is not None:
            g[G_HASX] = 1.0
            g[G_ULO], g[G_UHI] = self.cross_u
        g[G_KERB] = self.kerb
        g[G_R_ROAD], g[G_R_SIDE], g[G_R_TERR], g[G_R_MARK] = (
            self.refl_road, self.refl_sidewalk, self.refl_terrain, self.refl_marking)
        g[G_SW_LO], g[G_SW_HI] = self.sidewalk
        lines = list(self.lines)[:MAX_LINES]
        g[G_NLINES] = len(lines)
        for k, (v, dashed) in enumerate(lines):
            g[G_LINE_V + k], g[G_LINE_DASH + k] = v, float(dashed)
        g[G_MARK_HW] = self.mark_half_width
        g[G_DASH_ON], g[G_DASH_PERIOD], g[G_DASH_PHASE] = self.dash
        if self.zebra_u is not None:
            g[G_ZEBRA] = 1.0
            g[G_ZEBRA_U0], g[G_ZEBRA_U1] = self.zebra_u
        self.params = g

    # ------------------------------------------------------------- numpy API
    def to_road(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y) -> road frame (u, v)."""
        g = self.params
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        return g[G_COS] * x + g[G_SIN] * y, -g[G_SIN] * x + g[G_COS] * y + g[G_V0]

    def from_road(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        """Road frame (u, v) -> world (x, y)."""
        g = self.params
        u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64) - g[G_V0]
        return g[G_COS] * u - g[G_SIN] * v, g[G_SIN] * u + g[G_COS] * v

    def height(self, x, y) -> np.ndarray:
        """Surface height (kerb included) at world (x, y)."""
        x = np.atleast_1d(np.asarray(x, dtype=np.float64))
        y = np.atleast_1d(np.asarray(y, dtype=np.float64))
        return _height_many(self.params, x.ravel(), y.ravel()).reshape(x.shape)

    def on_road(self, x, y) -> np.ndarray:
        u, v = self.to_road(x, y)
        return _in_road_np(self.params, u, v)

    @property
    def road_dir(self) -> float:
        return math.atan2(self.params[G_SIN], self.params[G_COS])


def _in_road_np(g: np.ndarray, u, v) -> np.ndarray:
    inside = (v >= g[G_VLO]) & (v <= g[G_VHI])
    if g[G_HASX] > 0:
        inside |= (u >= g[G_ULO]) & (u <= g[G_UHI])
    return inside


# ------------------------------------------------------------------ numba kernels
@njit(cache=True)
def _base(g, x, y):
    z = g[G_Z0] + g[G_GX] * x + g[G_GY] * y
    for k in range(3):
        z += g[G_AMP + k] * math.sin(g[G_KX + k] * x + g[G_KY + k] * y + g[G_PH + k])
    return z


@njit(cache=True)
def _base_grad(g, x, y):
    dx = g[G_GX]
    dy = g[G_GY]
    for k in range(3):
        c = g[G_AMP + k] * math.cos(g[G_KX + k] * x + g[G_KY + k] * y + g[G_PH + k])
        dx += c * g[G_KX + k]
        dy += c * g[G_KY + k]
    return dx, dy


@njit(cache=True)
def _uv(g, x, y):
    return g[G_COS] * x + g[G_SIN] * y, -g[G_SIN] * x + g[G_COS] * y + g[G_V0]


@njit(cache=True)
def _in_road(g, u, v):
    if v >= g[G_VLO] and v <= g[G_VHI]:
        return True
    return g[G_HASX] > 0 and u >= g[G_ULO] and u <= g[G_UHI]


@njit(cache=True)
def _height_many(g, xs, ys):
    out = np.empty(xs.shape[0])
    for i in range(xs.shape[0]):
        u, v = _uv(g, xs[i], ys[i])
        out[i] = _base(g, xs[i], ys[i]) + (0.0 if _in_road(g, u, v) else g[G_KERB])
    return out


@njit(cache=True)
def _surface_t(g, ox, oy, oz, dx, dy, dz, off, tmax):
    """First t > 0 with oz + t dz = base(o + t d) + off (plane solve + Newton); inf if none."""
    den = dz - g[G_GX] * dx - g[G_GY] * dy
    if den >= -1e-9:
        return np.inf
    t = (oz - _base(g, ox, oy) - off) / -den  # exact for the plane through base(o)
    if t <= 0.0 or t > tmax * 1.5:
        return np.inf
    for _ in range(6):
        x = ox + t * dx
        y = oy + t * dy
        f = oz + t * dz - _base(g, x, y) - off
        gx, gy = _base_grad(g, x, y)
        fp = dz - gx * dx - gy * dy
        if fp >= -1e-9:
            break
        step = f / fp
        t -= step
        if abs(step) < 1e-5:
            break
    if t <= 0.0:
        return np.inf
    return t


@njit(cache=True)
def ground_hit(g, ox, oy, oz, dx, dy, dz, tmax):
    """Ray vs ground. Returns (t, nx, ny, nz, reflectivity, semantic); t = inf when missed."""
    best = np.inf
    nx, ny, nz = 0.0, 0.0, 1.0
    sem = 0
    kerb = g[G_KERB]
    # road surface (valid inside the road region)
    t = _surface_t(g, ox, oy, oz, dx, dy, dz, 0.0, tmax)
    if t < best:
        u, v = _uv(g, ox + t * dx, oy + t * dy)
        if _in_road(g, u, v):
            best = t
            sem = SEM_ROAD
    # raised surface (sidewalks / terrain, valid outside the road; same surface when kerb = 0)
    if kerb > 0.0:
        t = _surface_t(g, ox, oy, oz, dx, dy, dz, kerb, tmax)
    if t < best:
        u, v = _uv(g, ox + t * dx, oy + t * dy)
        if not _in_road(g, u, v):
            best = t
            sem = SEM_SIDEWALK
    if best < np.inf:
        x = ox + best * dx
        y = oy + best * dy
        gx, gy = _base_grad(g, x, y)
        n = math.sqrt(gx * gx + gy * gy + 1.0)
        nx, ny, nz = -gx / n, -gy / n, 1.0 / n
    # kerb faces: vertical planes on the road boundary
    if kerb > 0.0:
        c, s = g[G_COS], g[G_SIN]
        u0, v0 = _uv(g, ox, oy)
        du = c * dx + s * dy
        dv = -s * dx + c * dy
        for side in range(4):
            if side < 2:  # v = vlo / vhi, valid outside the cross band
                if abs(dv) < 1e-12:
                    continue
                bound = g[G_VLO] if side == 0 else g[G_VHI]
                t = (bound - v0) / dv
            else:
                if g[G_HASX] <= 0 or abs(du) < 1e-12:
                    continue
                bound = g[G_ULO] if side == 2 else g[G_UHI]
                t = (bound - u0) / du
            if t <= 0.0 or t >= best or t > tmax:
                continue
            u = u0 + t * du
            v = v0 + t * dv
            if side < 2:
                if g[G_HASX] > 0 and u >= g[G_ULO] and u <= g[G_UHI]:
                    continue
            elif v >= g[G_VLO] and v <= g[G_VHI]:
                continue
            x = ox + t * dx
            y = oy + t * dy
            z = oz + t * dz
            zb = _base(g, x, y)
            if z < zb or z > zb + kerb:
                continue
            best = t
            sem = SEM_KERB
            # face normal points against the ray, horizontally
            if side < 2:
                fx, fy = -s, c
                if fx * dx + fy * dy > 0:
                    fx, fy = -fx, -fy
            else:
                fx, fy = c, s
                if fx * dx + fy * dy > 0:
                    fx, fy = -fx, -fy
            nx, ny, nz = fx, fy, 0.0
    if best == np.inf:
        return np.inf, 0.0, 0.0, 1.0, 0.0, 0
    refl = 0.0
    if sem == SEM_ROAD:
        u, v = _uv(g, ox + best * dx, oy + best * dy)
        refl = g[G_R_ROAD]
        if _marking(g, u, v):
            refl = g[G_R_MARK]
            sem = SEM_MARKING
    elif sem == SEM_SIDEWALK:
        u, v = _uv(g, ox + best * dx, oy + best * dy)
        if v > g[G_VHI] + g[G_SW_HI] or v < g[G_VLO] - g[G_SW_LO]:
            refl = g[G_R_TERR]
            sem = SEM_TERRAIN
        else:
            refl = g[G_R_SIDE]
    else:
        refl = g[G_R_SIDE]
    return best, nx, ny, nz, refl, sem


@njit(cache=True)
def _marking(g, u, v):
    in_cross = g[G_HASX] > 0 and u >= g[G_ULO] and u <= g[G_UHI]
    if in_cross:
        return False
    hw = g[G_MARK_HW]
    if g[G_ZEBRA] > 0 and u >= g[G_ZEBRA_U0] and u <= g[G_ZEBRA_U1]:
        # zebra crossing: 0.5 m stripes across the whole road
        k = math.floor((v - g[G_VLO]) / 0.5)
        return k % 2 == 0
    for k in range(int(g[G_NLINES])):
        if abs(v - g[G_LINE_V + k]) <= hw:
            if g[G_LINE_DASH + k] > 0:
                ph = (u - g[G_DASH_PHASE]) % g[G_DASH_PERIOD]
                return ph < g[G_DASH_ON]
            return True
    return False

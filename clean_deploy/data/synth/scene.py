"""Procedural street scenes: road layout, buildings and street furniture, road users placed
without overlaps. ``SceneBuilder`` also serves hand-made scenes (tests, demos)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from clean_deploy.data.synth import clutter
from clean_deploy.data.synth.config import LidarConfig, SceneConfig
from clean_deploy.data.synth.ground import Ground
from clean_deploy.data.synth.objects import ObjectInstance, add_object, sample_size
from clean_deploy.data.synth.primitives import Pose, Primitives, PrimitiveSet

#: BEV rectangle (x, y, half length, half width, yaw) of KITTI's recording car around the
#: LiDAR: kept free of other objects, not ray-cast (the roof-mounted sensor barely sees it)
#: (grown 3.5 m to the front so no vehicle stops closer than a few metres ahead)
EGO_BEV = (1.5, 0.0, 4.15, 0.95, 0.0)
FOV_HALF_ANGLE = 0.72  # rad, camera 2 sees ~ +-40.7 deg; placement uses a slightly wider cone


@dataclass
class Scene:
    """Everything the sensor sees: ground, all primitives, labelled objects (box + parts)."""

    ground: Ground
    prims: Primitives
    objects: list[ObjectInstance]
    kind: str = "custom"
    info: dict = field(default_factory=dict)

    @property
    def boxes(self) -> np.ndarray:
        """(n_obj, 7) LiDAR label boxes."""
        return np.array([o.box for o in self.objects]).reshape(-1, 7)

    @property
    def classes(self) -> list[str]:
        return [o.cls for o in self.objects]


def _overlaps(fp, fps: np.ndarray, clearance: float) -> bool:
    """Separating-axis test of oriented rectangle ``fp`` (grown by ``clearance``) against rows
    of ``fps`` (x, y, hl, hw, yaw, z0, z1); only rows whose z range intersects count."""
    if len(fps) == 0:
        return False
    x, y, hl, hw, yaw, z0, z1 = fp
    zok = (fps[:, 5] < z1) & (fps[:, 6] > z0)
    if not zok.any():
        return False
    f = fps[zok]
    hl, hw = hl + clearance, hw + clearance
    ca, sa = math.cos(yaw), math.sin(yaw)
    cb, sb = np.cos(f[:, 4]), np.sin(f[:, 4])
    dx, dy = f[:, 0] - x, f[:, 1] - y
    sep = np.zeros(len(f), dtype=bool)
    for axx, axy in ((ca, sa), (-sa, ca), (cb, sb), (-sb, cb)):
        ra = hl * np.abs(ca * axx + sa * axy) + hw * np.abs(-sa * axx + ca * axy)
        rb = f[:, 2] * np.abs(cb * axx + sb * axy) + f[:, 3] * np.abs(-sb * axx + cb * axy)
        sep |= np.abs(dx * axx + dy * axy) > ra + rb
    return bool((~sep).any())


class SceneBuilder:
    """Accumulates scenery and labelled objects on a ground, refusing overlapping placements."""

    def __init__(self, ground: Ground, margin: float = 0.04) -> None:
        self.ground = ground
        self.margin = margin
        self.ps = PrimitiveSet()
        self.objects: list[ObjectInstance] = []
        self._fps: list[tuple] = []
        self._fp_arr: np.ndarray | None = None

    def _footprints(self) -> np.ndarray:
        if self._fp_arr is None:
            self._fp_arr = np.array(self._fps, dtype=np.float64).reshape(-1, 7)
        return self._fp_arr

    def fits(self, fp, clearance: float = 0.0) -> bool:
        return not _overlaps(fp, self._footprints(), clearance)

    def reserve(self, fps) -> None:
        self._fps.extend(tuple(float(v) for v in fp) for fp in fps)
        self._fp_arr = None

    def ground_z(self, x: float, y: float) -> float:
        return float(self.ground.height(x, y)[0])

    def add_object(self, cls: str, box, rng: np.random.Generator,
                   reserve: bool = True) -> ObjectInstance:
        """Add a labelled object with LiDAR box ``box`` as given (no overlap check)."""
        inst = add_object(self.ps, self.objects, cls, box, rng, self.margin)
        if reserve:
            x, y, z, l, w, h, yaw = inst.box
            self.reserve([(x, y, l / 2, w / 2, yaw, z - h / 2, z + h / 2)])
        return inst

    def try_object(self, cls: str, x: float, y: float, yaw: float, dims,
                   rng: np.random.Generator, clearance: float = 0.3) -> ObjectInstance | None:
        """Place ``cls`` standing on the ground at (x, y) if it overlaps nothing."""
        l, w, h = dims
        z0 = self.ground_z(x, y)
        if not self.fits((x, y, l / 2, w / 2, yaw, z0, z0 + h), clearance):
            return None
        return self.add_object(cls, (x, y, z0 + h / 2, l, w, h, yaw), rng)

    def try_scenery(self, build, x: float, y: float, yaw: float, rng: np.random.Generator,
                    clearance: float = 0.2, check: bool = True, **kw) -> bool:
        """Run a ``clutter`` builder at (x, y) on the ground; keep it if it overlaps nothing."""
        tmp = PrimitiveSet()
        fps = build(tmp, Pose(x, y, self.ground_z(x, y), yaw), rng, **kw)
        if check and any(not self.fits(fp, clearance) for fp in fps):
            return False
        self.ps.extend(tmp)
        self.reserve(fps)
        return True

    def build(self, kind: str = "custom", info: dict | None = None) -> Scene:
        return Scene(ground=self.ground, prims=self.ps.freeze(), objects=list(self.objects),
                     kind=kind, info=dict(info or {}))


def flat_ground(mount_height: float = 1.73) -> Ground:
    """Level ground without road features (controlled test scenes)."""
    return Ground(mount_height=mount_height, road_v=(-1e4, 1e4), kerb=0.0)


# ----------------------------------------------------------------- road layout
@dataclass
class RoadLayout:
    kind: str
    n_lanes: int  # per direction
    lane_w: float
    park: tuple[bool, bool]  # parking lane on the right (-v) / left (+v) side
    v_lo: float
    v_hi: float
    sidewalk: tuple[float, float]  # right, left
    cross: tuple[float, float] | None
    u_range: tuple[float, float]

    def edge(self, s: int) -> float:
        return self.v_hi if s > 0 else self.v_lo

    def sw(self, s: int) -> float:
        return self.sidewalk[1] if s > 0 else self.sidewalk[0]

    def in_cross(self, u: float, pad: float = 0.0) -> bool:
        return self.cross is not None and self.cross[0] - pad <= u <= self.cross[1] + pad


def _layout(rng: np.random.Generator, cfg: SceneConfig) -> RoadLayout:
    probs = np.asarray(cfg.scene_type_probs, dtype=np.float64)
    kind = str(rng.choice(cfg.scene_types, p=probs / probs.sum()))
    lane_w = float(rng.uniform(*cfg.lane_width))
    if kind == "city":
        n_lanes = int(rng.choice([1, 2], p=[0.6, 0.4]))
        park = (bool(rng.random() < 0.6), bool(rng.random() < 0.6))
        sw = (float(rng.uniform(2.5, 5.0)), float(rng.uniform(2.5, 5.0)))
    elif kind == "residential":
        n_lanes = 1
        park = (bool(rng.random() < 0.8), bool(rng.random() < 0.8))
        sw = (float(rng.uniform(1.5, 3.0)), float(rng.uniform(1.5, 3.0)))
    else:
        n_lanes = int(rng.choice([1, 2]))
        park = (False, False)
        sw = (0.0, 0.0)
    park_w = 2.2
    v_hi = n_lanes * lane_w + (park_w if park[1] else 0.3)
    v_lo = -(n_lanes * lane_w + (park_w if park[0] else 0.3))
    cross = None
    p_cross = {"city": 0.4, "residential": 0.3, "road": 0.1}[kind]
    if rng.random() < p_cross:
        width = float(rng.uniform(7.0, 12.0))
        uc = float(rng.uniform(14.0, 60.0)) * (1 if rng.random() < 0.75 else -1)
        cross = (uc - width / 2, uc + width / 2)
    return RoadLayout(kind, n_lanes, lane_w, park, v_lo, v_hi, sw, cross,
                      (-cfg.extent_back, cfg.extent_front))


def _make_ground(rng: np.random.Generator, cfg: SceneConfig, lay: RoadLayout,
                 mount_height: float) -> Ground:
    ego_lane = int(rng.integers(0, lay.n_lanes))
    v0 = -(ego_lane + 0.5) * lay.lane_w + float(rng.normal(0, 0.25))
    und = []
    for _ in range(3):
        lam = rng.uniform(15.0, 60.0)
        ang = rng.uniform(0, 2 * math.pi)
        k = 2 * math.pi / lam
        und.append((float(rng.uniform(0.0, cfg.ground_rough_amp)), k * math.cos(ang),
                    k * math.sin(ang), float(rng.uniform(0, 2 * math.pi))))
    lines: list[tuple[float, bool]] = []
    if lay.kind != "residential" or rng.random() < 0.5:
        lines.append((0.0, lay.n_lanes == 1))
        for k in range(1, lay.n_lanes):
            lines += [(k * lay.lane_w, True), (-k * lay.lane_w, True)]
        if lay.kind == "road" or any(lay.park):
            lines += [(lay.n_lanes * lay.lane_w, False), (-lay.n_lanes * lay.lane_w, False)]
    zebra = None
    if lay.cross is not None and lay.kind != "road" and rng.random() < 0.5:
        if lay.cross[0] > 0:
            zebra = (lay.cross[0] - 5.0, lay.cross[0] - 1.5)
        else:
            zebra = (lay.cross[1] + 1.5, lay.cross[1] + 5.0)
    road_yaw = float(rng.normal(0.0, 0.04))
    g = Ground(
        mount_height=mount_height,
        slope=(float(rng.normal(0, cfg.ground_slope_std)),
               float(rng.normal(0, cfg.ground_slope_std))),
        undulation=tuple(und), road_yaw=road_yaw, v0=v0, road_v=(lay.v_lo, lay.v_hi),
        cross_u=lay.cross,
        kerb=0.0 if lay.kind == "road" else float(rng.uniform(*cfg.kerb_height)),
        refl_road=float(rng.uniform(0.10, 0.20)), refl_sidewalk=float(rng.uniform(0.25, 0.4)),
        refl_terrain=float(rng.uniform(0.35, 0.55)), refl_marking=float(rng.uniform(0.65, 0.9)),
        sidewalk=lay.sidewalk,
        lines=tuple(lines), dash=(3.0, float(rng.choice([9.0, 12.0])), float(rng.uniform(0, 12))),
        zebra_u=zebra)
    return g


class _Street:
    """Road-frame helpers for placing things: (u, v) -> world, road heading."""

    def __init__(self, b: SceneBuilder, lay: RoadLayout, rng: np.random.Generator,
                 cfg: SceneConfig) -> None:
        self.b, self.lay, self.rng, self.cfg = b, lay, rng, cfg
        self.dir = b.ground.road_dir

    def xy(self, u: float, v: float) -> tuple[float, float]:
        x, y = self.b.ground.from_road(u, v)
        return float(x), float(y)

    def in_fov(self, x: float, y: float) -> bool:
        return x > 2.0 and abs(math.atan2(y, x)) < FOV_HALF_ANGLE and math.hypot(x, y) < \
            self.cfg.front_max_dist

    def u_sample(self, front: bool) -> float:
        """Position along the road; in front, nearer ranges are favoured (as in KITTI)."""
        if not front:
            return float(self.rng.uniform(*self.lay.u_range))
        near = min(45.0, self.cfg.front_max_dist)
        if self.rng.random() < 0.65:
            return float(self.rng.uniform(3.0, near))
        return float(self.rng.uniform(near, self.cfg.front_max_dist))

    # ------------------------------------------------------------- scenery
    def frontage(self) -> None:
        """Buildings, garden walls/fences/hedges and roadside vegetation on both sides."""
        rng, lay = self.rng, self.lay
        for s in (-1, 1):
            base = lay.edge(s) + s * lay.sw(s)
            u = lay.u_range[0] - 10
            while u < lay.u_range[1]:
                if lay.kind == "city":
                    length = float(rng.uniform(8, 30))
                    gap = float(rng.uniform(3, 8)) if rng.random() < 0.2 else 0.0
                    setback = float(rng.uniform(0, 0.6))
                    self._building(s, u, length, base + s * setback, rng.uniform(8, 22),
                                   rng.uniform(8, 24))
                    u += length + gap
                elif lay.kind == "residential":
                    lot = float(rng.uniform(14, 24))
                    setback = float(rng.uniform(3, 9))
                    house = float(rng.uniform(8, min(15, lot - 3)))
                    self._building(s, u + (lot - house) / 2, house, base + s * setback,
                                   rng.uniform(8, 12), rng.uniform(5, 9))
                    kind = str(rng.choice(["hedge", "fence", "wall", "none"], p=[.35, .3, .15, .2]))
                    if kind != "none":
                        seg = lot - float(rng.uniform(3, 5))  # driveway gap
                        self._wall(s, u + seg / 2, seg, base + s * 0.4, kind)
                    for _ in range(int(rng.integers(0, 3))):
                        uu = u + rng.uniform(1, lot - 1)
                        self._place_static(clutter.tree if rng.random() < 0.6 else clutter.bush,
                                           uu, base + s * rng.uniform(1.0, setback - 0.5), 0.0)
                    if rng.random() < 0.3:  # car in the driveway, any heading
                        uu = u + lot - 2.5
                        vv = base + s * rng.uniform(2.0, max(2.5, setback - 2.5))
                        self._vehicle_at("Car", uu, vv, float(rng.uniform(-math.pi, math.pi)))
                    u += lot
                else:  # road: verge with trees, bushes, the odd wall or farm building
                    step = float(rng.uniform(2, 9))
                    d = float(rng.uniform(1.5, 25))
                    r = rng.random()
                    if r < 0.45:
                        self._place_static(clutter.tree, u, base + s * d, 0.0)
                    elif r < 0.85:
                        self._place_static(clutter.bush, u, base + s * d, 0.0)
                    elif r < 0.93:
                        self._wall(s, u, float(rng.uniform(5, 20)), base + s * d,
                                   str(rng.choice(["hedge", "fence", "wall"])))
                    else:
                        self._building(s, u, rng.uniform(8, 20), base + s * (d + 5),
                                       rng.uniform(8, 15), rng.uniform(4, 8))
                    u += step

    def _building(self, s, u0, length, v_facade, depth, height) -> None:
        cross = self.lay.cross
        pad = max(self.lay.sw(s), 1.0)
        if cross is not None and u0 - pad < cross[1] and u0 + length + pad > cross[0]:
            return
        x, y = self.xy(u0 + length / 2, v_facade)
        yaw = self.dir if s > 0 else self.dir + math.pi
        self.b.try_scenery(clutter.building, x, y, yaw, self.rng, clearance=0.0, check=True,
                           length=float(length), depth=float(depth), height=float(height))

    def _wall(self, s, uc, length, v, kind) -> None:
        if self.lay.in_cross(uc - length / 2, 1.0) or self.lay.in_cross(uc + length / 2, 1.0):
            return
        x, y = self.xy(uc, v)
        self.b.try_scenery(clutter.wall, x, y, self.dir, self.rng, clearance=0.1,
                           length=float(length), height=float(self.rng.uniform(0.8, 2.0)),
                           kind=kind)

    def _place_static(self, build, u, v, yaw_local) -> bool:
        if self.lay.in_cross(u, 1.0):
            return False
        x, y = self.xy(u, v)
        return self.b.try_scenery(build, x, y, self.dir + yaw_local, self.rng, clearance=0.15)

    def furniture(self) -> None:
        """Lamps, trees, signs, bollards along the kerb; bins, cabinets, bikes, benches inside."""
        rng, lay = self.rng, self.lay
        names = list(clutter.FURNITURE)
        w = np.array([clutter.FURNITURE[n][1] for n in names])
        for s in (-1, 1):
            sw = lay.sw(s)
            if sw <= 0.0:  # rural road: poles and signs on the verge only
                u = lay.u_range[0]
                while u < lay.u_range[1]:
                    u += float(rng.uniform(15, 45))
                    build = clutter.sign_post if rng.random() < 0.5 else clutter.street_lamp
                    self._place_static(build, u, lay.edge(s) + s * rng.uniform(0.8, 1.5),
                                       -s * math.pi / 2)
                continue
            u = lay.u_range[0]
            density = {"city": 0.15, "residential": 0.08, "road": 0.04}[lay.kind]
            while u < lay.u_range[1]:
                u += float(rng.exponential(1.0 / density))
                name = names[int(rng.choice(len(names), p=w / w.sum()))]
                build, _, where = clutter.FURNITURE[name]
                if where == "kerb":
                    v = lay.edge(s) + s * rng.uniform(0.4, min(1.2, sw * 0.4))
                else:
                    v = lay.edge(s) + s * rng.uniform(min(sw * 0.5, sw - 0.5), sw - 0.4)
                yaw = float(rng.uniform(-math.pi, math.pi))
                if name == "lamp":  # arm over the road
                    yaw = -s * math.pi / 2
                if name == "sign":
                    yaw = math.pi if s < 0 else 0.0
                n_rep = int(rng.integers(2, 6)) if name in ("bike", "bollard") else 1
                for k in range(n_rep):  # bike racks / bollard rows
                    yk = yaw if name != "bike" else s * math.pi / 2 + rng.normal(0, 0.1)
                    self._place_static(build, u + k * (0.7 if name == "bike" else 1.5), v, yk)
            if lay.kind == "city" and rng.random() < 0.3:
                u = float(rng.uniform(5, 60))
                self._place_static(clutter.bus_shelter, u, lay.edge(s) + s * (sw - 2.0),
                                   0.0 if s > 0 else math.pi)

    # ----------------------------------------------------------- road users
    def _vehicle_at(self, cls, u, v, yaw_local, dims=None, clearance=0.3):
        dims = dims or sample_size(cls, self.rng)
        x, y = self.xy(u, v)
        return self.b.try_object(cls, x, y, self.dir + yaw_local, dims, self.rng, clearance)

    def _region_ok(self, x, y, front: bool) -> bool:
        return self.in_fov(x, y) == front

    def vehicle(self, cls: str, front: bool, mode: str) -> bool:
        """Place a vehicle in ``mode`` (lane, parked, cross, random); falls back to a lane."""
        lay = self.lay
        if mode == "parked" and not any(lay.park) and lay.kind != "residential":
            mode = "lane"
        if mode == "cross" and lay.cross is None:
            mode = "lane"
        return self._vehicle(cls, front, mode) or (mode != "lane" and
                                                   self._vehicle(cls, front, "lane"))

    def _vehicle(self, cls: str, front: bool, mode: str) -> bool:
        rng, lay = self.rng, self.lay
        dims = sample_size(cls, rng)
        l, w, _ = dims
        for _ in range(25):
            u = self.u_sample(front)
            if mode == "lane":
                k = int(rng.integers(0, lay.n_lanes))
                same = rng.random() < 0.5
                v = (-(k + 0.5) if same else (k + 0.5)) * lay.lane_w + rng.normal(0, 0.2)
                yaw = (0.0 if same else math.pi) + rng.normal(0, 0.03)
                clearance = 1.5
            elif mode == "parked":
                s = -1 if rng.random() < 0.5 else 1
                if not lay.park[(s + 1) // 2] and lay.kind != "residential":
                    continue
                v = lay.edge(s) - s * (w / 2 + rng.uniform(0.1, 0.35))
                yaw = (0.0 if s < 0 else math.pi) if rng.random() < 0.85 else (
                    math.pi if s < 0 else 0.0)
                yaw += rng.normal(0, 0.04)
                clearance = float(rng.uniform(0.25, 0.8))
                if lay.in_cross(u, 5.0):
                    continue
            elif mode == "cross":
                uc = (lay.cross[0] + lay.cross[1]) / 2
                s = -1 if rng.random() < 0.5 else 1
                u = uc + s * lay.lane_w / 2 + rng.normal(0, 0.2)
                v = float(rng.uniform(lay.v_lo - 40, lay.v_hi + 40))
                if lay.v_lo - 2 < v < lay.v_hi + 2:
                    v = lay.v_hi + 2 + abs(v) if v > 0 else lay.v_lo - 2 - abs(v)
                yaw = s * math.pi / 2 + rng.normal(0, 0.05)
                clearance = 1.0
            else:  # random heading somewhere drivable (turning, double-parked, parking lot)
                v = float(rng.uniform(lay.v_lo + w / 2, lay.v_hi - w / 2))
                yaw = float(rng.uniform(-math.pi, math.pi))
                clearance = 0.6
            x, y = self.xy(u, v)
            if not self._region_ok(x, y, front):
                continue
            if self.b.try_object(cls, x, y, self.dir + yaw, dims, rng, clearance) is not None:
                return True
        return False

    def pedestrians(self, n: int, front: bool) -> None:
        rng, lay = self.rng, self.lay
        placed = 0
        tries = 0
        while placed < n and tries < 10 * n + 10:
            tries += 1
            group = min(int(rng.choice([1, 1, 1, 2, 2, 3, 4])), n - placed)
            u = self.u_sample(front)
            r = rng.random()
            if lay.kind != "road" and r < 0.75:  # on a sidewalk, walking along it
                s = -1 if rng.random() < 0.5 else 1
                sw = lay.sw(s)
                v = lay.edge(s) + s * rng.uniform(0.4, max(0.5, sw - 0.4))
                heading = (0.0 if rng.random() < 0.5 else math.pi)
                spread = 0.4
            elif r < 0.9:  # crossing the road
                if lay.cross is not None and rng.random() < 0.6:
                    u = (lay.cross[0] - 3.0) if lay.cross[0] > 0 else (lay.cross[1] + 3.0)
                v = float(rng.uniform(lay.v_lo, lay.v_hi))
                heading = math.pi / 2 if rng.random() < 0.5 else -math.pi / 2
                spread = 0.6
            else:  # standing around (yard, verge, waiting)
                s = -1 if rng.random() < 0.5 else 1
                v = lay.edge(s) + s * rng.uniform(0.5, lay.sw(s) + 4.0)
                heading = float(rng.uniform(-math.pi, math.pi))
                spread = 1.0
            for k in range(group):
                uu = u + rng.normal(0, 0.9) if k else u
                vv = v + rng.normal(0, 0.5) if k else v
                yaw = heading + rng.normal(0, 0.25 * spread)
                if rng.random() < 0.15:
                    yaw = float(rng.uniform(-math.pi, math.pi))
                x, y = self.xy(uu, vv)
                if not self._region_ok(x, y, front):
                    continue
                if self.b.try_object("Pedestrian", x, y, self.dir + yaw,
                                     sample_size("Pedestrian", rng), rng, 0.08) is not None:
                    placed += 1

    def cyclist(self, front: bool) -> bool:
        rng, lay = self.rng, self.lay
        for _ in range(20):
            u = self.u_sample(front)
            r = rng.random()
            s = -1 if rng.random() < 0.5 else 1
            if r < 0.7:  # riding near the road edge, with the traffic of that side
                v = (-(lay.n_lanes - 0.15) if s < 0 else (lay.n_lanes - 0.15)) * lay.lane_w
                v += rng.normal(0, 0.3)
                yaw = (0.0 if s < 0 else math.pi) + rng.normal(0, 0.05)
            elif r < 0.85 and lay.sw(s) > 1.5:  # on the sidewalk
                v = lay.edge(s) + s * rng.uniform(0.6, lay.sw(s) - 0.5)
                yaw = (0.0 if rng.random() < 0.5 else math.pi) + rng.normal(0, 0.1)
            else:  # crossing / turning
                v = float(rng.uniform(lay.v_lo, lay.v_hi))
                yaw = float(rng.uniform(-math.pi, math.pi))
            x, y = self.xy(u, v)
            if not self._region_ok(x, y, front):
                continue
            if self.b.try_object("Cyclist", x, y, self.dir + yaw, sample_size("Cyclist", rng),
                                 rng, 0.3) is not None:
                return True
        return False

    def sitting_group(self) -> None:
        rng, lay = self.rng, self.lay
        s = -1 if rng.random() < 0.5 else 1
        if lay.sw(s) < 2.5:
            return
        u = float(rng.uniform(8, 40))
        v = lay.edge(s) + s * (lay.sw(s) - 1.0)
        for k in range(int(rng.integers(1, 5))):
            x, y = self.xy(u + 0.8 * k, v)
            self.b.try_object("Person_sitting", x, y, self.dir - s * math.pi / 2
                              + rng.normal(0, 0.2), sample_size("Person_sitting", rng), rng, 0.1)

    def tram(self) -> None:
        lay = self.lay
        dims = sample_size("Tram", self.rng)
        for _ in range(10):
            u = float(self.rng.uniform(10, 60))
            x, y = self.xy(u, lay.lane_w / 2)
            if self.b.try_object("Tram", x, y, self.dir + math.pi, dims, self.rng, 1.0):
                return


def _vehicle_class(rng: np.random.Generator, cfg: SceneConfig) -> str:
    r = rng.random()
    if r < cfg.truck_fraction:
        return "Truck"
    if r < cfg.truck_fraction + cfg.van_fraction:
        return "Van"
    return "Car"


_CAR_MODES = {"city": (("lane", .45), ("parked", .45), ("cross", .06), ("random", .04)),
              "residential": (("lane", .25), ("parked", .62), ("cross", .05), ("random", .08)),
              "road": (("lane", .88), ("cross", .04), ("random", .08))}


def generate_scene(rng: np.random.Generator, cfg: SceneConfig | None = None,
                   lidar: LidarConfig | None = None) -> Scene:
    """A random street scene around the ego car (LiDAR at the origin, ground at -mount_height)."""
    cfg = cfg or SceneConfig()
    lidar = lidar or LidarConfig()
    lay = _layout(rng, cfg)
    ground = _make_ground(rng, cfg, lay, lidar.mount_height)
    b = SceneBuilder(ground, cfg.object_margin)
    b.reserve([EGO_BEV + (-lidar.mount_height - 1.0, 0.0)])
    st = _Street(b, lay, rng, cfg)
    st.frontage()
    st.furniture()

    kind = lay.kind
    lo, hi = cfg.cars_fov_range
    n_veh = int(np.clip(rng.poisson(cfg.cars_fov[kind]), lo, hi))
    n_peds = 0 if rng.random() < 0.35 else int(min(rng.poisson(cfg.peds_fov[kind] / 0.65), 12))
    n_cyc = int(min(rng.poisson(cfg.cyclists_fov[kind]), 5))
    if kind == "city" and rng.random() < cfg.tram_prob_city:
        st.tram()
    if kind != "road" and rng.random() < cfg.sitting_prob:
        st.sitting_group()
    modes, mp = zip(*_CAR_MODES[kind])
    mp = np.array(mp) / np.sum(mp)
    for front, scale in ((True, 1.0), (False, cfg.background_ratio)):
        n_v = n_veh if front else int(rng.poisson(n_veh * scale))
        classes = [_vehicle_class(rng, cfg) for _ in range(n_v)]
        classes.sort(key=lambda c: {"Truck": 0, "Van": 1, "Car": 2}[c])  # big ones first
        for cls in classes:
            st.vehicle(cls, front, str(rng.choice(modes, p=mp)))
        n_c = n_cyc if front else int(rng.poisson(n_cyc * scale))
        for _ in range(n_c):
            st.cyclist(front)
        st.pedestrians(n_peds if front else int(rng.poisson(n_peds * scale)), front)
    info = {"kind": kind, "n_lanes": lay.n_lanes, "lane_width": lay.lane_w,
            "cross": lay.cross, "kerb": ground.kerb}
    return b.build(kind, info)

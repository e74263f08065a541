"""Spinning 64-beam LiDAR model: beam pattern, ray casting of a scene, noise, dropout, intensity.
Returns KITTI-style float32 (x, y, z, intensity) points plus per-point provenance."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from clean_deploy.data.synth.config import LidarConfig
from clean_deploy.data.synth.raycast import RayCaster


@dataclass
class Scan:
    """Points of one sweep and where each came from."""

    points: np.ndarray  # (N,4) float32 x y z intensity (intensity in [0,1], 0.01 steps)
    obj: np.ndarray  # (N,) int32 object index of the hit primitive, -1 for scenery/ground
    sem: np.ndarray  # (N,) int16 semantic tag
    beam: np.ndarray  # (N,) int16 laser index (0 = top)
    geo_hits_per_obj: np.ndarray  # (n_obj,) geometric hits (before dropout) per object


def beam_elevations(cfg: LidarConfig) -> np.ndarray:
    """(n_beams,) elevation angles in degrees, top laser first (HDL-64E two-block layout)."""
    n_up = cfg.upper_beams
    up = np.linspace(cfg.fov_up_deg, cfg.upper_bottom_deg, n_up)
    low = np.linspace(cfg.lower_top_deg, cfg.fov_down_deg, cfg.n_beams - n_up)
    el = np.concatenate([up, low])
    rng = np.random.default_rng(cfg.sensor_seed)
    jitter = rng.normal(0.0, cfg.beam_elev_jitter_deg, cfg.n_beams)
    jitter[[0, -1]] = 0.0  # keep the documented field of view exact
    return el + jitter


def beam_gains(cfg: LidarConfig) -> np.ndarray:
    """(n_beams,) per-laser intensity gain of the simulated unit (fixed across frames)."""
    rng = np.random.default_rng([cfg.sensor_seed, 1])
    return 1.0 + cfg.beam_gain_spread * rng.uniform(-1.0, 1.0, cfg.n_beams)


@functools.lru_cache(maxsize=8)
def _ray_pattern(cfg: LidarConfig) -> tuple[np.ndarray, np.ndarray]:
    """Unit ray directions (n_beams * n_cols, 3) in KITTI's point order and their beam index.

    Order: laser by laser from the top one, each sweeping clockwise from the rear (azimuth +pi)
    like the HDL-64E's rotation; KITTI's .bin files list points ring by ring in the same way.
    """
    el = np.deg2rad(beam_elevations(cfg))
    n_col = cfg.n_columns
    az = math.pi - (np.arange(n_col) + 0.5) * (2.0 * math.pi / n_col)
    ce, se = np.cos(el)[:, None], np.sin(el)[:, None]
    dirs = np.stack([ce * np.cos(az)[None], ce * np.sin(az)[None],
                     np.broadcast_to(se, (len(el), n_col))], -1).reshape(-1, 3)
    beam = np.repeat(np.arange(len(el), dtype=np.int16), n_col)
    dirs.setflags(write=False)
    beam.setflags(write=False)
    return dirs, beam


def ray_directions(cfg: LidarConfig) -> np.ndarray:
    return _ray_pattern(cfg)[0]


def received_power(cfg: LidarConfig, refl: np.ndarray, cos_inc: np.ndarray,
                   r: np.ndarray) -> np.ndarray:
    """Relative return power of a diffuse target: refl * incidence term / r^2."""
    inc = cfg.incidence_floor + (1.0 - cfg.incidence_floor) * cos_inc
    return refl * inc / np.maximum(r, 1.0) ** 2


def detection_prob(cfg: LidarConfig, refl: np.ndarray, cos_inc: np.ndarray,
                   r: np.ndarray) -> np.ndarray:
    """Probability that a return is detected (logistic in log received power)."""
    p_ref = cfg.detect_ref_reflectivity / cfg.detect_ref_range ** 2
    with np.errstate(divide="ignore"):
        x = np.log(np.maximum(received_power(cfg, refl, cos_inc, r), 1e-30) / p_ref)
    return 1.0 / (1.0 + np.exp(-x / cfg.detect_softness))


def scan_scene(caster: RayCaster, cfg: LidarConfig, rng: np.random.Generator,
               n_objects: int = 0) -> Scan:
    """One full 360 deg sweep of the scene seen by ``caster`` (origin = LiDAR origin)."""
    dirs, beam = _ray_pattern(cfg)
    hits = caster.cast(dirs, seed=int(rng.integers(0, 2**62)))
    geo = np.isfinite(hits.t) & (hits.t <= cfg.max_range) & (hits.t >= cfg.min_range)
    geo_obj = hits.obj[geo]
    geo_hits = np.bincount(geo_obj[geo_obj >= 0], minlength=n_objects)[:max(n_objects, 0)]

    idx = np.flatnonzero(geo)
    t = hits.t[idx]
    refl = hits.refl[idx].astype(np.float64)
    cosi = hits.cos_inc[idx].astype(np.float64)
    prim = hits.prim[idx]
    # dropout: sensitivity limit (dark / grazing / far targets), random losses, glass & rubber
    extra = np.zeros(len(idx))
    on_prim = prim >= 0
    extra[on_prim] = caster.prims.dropout[prim[on_prim]]
    p_keep = detection_prob(cfg, refl, cosi, t) * (1.0 - cfg.base_dropout) * (1.0 - extra)
    keep = rng.random(len(idx)) < p_keep
    noise = rng.normal(0.0, cfg.range_noise_std, len(idx))
    inten_noise = rng.normal(0.0, cfg.intensity_noise_std, len(idx))
    idx, t, refl, cosi = idx[keep], t[keep], refl[keep], cosi[keep]
    r = t + noise[keep]
    xyz = caster.origin[None] + r[:, None] * dirs[idx]
    gains = beam_gains(cfg)[beam[idx]]
    inc = cfg.incidence_floor + (1.0 - cfg.incidence_floor) * cosi
    inten = cfg.intensity_scale * gains * refl * inc / (1.0 + t / cfg.intensity_falloff_range)
    inten += inten_noise[keep]
    inten = np.round(np.clip(inten, 0.0, 1.0), 2)
    pts = np.concatenate([xyz, inten[:, None]], 1).astype(np.float32)
    return Scan(points=pts, obj=hits.obj[idx], sem=hits.sem[idx], beam=beam[idx],
                geo_hits_per_obj=geo_hits)


__all__ = ["Scan", "beam_elevations", "beam_gains", "ray_directions", "scan_scene",
           "detection_prob", "received_power"]

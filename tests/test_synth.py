"""Synthetic KITTI benchmark: file format, determinism, ray-casting physics, labels, statistics."""
import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest

from clean_deploy.data.kitti.label import KITTI_TYPES, read_label_file
from clean_deploy.data.stats import dataset_stats, format_stats
from clean_deploy.data.synth import (LidarConfig, SceneBuilder, SynthConfig, beam_elevations,
                                     flat_ground, generate_dataset, generate_frame, render_frame)
from clean_deploy.data.synth.primitives import (BOX, CYL_Y, CYL_Z, ELLIPSOID, SEM_BUILDING,
                                                SEM_VEHICLE, PrimitiveSet)
from clean_deploy.data.synth.raycast import GROUND, RayCaster
from clean_deploy.geometry.boxes import (boxes_camera_to_lidar, boxes_to_image,
                                         points_in_boxes_index, points_in_boxes_mask)
from clean_deploy.geometry.calib import (KITTI_IMAGE_SHAPE, Calibration,
                                         kitti_default_calibration)

CFG = SynthConfig()
H = CFG.lidar.mount_height


def _unit(v):
    v = np.asarray(v, dtype=np.float64).reshape(-1, 3)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _dir(az_deg, el_deg):
    a, e = math.radians(az_deg), math.radians(el_deg)
    return _unit([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])


def _scene(objects, seed=0):
    """Flat ground and the given (class, LiDAR box) objects; boxes sit on the ground."""
    rng = np.random.default_rng(seed)
    b = SceneBuilder(flat_ground(H))
    for cls, (x, y, l, w, h, yaw) in objects:
        b.add_object(cls, (x, y, -H + h / 2, l, w, h, yaw), rng)
    return b.build()


def _render(scene, seed=0):
    return render_frame(scene, CFG, np.random.default_rng(seed))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    meta = generate_dataset(root, frames=3, val_frames=1, seed=11, workers=1, progress=False)
    return root, meta


# ------------------------------------------------------------------ file format
def test_kitti_layout_and_files_parse(dataset):
    root, meta = dataset
    assert (root / "ImageSets" / "train.txt").read_text() == "000000\n000001\n000002\n"
    assert (root / "ImageSets" / "val.txt").read_text() == "000003\n"
    saved = json.loads((root / "synth_meta.json").read_text())
    assert saved["seed"] == 11 and saved["config"]["version"] and saved["frames"]["val"] == 1
    ref = kitti_default_calibration()
    n_labels = 0
    for i in range(4):
        fid = f"{i:06d}"
        raw = (root / "training" / "velodyne" / f"{fid}.bin").read_bytes()
        assert len(raw) % 16 == 0 and len(raw) > 16 * 50_000
        pts = np.frombuffer(raw, dtype=np.float32).reshape(-1, 4)
        assert np.isfinite(pts).all()
        assert pts[:, 3].min() >= 0.0 and pts[:, 3].max() <= 1.0
        r = np.linalg.norm(pts[:, :3], axis=1)
        assert r.max() <= CFG.lidar.max_range + 0.2
        assert (pts[:, 0] < -5).sum() > 10_000, "points cover the full 360 deg"
        calib = Calibration.from_file(root / "training" / "calib" / f"{fid}.txt")
        for key in ("P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam", "Tr_imu_to_velo"):
            assert np.allclose(getattr(calib, key), getattr(ref, key), atol=1e-9)
        text = (root / "training" / "label_2" / f"{fid}.txt").read_text()
        for line in text.splitlines():
            f = line.split()
            assert len(f) == 15 and f[0] in KITTI_TYPES
            if f[0] == "DontCare":
                assert re.fullmatch(r"DontCare -1 -1 -10 (\S+ ){4}-1 -1 -1 -1000 -1000 -1000 -10",
                                    line), line
        objs = read_label_file(root / "training" / "label_2" / f"{fid}.txt")
        n_labels += sum(o.type != "DontCare" for o in objs)
        for o in objs:
            x1, y1, x2, y2 = o.bbox
            assert 0 <= x1 < x2 <= 1241 and 0 <= y1 < y2 <= 374
            if o.type != "DontCare":
                assert 0.0 <= o.truncated <= 1.0 and o.occluded in (0, 1, 2, 3)
                assert -math.pi <= o.rotation_y <= math.pi and o.location[2] > 0
    assert n_labels >= 8


def test_worker_count_does_not_change_bytes(dataset, tmp_path):
    root, _ = dataset
    t0 = time.perf_counter()
    generate_dataset(tmp_path, frames=3, val_frames=1, seed=11, workers=2, progress=False)
    print(f"\n4 frames with 2 worker processes: {time.perf_counter() - t0:.2f} s (incl. start)")
    for sub, ext in (("velodyne", "bin"), ("label_2", "txt"), ("calib", "txt")):
        for i in range(4):
            a = (root / "training" / sub / f"{i:06d}.{ext}").read_bytes()
            b = (tmp_path / "training" / sub / f"{i:06d}.{ext}").read_bytes()
            assert a == b, f"{sub}/{i:06d} differs between 1 worker and 2"
    assert (root / "synth_meta.json").read_text() == (tmp_path / "synth_meta.json").read_text()


def test_determinism_per_seed_and_frame():
    t0 = time.perf_counter()
    a = generate_frame(5, 2)
    dt = time.perf_counter() - t0
    b = generate_frame(5, 2)
    c = generate_frame(6, 2)
    d = generate_frame(5, 3)
    print(f"\nframe synthesis (scene + {CFG.lidar.n_rays} rays + labels): {dt:.3f} s, "
          f"{len(a.points)} points")
    assert a.points.tobytes() == b.points.tobytes()
    assert [o.to_line() for o in a.labels] == [o.to_line() for o in b.labels]
    assert a.points.tobytes() != c.points.tobytes()
    assert a.points.tobytes() != d.points.tobytes()


# ------------------------------------------------------------- sensor & physics
def test_beam_pattern_is_hdl64_like():
    el = beam_elevations(CFG.lidar)
    assert len(el) == 64 and el[0] == pytest.approx(2.0) and el[-1] == pytest.approx(-24.8)
    gaps = -np.diff(el)
    assert (gaps > 0).all()
    assert gaps[:31].mean() < 0.4 < gaps[32:].mean()  # denser upper block, as the real sensor
    assert LidarConfig().n_rays == 64 * 1800


@pytest.mark.parametrize("el_deg", [-24.8, -10.0, -3.0, -1.2])
def test_ground_plane_range_is_analytic(el_deg):
    caster = RayCaster(PrimitiveSet().freeze(), flat_ground(H))
    for az in (0.0, 77.0, -150.0):
        hit = caster.cast(_dir(az, el_deg))
        assert hit.prim[0] == GROUND
        assert hit.t[0] == pytest.approx(H / math.sin(math.radians(-el_deg)), rel=1e-9)
        assert hit.cos_inc[0] == pytest.approx(math.sin(math.radians(-el_deg)), abs=1e-6)
    assert not np.isfinite(caster.cast(_dir(0.0, 1.0)).t[0])  # upward ray: sky


def test_primitive_hits_are_analytic():
    ps = PrimitiveSet()
    ps.add(BOX, (20.0, 0.0, 0.0), 0.0, (1.0, 2.0, 1.0), 0.5, SEM_VEHICLE)  # face at x = 19
    ps.add(BOX, (0.0, 20.0, 0.0), math.radians(45), (1.0, 1.0, 1.0), 0.5, SEM_VEHICLE)
    ps.add(CYL_Z, (-10.0, 0.0, 0.0), 0.0, (0.5, 0.5, 2.0), 0.5, SEM_VEHICLE)
    ps.add(CYL_Y, (0.0, -10.0, 0.0), 0.0, (0.5, 0.1, 0.5), 0.5, SEM_VEHICLE)  # disc facing -y
    ps.add(ELLIPSOID, (7.0, 7.0, 0.0), 0.0, (1.0, 1.0, 3.0), 0.5, SEM_VEHICLE)
    caster = RayCaster(ps.freeze(), None)
    hit = caster.cast(np.vstack([_dir(0, 0), _dir(90, 0), _dir(180, 0), _dir(-90, 0),
                                 _dir(45, 0)]))
    expect = [19.0, 20.0 - math.sqrt(2.0), 9.5, 9.9, math.hypot(7, 7) - 1.0]
    assert np.allclose(hit.t, expect, atol=1e-9)
    assert list(hit.prim) == [0, 1, 2, 3, 4]
    assert np.allclose(hit.cos_inc, [1.0, math.sqrt(0.5), 1.0, 1.0, 1.0], atol=1e-6)


def _hits_on(frame, k=0):
    return int((frame.scan.obj == k).sum())


def test_points_on_object_fall_like_inverse_square():
    near = _render(_scene([("Car", (10.0, 0.0, 4.0, 1.6, 1.5, math.pi / 2))]))
    far = _render(_scene([("Car", (40.0, 0.0, 4.0, 1.6, 1.5, math.pi / 2))]))
    n10, n40 = _hits_on(near), _hits_on(far)
    g10, g40 = near.scan.geo_hits_per_obj[0], far.scan.geo_hits_per_obj[0]
    print(f"\ncar broadside: {n10} points at 10 m, {n40} at 40 m (ratio {n10 / n40:.1f}, "
          f"1/r^2 -> 16)")
    assert n10 > 1000 and n40 > 40
    assert 10.0 < g10 / g40 < 24.0  # geometric hits ~ solid angle ~ 1/r^2
    assert 10.0 < n10 / n40 < 28.0


def test_occluded_car_has_fewer_points_and_higher_occlusion():
    front = ("Car", (15.0, 0.0, 4.0, 1.7, 1.6, 0.0))
    behind = ("Car", (25.0, 1.0, 4.0, 1.7, 1.5, 0.0))
    both = _render(_scene([front, behind]))
    alone = _render(_scene([behind]))
    assert _hits_on(both, 1) < 0.5 * _hits_on(alone, 0)
    lab = {both.annotation.label_obj[i]: o for i, o in enumerate(both.labels) if o.type == "Car"}
    assert lab[0].occluded == 0 and lab[1].occluded >= 1
    assert alone.labels[0].occluded == 0
    assert both.annotation.visible[1] < 0.5 < alone.annotation.visible[0]


def test_truncation_at_image_edge():
    # camera 2 sees ~ +-40.7 deg: a car at 34 deg, 10 m away sticks out of the left edge
    edge = ("Car", (8.3, 5.6, 4.0, 1.6, 1.5, 0.0))
    centre = ("Car", (20.0, 0.0, 4.0, 1.6, 1.5, 0.0))
    fr = _render(_scene([edge, centre]))
    lab = {fr.annotation.label_obj[i]: o for i, o in enumerate(fr.labels)}
    assert lab[0].truncated > 0.05 and lab[0].bbox[0] == 0.0
    assert lab[1].truncated == 0.0
    behind = _render(_scene([("Car", (-15.0, 0.0, 4.0, 1.6, 1.5, 0.0))]))
    assert behind.labels == [] and _hits_on(behind) > 200  # LiDAR sees it, camera does not


def test_far_small_objects_become_dontcare():
    fr = _render(_scene([("Car", (95.0, 0.0, 4.0, 1.6, 1.5, 0.0)),
                         ("Pedestrian", (30.0, -3.0, 0.8, 0.6, 1.75, 0.0))]))
    lines = [o for o in fr.labels]
    assert [o.type for o in lines] == ["Pedestrian", "DontCare"]
    dc = lines[1]
    assert dc.location == (-1000.0, -1000.0, -1000.0) and dc.alpha == -10.0


def test_labels_match_geometry_on_generated_frames():
    calib = kitti_default_calibration()
    n_checked = n_in = n_own = 0
    for idx in range(3):
        fr = generate_frame(21, idx)
        ann = fr.annotation
        lab = [(o, k) for o, k in zip([o for o in fr.labels if o.type != "DontCare"],
                                      ann.label_obj)]
        assert len(lab) == len(ann.label_obj)
        for o, k in lab:
            box = fr.scene.objects[k].box
            # 2D box = projection of the 3D box corners with P2, clipped to the image
            assert np.allclose(o.bbox, boxes_to_image(box[None], calib, KITTI_IMAGE_SHAPE)[0])
            # the KITTI camera box converts back to the LiDAR box
            cam = np.array([[*o.location, o.dimensions[2], o.dimensions[0], o.dimensions[1],
                             o.rotation_y]])
            back = boxes_camera_to_lidar(cam, calib)[0]
            assert np.allclose(back[:6], box[:6], atol=1e-6)
            # the label box holds (nearly) all of the object's own points
            own = fr.points[fr.scan.obj == k, :3].astype(np.float64)
            if len(own) >= 20:
                inside = points_in_boxes_mask(own, box[None])[:, 0]
                assert inside.mean() > 0.85, (o.type, inside.mean())  # noise at box corners
                n_in += int(inside.sum())
                n_own += len(own)
                n_checked += 1
        # no building points inside any object box, objects do not overlap
        boxes = fr.scene.boxes
        idx_in = points_in_boxes_index(fr.points[:, :3].astype(np.float64), boxes)
        assert not ((idx_in >= 0) & (fr.scan.sem == SEM_BUILDING)).any()
        own_pts = fr.points[fr.scan.obj >= 0, :3].astype(np.float64)
        m = points_in_boxes_mask(own_pts, boxes)
        assert (m.sum(1) <= 1).mean() > 0.99
    assert n_checked >= 10 and n_in / n_own > 0.98


def test_camera_fov_labels_only(dataset):
    root, _ = dataset
    calib = kitti_default_calibration()
    for i in range(4):
        objs = [o for o in read_label_file(root / "training" / "label_2" / f"{i:06d}.txt")
                if o.type != "DontCare"]
        if not objs:
            continue
        cam = np.array([[*o.location, o.dimensions[2], o.dimensions[0], o.dimensions[1],
                         o.rotation_y] for o in objs])
        centres = boxes_camera_to_lidar(cam, calib)[:, :3]
        assert (centres[:, 0] > -3.0).all()
        assert (np.abs(np.arctan2(centres[:, 1], centres[:, 0])) < math.radians(60)).all()


# ----------------------------------------------------------------- statistics / CLI
def test_dataset_stats_read_from_disk(dataset):
    root, meta = dataset
    st = dataset_stats(root)
    assert st["frames"] == 4
    train_counts = {}
    for i in range(3):
        for o in read_label_file(root / "training" / "label_2" / f"{i:06d}.txt"):
            train_counts[o.type] = train_counts.get(o.type, 0) + 1
    assert st["class_counts"]["train"] == dict(sorted(train_counts.items()))
    assert st["points_per_frame"]["min"] > 50_000
    assert 5_000 < st["fov_points_per_frame"]["mean"] < st["points_per_frame"]["mean"]
    car = st["points_vs_distance"]["Car"]
    near = [car[b] for b in ("0-10", "10-20") if b in car]
    far = [car[b] for b in ("40-50", "50-60", "60-70") if b in car]
    if near and far:
        assert min(near) > max(far)
    text = format_stats(st)
    assert "mean points in box vs distance" in text and "Car" in text
    print("\n" + text)


def test_cli_commands(tmp_path):
    from typer.testing import CliRunner

    from clean_deploy.cli.data import data_app
    runner = CliRunner()
    res = runner.invoke(data_app, ["synth", "--out", str(tmp_path), "--frames", "1",
                                   "--val-frames", "1", "--seed", "3", "--workers", "1",
                                   "--azimuth-res", "0.4"])
    assert res.exit_code == 0, res.output
    pts = np.fromfile(tmp_path / "training" / "velodyne" / "000001.bin", np.float32)
    assert 0 < pts.size // 4 <= 64 * 900
    res = runner.invoke(data_app, ["stats", str(tmp_path)])
    assert res.exit_code == 0 and "objects per class" in res.output


def _children(pid: int) -> dict[int, str]:
    """pid -> cmdline of the live processes whose parent is ``pid`` (from /proc)."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ValueError, IndexError):
                continue
    return out


def _alive(pid: int) -> bool:
    """Running or sleeping (a zombie no reaper collects counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
def test_workers_exit_when_the_parent_is_killed(tmp_path):
    """A killed generate_dataset (SIGKILL: no shutdown runs) leaves no worker processes behind."""
    import signal
    import subprocess
    import sys

    code = ("from clean_deploy.data.synth import generate_dataset; "
            f"generate_dataset({str(tmp_path / 'd')!r}, 400, 0, seed=3, workers=2, progress=False)")
    p = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (tmp_path / "d" / "training" / "velodyne" / "000001.bin").exists():
            time.sleep(0.2)
        workers = {k: v for k, v in _children(p.pid).items() if "spawn_main" in v}
        assert len(workers) == 2, workers
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not [w for w in workers if _alive(w)], "worker processes outlived their killed parent"

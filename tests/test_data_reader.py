"""KITTI reader, preprocessing, configs and the dataset/collate pipeline on tiny on-disk fixtures."""
from __future__ import annotations

import json
import math
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from clean_deploy.config import AugmentConfig, DataConfig, ExperimentConfig, GTSamplingConfig, grid_size
from clean_deploy.data.augment.gt_sampling import GTDatabase, build_gt_database
from clean_deploy.data.dataset import KittiDetectionDataset, collate_batch
from clean_deploy.data.kitti.label import KittiObject, LabelError, to_arrays
from clean_deploy.data.kitti.reader import KittiReader, PointCloudError, read_png_shape
from clean_deploy.data.preprocess import (boxes_in_range_mask, class_indices, fov_mask,
                                          kitti_difficulty, label_mask, points_in_range_mask)
from clean_deploy.geometry.boxes import (boxes_camera_to_lidar, boxes_lidar_to_camera,
                                         boxes_to_image, alpha_from_ry, limit_period,
                                         points_in_boxes_mask)
from clean_deploy.geometry.calib import CalibError, kitti_default_calibration
from clean_deploy.models.config import DetectorConfig

CALIB = kitti_default_calibration()

# LiDAR boxes (x y z l w h yaw) of the fixture's objects, per frame
OBJECTS = {
    "000000": [("Car", (15.0, 2.0, -0.8, 3.9, 1.6, 1.5, 0.3), 80),
               ("Pedestrian", (10.0, -3.0, -0.9, 0.8, 0.6, 1.7, -1.2), 25),
               ("Cyclist", (22.0, 6.0, -0.9, 1.7, 0.6, 1.7, 2.0), 30),
               ("Van", (30.0, -6.0, -0.6, 5.0, 2.0, 2.2, 0.0), 40)],
    "000001": [("Car", (12.0, -4.0, -0.8, 4.2, 1.7, 1.5, -0.4), 120),
               ("Car", (35.0, 8.0, -0.7, 3.8, 1.6, 1.5, 1.5), 50)],
    "000002": [],  # empty point cloud, empty label file
}


def _label_line(name: str, box_lidar, trunc=0.0, occ=0) -> str:
    cam = boxes_lidar_to_camera(np.asarray(box_lidar, dtype=np.float64)[None], CALIB)[0]
    x, y, z, l, h, w, ry = cam
    bbox = boxes_to_image(np.asarray(box_lidar)[None], CALIB, (375, 1242))[0]
    return KittiObject(name, trunc, occ, float(alpha_from_ry(ry, x, z)), tuple(bbox), (h, w, l),
                       (x, y, z), float(ry)).to_line()


def _points_in_box(rng, box, n) -> np.ndarray:
    """n points uniformly inside 90% of a LiDAR box (x y z l w h yaw)."""
    local = rng.uniform(-0.45, 0.45, (n, 3)) * np.asarray(box[3:6])
    c, s = math.cos(box[6]), math.sin(box[6])
    xyz = np.stack([local[:, 0] * c - local[:, 1] * s, local[:, 0] * s + local[:, 1] * c,
                    local[:, 2]], 1) + np.asarray(box[:3])
    return np.concatenate([xyz, rng.uniform(0, 1, (n, 1))], 1)


def make_kitti(root: Path, seed: int = 0, background: int = 3000, with_image: bool = True) -> Path:
    """A KITTI-format folder with the frames of ``OBJECTS``: background points in front of the
    car (some outside the camera FOV and range), object points inside the boxes as read back from
    the label files, a DontCare line in frame 0; splits train/val/all."""
    rng = np.random.default_rng(seed)
    tr = root / "training"
    for sub in ("velodyne", "calib", "label_2", "image_2"):
        (tr / sub).mkdir(parents=True, exist_ok=True)
    (root / "ImageSets").mkdir(parents=True, exist_ok=True)
    for fid, objs in OBJECTS.items():
        lines = [_label_line(n, b) for n, b, _ in objs]
        if fid == "000000":
            lines.append("DontCare -1 -1 -10 500.00 170.00 530.00 190.00 -1 -1 -1 -1000 -1000 -1000 -10")
        (tr / "label_2" / f"{fid}.txt").write_text("".join(ln + "\n" for ln in lines))
        (tr / "calib" / f"{fid}.txt").write_text(CALIB.to_text())
        if objs:
            read_back = boxes_camera_to_lidar(
                to_arrays([_parse(ln) for ln in lines if not ln.startswith("DontCare")]).boxes_camera,
                CALIB)
            bg = np.stack([rng.uniform(-10, 80, background), rng.uniform(-45, 45, background),
                           rng.uniform(-2.5, 0.5, background), rng.uniform(0, 1, background)], 1)
            bg = bg[~points_in_boxes_mask(bg, read_back).any(1)]
            parts = [bg] + [_points_in_box(rng, b, k) for b, (_, _, k) in zip(read_back, objs)]
            pts = np.concatenate(parts, 0).astype(np.float32)
        else:
            pts = np.zeros((0, 4), np.float32)
        pts.tofile(tr / "velodyne" / f"{fid}.bin")
        if with_image and fid == "000001":
            _write_png(tr / "image_2" / f"{fid}.png", 370, 1224)
    ids = list(OBJECTS)
    for split, sel in (("train", ids), ("val", ids), ("all", ids)):
        (root / "ImageSets" / f"{split}.txt").write_text("".join(i + "\n" for i in sel))
    return root


def _parse(line: str) -> KittiObject:
    from clean_deploy.data.kitti.label import parse_line
    return parse_line(line)


def _write_png(path: Path, h: int, w: int) -> None:
    """A minimal valid grey PNG of size (h, w)."""
    raw = b"".join(b"\x00" + bytes(w) for _ in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture
def kitti(tmp_path) -> Path:
    return make_kitti(tmp_path / "kitti")


def _cfg(root: Path, **augment) -> ExperimentConfig:
    aug = AugmentConfig(gt_sampling=GTSamplingConfig(sample_counts={"Car": 4, "Pedestrian": 2,
                                                                    "Cyclist": 2}, min_points=5,
                                                     drop_difficulties=()), **augment)
    return ExperimentConfig(data=DataConfig(root=str(root)), augment=aug)


#: the geometry the dataset tests use (the detector owns range, voxels and classes)
DET = DetectorConfig(voxel_size=(0.1, 0.1, 0.2), max_voxels_train=4000, max_voxels_test=8000)


# ----------------------------------------------------------------------------- reader
def test_label_file_camera_lidar_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    boxes = np.stack([rng.uniform(5, 60, 20), rng.uniform(-20, 20, 20), rng.uniform(-1.5, 0, 20),
                      rng.uniform(0.5, 5, 20), rng.uniform(0.5, 2.5, 20), rng.uniform(1, 2.5, 20),
                      rng.uniform(-math.pi, math.pi, 20)], 1)
    path = tmp_path / "label.txt"
    path.write_text("".join(_label_line("Car", b) + "\n" for b in boxes))
    from clean_deploy.data.kitti.label import read_label_file
    labels = to_arrays(read_label_file(path))
    lidar = boxes_camera_to_lidar(labels.boxes_camera, CALIB)
    # the file stores 2 decimals: LiDAR boxes agree within rounding (+ rotation of the rounding)
    assert np.abs(lidar[:, :6] - boxes[:, :6]).max() < 0.01
    assert np.abs(limit_period(lidar[:, 6] - boxes[:, 6])).max() < 0.01
    back = boxes_lidar_to_camera(lidar, CALIB)
    assert np.abs(back[:, :6] - labels.boxes_camera[:, :6]).max() < 0.01
    assert np.abs(limit_period(back[:, 6] - labels.boxes_camera[:, 6])).max() < 0.01


def test_reader_frames(kitti):
    r = KittiReader(kitti, "train")
    assert r.frame_ids == ["000000", "000001", "000002"] and len(r) == 3 and r.has_labels
    f = r.get_frame("000000")
    assert f.points.dtype == np.float32 and f.points.shape[1] == 4 and len(f.points) > 2000
    assert list(f.gt_names) == ["Car", "Pedestrian", "Cyclist", "Van", "DontCare"]
    assert f.gt_boxes.dtype == np.float32 and f.gt_boxes.shape == (5, 7)
    want = np.array([b for _, b, _ in OBJECTS["000000"]])
    assert np.abs(f.gt_boxes[:4, :6] - want[:, :6]).max() < 0.01
    counts = points_in_boxes_mask(f.points, f.gt_boxes[:4]).sum(0)
    assert counts.tolist() == [80, 25, 30, 40]
    assert f.image_shape == (375, 1242)  # no image_2 png -> default
    assert r.get_frame("000001").image_shape == (370, 1224)  # read from the PNG header
    e = r[2]
    assert e.points.shape == (0, 4) and e.gt_boxes.shape == (0, 7) and len(e.labels) == 0


def test_testing_split_without_labels(kitti):
    te = kitti / "testing"
    (te / "velodyne").mkdir(parents=True)
    (te / "calib").mkdir()
    np.zeros((5, 4), np.float32).tofile(te / "velodyne" / "000007.bin")
    (te / "calib" / "000007.txt").write_text(CALIB.to_text())
    (kitti / "ImageSets" / "test.txt").write_text("000007\n")
    r = KittiReader(kitti, "test")
    assert not r.has_labels and r.read_labels("000007") is None
    f = r.get_frame("000007")
    assert f.labels is None and f.gt_boxes.shape == (0, 7) and f.points.shape == (5, 4)


def test_bad_inputs_name_the_file(kitti):
    r = KittiReader(kitti, "train")
    velo = kitti / "training" / "velodyne" / "000001.bin"
    pts = np.fromfile(velo, np.float32).reshape(-1, 4)
    # truncated .bin
    velo.write_bytes(pts.tobytes()[:-6])
    with pytest.raises(PointCloudError, match=r"000001\.bin.*not a multiple of 16"):
        r.read_points("000001")
    # NaN point: raise by default, drop on request
    bad = pts.copy()
    bad[7, 1] = np.nan
    bad[9, 3] = np.inf
    bad.tofile(velo)
    with pytest.raises(PointCloudError, match=r"000001\.bin: 2 of \d+ points have NaN/inf"):
        r.get_frame("000001")
    dropped = KittiReader(kitti, "train", nan_policy="drop").read_points("000001")
    assert len(dropped) == len(pts) - 2 and np.isfinite(dropped).all()
    # 14-field label line
    lab = kitti / "training" / "label_2" / "000001.txt"
    lines = lab.read_text().splitlines()
    lab.write_text(lines[0] + "\n" + " ".join(lines[1].split()[:14]) + "\n")
    with pytest.raises(LabelError, match=r"label_2/000001\.txt:2: expected 15 fields.*got 14"):
        r.read_labels("000001")
    # non-numeric calib value
    cal = kitti / "training" / "calib" / "000000.txt"
    text = cal.read_text().splitlines()
    text[2] = "P2: 721.5 0 abc 44.8 0 721.5 172.8 0.2 0 0 1 0.003"
    cal.write_text("\n".join(text))
    with pytest.raises(CalibError, match=r"calib/000000\.txt:3: P2: non-numeric"):
        r.get_frame("000000")
    # missing files
    (kitti / "training" / "calib" / "000002.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"calib/000002\.txt"):
        r.get_frame("000002")
    (kitti / "training" / "velodyne" / "000002.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"velodyne/000002\.bin"):
        r.read_points("000002")
    with pytest.raises(FileNotFoundError, match=r"split 'nosuch'.*ImageSets/nosuch\.txt"):
        KittiReader(kitti, "nosuch")


def test_png_shape(tmp_path):
    _write_png(tmp_path / "a.png", 12, 34)
    assert read_png_shape(tmp_path / "a.png") == (12, 34)
    (tmp_path / "b.png").write_bytes(b"not a png")
    assert read_png_shape(tmp_path / "b.png") is None and read_png_shape(tmp_path / "c.png") is None


# ------------------------------------------------------------------------- preprocess
def test_fov_and_range_masks():
    pts = np.array([[10, 0, -1, 0],     # straight ahead: in FOV
                    [-10, 0, -1, 0],    # behind: negative depth
                    [5, 30, -1, 0],     # far left, outside the image
                    [50, 5, -1, 0]], np.float32)
    assert fov_mask(pts, CALIB, (375, 1242)).tolist() == [True, False, False, True]
    assert fov_mask(np.zeros((0, 4), np.float32), CALIB, (375, 1242)).shape == (0,)
    rng_ = (0, -40, -3, 70.4, 40, 1)
    p = np.array([[0, 0, 0, 0], [70.4, 0, 0, 0], [70.3, -40, -3, 0], [10, 0, 1, 0], [-0.01, 0, 0, 0]],
                 np.float32)
    assert points_in_range_mask(p, rng_).tolist() == [True, False, True, False, False]
    # random clouds against the textbook homogeneous projection P2 @ R0 @ Tr @ [x y z 1]
    rng = np.random.default_rng(0)
    cloud = np.concatenate([rng.uniform([-80, -80, -5], [80, 80, 3], (20000, 3)), rng.random((20000, 1))],
                           1).astype(np.float32)
    hom = np.concatenate([cloud[:, :3].astype(np.float64), np.ones((len(cloud), 1))], 1) @ CALIB.velo_to_rect.T
    img = hom @ np.concatenate([CALIB.P2, [[0, 0, 0, 1]]]).T
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = img[:, 0] / img[:, 2], img[:, 1] / img[:, 2]
    ref = (img[:, 2] > 0) & (u >= 0) & (u < 1242) & (v >= 0) & (v < 375)
    got = fov_mask(cloud, CALIB, (375, 1242))
    assert 3000 < ref.sum() < 17000 and (got == ref).all()
    np.testing.assert_allclose(CALIB.lidar_to_rect(cloud[:, :3]), hom[:, :3], rtol=0, atol=1e-9)
    np.testing.assert_allclose(CALIB.rect_to_lidar(hom[:, :3]), cloud[:, :3], rtol=0, atol=1e-5)
    lo, hi = np.array(rng_[:3], np.float32), np.array(rng_[3:], np.float32)
    in_range = ((cloud[:, :3] >= lo) & (cloud[:, :3] < hi)).all(1)
    assert (points_in_range_mask(cloud, rng_) == in_range).all() and 0 < in_range.sum() < len(cloud)
    b = np.zeros((3, 7), np.float32)
    b[:, 0] = [-0.5, 1.0, 70.4]
    b[:, 3:6] = 4
    assert boxes_in_range_mask(b, rng_).tolist() == [False, True, False]  # centre rule
    assert boxes_in_range_mask(np.zeros((0, 7)), rng_).shape == (0,)


def test_difficulty_and_label_filters():
    objs = [KittiObject("Car", 0.0, 0, 0, (0, 0, 10, 45), (1, 1, 1), (0, 0, 10), 0),    # easy
            KittiObject("Car", 0.2, 1, 0, (0, 0, 10, 30), (1, 1, 1), (0, 0, 10), 0),    # moderate
            KittiObject("Car", 0.4, 2, 0, (0, 0, 10, 30), (1, 1, 1), (0, 0, 10), 0),    # hard
            KittiObject("Car", 0.0, 0, 0, (0, 0, 10, 20), (1, 1, 1), (0, 0, 10), 0),    # too small
            KittiObject("Van", 0.9, 3, 0, (0, 0, 10, 60), (1, 1, 1), (0, 0, 10), 0),    # truncated
            KittiObject("DontCare", -1, -1, -10, (0, 0, 10, 60), (-1, -1, -1), (-1000,) * 3, -10)]
    lab = to_arrays(objs)
    diff = kitti_difficulty(lab)
    assert diff.tolist() == [0, 1, 2, -1, -1, -1]
    assert label_mask(lab.name).tolist() == [True] * 5 + [False]
    assert label_mask(lab.name, ("Car",), diff, (-1,)).tolist() == [True, True, True, False, False, False]
    assert label_mask(lab.name, None, num_points=np.array([5, 4, 9, 0, 5, 5]),
                      min_points=5).tolist() == [True, False, True, False, True, False]
    assert class_indices(np.array(["Car", "Van", "Cyclist", "Pedestrian"]),
                         ("Car", "Pedestrian", "Cyclist")).tolist() == [1, 0, 3, 2]


# ---------------------------------------------------------------------------- configs
def test_config_round_trip(tmp_path):
    from clean_deploy.models.zoo import get_config
    from clean_deploy.train.loop import experiment_for

    fast = experiment_for(get_config("centerpoint_fast"), "/x")
    for cfg in (ExperimentConfig(), fast, experiment_for(get_config("second"), "/x")):
        text = cfg.to_json()
        back = ExperimentConfig.from_json(text)
        assert back == cfg
        assert json.loads(text) == cfg.to_dict()
    d = ExperimentConfig().to_dict()
    assert d["augment"]["gt_sampling"]["sample_counts"] == {"Car": 15, "Pedestrian": 10, "Cyclist": 10}
    d["augment"]["global_rotation"] = None
    assert ExperimentConfig.from_dict(d).augment.global_rotation is None
    d["data"]["typo_key"] = 1
    with pytest.raises(ValueError, match=r"ExperimentConfig\.data: unknown config keys \['typo_key'\]"):
        ExperimentConfig.from_dict(d)
    assert grid_size((0, -40, -3, 70.4, 40, 1), (0.05, 0.05, 0.1)) == (1408, 1600, 40)
    # one config tree: the data side holds no geometry (range, voxels and classes are the detector's)
    assert set(d) == {"name", "data", "augment"}
    assert not {"class_names", "point_cloud_range", "voxel_size"} & set(d["data"])
    with pytest.raises(ValueError, match=r"unknown config keys \['point_cloud_range'\]"):
        ExperimentConfig.from_dict({"data": {"point_cloud_range": [0, -40, -3, 70.4, 40, 1]}})
    ds = KittiDetectionDataset(ExperimentConfig(data=DataConfig(root=str(make_kitti(tmp_path / "k")))),
                               get_config("centerpoint_fast"), training=False)
    assert tuple(ds.voxelizer.grid_size) == get_config("centerpoint_fast").grid_size
    assert ds.class_names == get_config("centerpoint_fast").class_names

def test_build_gt_database(kitti, tmp_path):
    r = KittiReader(kitti, "train")
    db = build_gt_database(r, ("Car", "Pedestrian", "Cyclist"), out_path=tmp_path / "db.npz")
    assert db.names.tolist() == ["Car", "Pedestrian", "Cyclist", "Car", "Car"]
    assert db.num_points.tolist() == [80, 25, 30, 120, 50]
    assert db.frame_ids.tolist() == ["000000"] * 3 + ["000001"] * 2
    assert db.gt_index.tolist() == [0, 1, 2, 0, 1]
    assert len(db.points) == 305 and db.starts.tolist() == [0, 80, 105, 135, 255]
    # relative points lie inside the box moved to the origin; absolute ones inside the box
    for i in range(len(db)):
        rel = db.object_points([i], absolute=False)
        centred = db.boxes[i].copy()
        centred[:3] = 0
        assert points_in_boxes_mask(rel, centred[None]).all()
        assert points_in_boxes_mask(db.object_points([i]), db.boxes[i:i + 1]).all()
    loaded = GTDatabase.load(tmp_path / "db.npz")
    assert all(np.array_equal(getattr(loaded, k), getattr(db, k)) for k in db.__dataclass_fields__)
    assert db.difficulty.tolist() == kitti_difficulty(
        to_arrays([_parse(ln) for ln in (kitti / "training/label_2/000000.txt").read_text()
                   .splitlines()[:3]])).tolist() + db.difficulty[3:].tolist()
    # concurrent writers (torchrun ranks, DataLoader workers) of the same database: every save
    # succeeds, the file loads, and no temp file is left (a shared temp name made one rank fail)
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda _: db.save(tmp_path / "shared" / "db.npz"), range(32)))
    assert np.array_equal(GTDatabase.load(tmp_path / "shared" / "db.npz").points, db.points)
    assert [p.name for p in (tmp_path / "shared").iterdir()] == ["db.npz"]


# ---------------------------------------------------------------------------- dataset
def test_dataset_training_sample(kitti):
    cfg = _cfg(kitti)
    ds = KittiDetectionDataset(cfg, DET, training=True, seed=3)
    assert len(ds) == 3 and ds.sampler is not None
    s = ds[0]
    assert set(s) >= {"frame_id", "points", "gt_boxes", "gt_names", "voxels", "voxel_coords",
                      "voxel_num_points", "calib", "image_shape"}
    assert s["frame_id"] == "000000" and s["points"].dtype == np.float32
    gt = s["gt_boxes"]
    assert gt.shape[1] == 8 and gt.dtype == np.float32
    assert set(gt[:, 7].astype(int).tolist()) <= {1, 2, 3}
    assert (class_indices(s["gt_names"], DET.class_names) == gt[:, 7]).all()
    assert "Van" not in s["gt_names"].tolist() and "DontCare" not in s["gt_names"].tolist()
    assert (np.abs(gt[:, 6]) <= math.pi + 1e-6).all()
    # sampled up to 4 cars: the frame had 1 car, the database 3 cars from other frames (+ own)
    assert (s["gt_names"] == "Car").sum() >= 2
    assert points_in_range_mask(s["points"], DET.point_cloud_range).all()
    # voxels agree with points: every voxel's points floor to its coordinate
    assert s["voxels"].shape[1:] == (5, 4) and s["voxel_coords"].dtype == np.int32
    assert s["voxel_num_points"].sum() <= len(s["points"])
    # deterministic per (seed, epoch, index); epoch changes the augmentation
    again = ds[0]
    assert np.array_equal(again["points"], s["points"]) and np.array_equal(again["gt_boxes"], gt)
    ds.set_epoch(1)
    assert not np.array_equal(ds[0]["points"], s["points"])
    other = KittiDetectionDataset(cfg, DET, training=True, seed=4, gt_database=ds.sampler.database)
    assert not np.array_equal(other[0]["points"], s["points"])


def test_dataset_eval_mode_is_plain(kitti):
    cfg = _cfg(kitti)
    ds = KittiDetectionDataset(cfg, DET, training=False)
    assert ds.sampler is None and ds.voxelizer.max_voxels == 8000
    s = ds[0]
    f = KittiReader(kitti, "val").get_frame("000000")
    pts = f.points[fov_mask(f.points, f.calib, f.image_shape)]
    pts = pts[points_in_range_mask(pts, DET.point_cloud_range)]
    assert np.array_equal(s["points"], pts)  # no augmentation, no shuffle: same order
    assert s["gt_names"].tolist() == ["Car", "Pedestrian", "Cyclist"]
    assert np.allclose(s["gt_boxes"][:, :7], f.gt_boxes[:3]) and s["gt_boxes"][:, 7].tolist() == [1, 2, 3]
    assert s["image_shape"].tolist() == [375, 1242] and s["calib"].source.endswith("000000.txt")
    # no voxel cap reached: every in-range point is kept unless its voxel already holds 5
    cz = np.floor((pts[:, :3] - np.float32([0, -40, -3])) / np.float32([0.1, 0.1, 0.2])).astype(int)
    _, per_voxel = np.unique(cz, axis=0, return_counts=True)
    assert len(s["voxels"]) == len(per_voxel) < 8000
    assert s["voxel_num_points"].sum() == np.minimum(per_voxel, 5).sum()


def test_empty_point_cloud_through_pipeline(kitti):
    no_sampling = _cfg(kitti)
    no_sampling.augment.gt_sampling.enabled = False
    for cfg, training in ((_cfg(kitti), True), (no_sampling, True), (_cfg(kitti), False)):
        ds = KittiDetectionDataset(cfg, DET, training=training, seed=0)
        s = ds[2]
        if ds.sampler is None:  # nothing pasted: the frame stays empty
            assert s["points"].shape == (0, 4) and s["gt_boxes"].shape == (0, 8)
            assert s["voxels"].shape == (0, 5, 4) and s["voxel_coords"].shape == (0, 3)
            assert s["voxel_num_points"].shape == (0,)
        else:  # GT sampling pastes database objects into the empty frame
            assert len(s["gt_boxes"]) > 0 and len(s["points"]) > 0
        b = collate_batch([s, ds[0], s])
        assert b["gt_boxes"].shape[0] == 3 and b["voxel_coords"].shape[1] == 4
        assert b["points"].shape[1] == 5 and b["gt_boxes"].shape[1] == max(len(s["gt_boxes"]), len(ds[0]["gt_boxes"]))
        assert set(b["voxel_coords"][:, 0].tolist()) == ({0, 1, 2} if len(s["voxels"]) else {1})
        if ds.sampler is None:
            b = collate_batch([s, s])
            assert b["points"].shape == (0, 5) and b["voxels"].shape == (0, 5, 4)
            assert b["voxel_coords"].shape == (0, 4) and b["gt_boxes"].shape == (2, 0, 8)


def test_collate_batch(kitti):
    ds = KittiDetectionDataset(_cfg(kitti), DET, training=False)
    samples = [ds[0], ds[1], ds[2]]
    b = collate_batch(samples)
    assert b["batch_size"] == 3 and b["frame_id"].tolist() == ["000000", "000001", "000002"]
    n = [len(s["points"]) for s in samples]
    v = [len(s["voxels"]) for s in samples]
    m = [len(s["gt_boxes"]) for s in samples]
    assert m == [3, 2, 0]
    assert b["points"].shape == (sum(n), 5) and b["points"].dtype == torch.float32
    assert b["points"][:, 0].tolist() == [0.0] * n[0] + [1.0] * n[1] + [2.0] * n[2]
    assert torch.equal(b["points"][n[0]:n[0] + n[1], 1:], torch.from_numpy(samples[1]["points"]))
    assert b["voxels"].shape == (sum(v), 5, 4)
    assert b["voxel_coords"].shape == (sum(v), 4) and b["voxel_coords"].dtype == torch.int32
    assert torch.bincount(b["voxel_coords"][:, 0].long(), minlength=3).tolist() == v
    assert torch.equal(b["voxel_coords"][v[0]:, 1:][:v[1]], torch.from_numpy(samples[1]["voxel_coords"]))
    assert b["voxel_num_points"].shape == (sum(v),)
    assert b["gt_boxes"].shape == (3, 3, 8)
    assert torch.equal(b["gt_boxes"][1, :2], torch.from_numpy(samples[1]["gt_boxes"]))
    assert (b["gt_boxes"][1, 2] == 0).all() and (b["gt_boxes"][2] == 0).all()  # padding
    assert b["image_shape"].tolist() == [[375, 1242], [370, 1224], [375, 1242]]
    assert len(b["calib"]) == 3 and len(b["gt_names"]) == 3


def test_dataloader_workers_match_serial(kitti):
    ds = KittiDetectionDataset(_cfg(kitti), DET, training=True, seed=11)
    serial = [ds[i] for i in range(len(ds))]
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate_batch)
    for s, b in zip(serial, loader):
        assert torch.equal(b["points"][:, 1:], torch.from_numpy(s["points"]))
        assert torch.equal(b["gt_boxes"][0], torch.from_numpy(s["gt_boxes"]))
    # picklable (spawn-started workers): the voxel generator is rebuilt lazily
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.voxelizer._gen is None
    assert np.array_equal(clone[1]["voxels"], serial[1]["voxels"])


def test_dataset_label_filters_and_database_file(kitti, tmp_path):
    cfg = _cfg(kitti)
    cfg.augment.gt_sampling.enabled = False
    cfg.augment.global_rotation = None
    cfg.augment.global_scaling = None
    base = KittiDetectionDataset(cfg, DET, training=True)[1]
    assert len(base["gt_boxes"]) == 2  # two cars of 120 and 50 points
    cfg.data.min_points_in_gt = 60
    s = KittiDetectionDataset(cfg, DET, training=True)[1]
    assert len(s["gt_boxes"]) == 1 and np.allclose(np.abs(s["gt_boxes"][0, :2]), [12.0, 4.0], atol=0.01)
    cfg.data.min_points_in_gt = 0
    cfg.data.drop_difficulties = (0,)  # the near car is easy, the far one (35 m) moderate
    s = KittiDetectionDataset(cfg, DET, training=True)[1]
    assert len(s["gt_boxes"]) == 1 and np.allclose(np.abs(s["gt_boxes"][0, :2]), [35.0, 8.0], atol=0.01)
    cfg.data.drop_difficulties = (0, 1, 2)
    assert KittiDetectionDataset(cfg, DET, training=True)[1]["gt_boxes"].shape == (0, 8)
    # the ground-truth database is built once into gt_database_path, then loaded
    cfg = _cfg(kitti)
    cfg.data.gt_database_path = str(tmp_path / "db" / "gt.npz")
    ds = KittiDetectionDataset(cfg, DET, training=True)
    assert (tmp_path / "db" / "gt.npz").is_file() and len(ds.sampler.database) == 5
    again = KittiDetectionDataset(cfg, DET, training=True)
    assert np.array_equal(again.sampler.database.points, ds.sampler.database.points)
    assert np.array_equal(again[0]["points"], ds[0]["points"])

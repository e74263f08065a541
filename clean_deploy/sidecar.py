"""The sidecar schema: the JSON next to an exported model that carries everything a runtime needs
besides the graph (pre-processing, tensor names, classes, post-processing parameters, provenance).
Reading, validating and writing it lives here, below every other layer, so that runtimes read it
without importing the exporter; :mod:`clean_deploy.export.sidecar` builds it from a detector."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from clean_deploy.atomic import atomic_write
from clean_deploy.config import grid_size
from clean_deploy.op_spec import DOMAIN  # the custom ops' ONNX domain (re-exported)

SIDECAR_VERSION = 1
#: graph inputs and outputs of every exported detector
INPUTS = ("voxels", "voxel_num_points", "voxel_coords")
OUTPUTS = ("boxes", "scores", "labels", "valid_count")


def write_sidecar(sidecar: dict, path: str | Path) -> Path:
    data = (json.dumps(sidecar, indent=2) + "\n").encode()
    return atomic_write(path, lambda f: f.write(data))


def read_sidecar(path: str | Path) -> dict:
    """The sidecar JSON, validated as strictly as the C++ sample reads it (:func:`validate_sidecar`);
    every error is a ValueError naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sidecar not found: {path} (written next to the .onnx by `clean-deploy export`)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("format") != "clean_deploy.sidecar":
        raise ValueError(f"{path}: not a clean_deploy sidecar (no 'format' marker)")
    if data.get("version") != SIDECAR_VERSION:
        raise ValueError(f"{path}: sidecar version {data.get('version')}, this runtime reads {SIDECAR_VERSION}")
    validate_sidecar(data, str(path))
    return data


def _numbers(v, n: int, where: str) -> list[float]:
    if not isinstance(v, list) or len(v) != n or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                        for x in v):
        raise ValueError(f"{where}: expected {n} numbers, got {v!r}")
    if not all(math.isfinite(x) for x in v):
        raise ValueError(f"{where}: not finite: {v!r}")
    return [float(x) for x in v]


def _positive_int(v, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v) or v < 1:
        raise ValueError(f"{where}: expected a positive integer, got {v!r}")
    return int(v)


def _strings(v, where: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise ValueError(f"{where}: expected a list of names, got {v!r}")
    return v


def validate_sidecar(data: dict, where: str) -> None:
    """The fields a runtime needs, their types, and their consistency (the grid is the voxeliser's
    :func:`clean_deploy.config.grid_size`, round((max - min) / voxel_size))."""
    def get(d: dict, key: str, w: str):
        if not isinstance(d, dict) or key not in d:
            raise ValueError(f"{w}: missing '{key}'")
        return d[key]

    names = _strings(get(data, "class_names", where), f"{where}: class_names")
    if not names:
        raise ValueError(f"{where}: class_names is empty")
    pre = get(data, "preprocess", where)
    pw = f"{where}: preprocess"
    rng = _numbers(get(pre, "point_cloud_range", pw), 6, f"{pw}.point_cloud_range")
    vs = _numbers(get(pre, "voxel_size", pw), 3, f"{pw}.voxel_size")
    grid = get(pre, "grid_size", pw)
    if not isinstance(grid, list) or len(grid) != 3:
        raise ValueError(f"{pw}.grid_size: expected 3 integers (nx ny nz), got {grid!r}")
    grid = [_positive_int(g, f"{pw}.grid_size[{i}]") for i, g in enumerate(grid)]
    _positive_int(get(pre, "max_points_per_voxel", pw), f"{pw}.max_points_per_voxel")
    _positive_int(get(pre, "max_voxels", pw), f"{pw}.max_voxels")
    if "point_features" in pre:
        _strings(pre["point_features"], f"{pw}.point_features")
    if pre.get("coords_order", "batch z y x") != "batch z y x":
        raise ValueError(f"{pw}.coords_order: expected 'batch z y x', got {pre['coords_order']!r}")
    for i in range(3):
        if not vs[i] > 0:
            raise ValueError(f"{pw}.voxel_size: values must be > 0, got {vs}")
        if not rng[i + 3] > rng[i]:
            raise ValueError(f"{pw}.point_cloud_range: max must be > min on every axis, got {rng}")
    for i, n in enumerate(grid_size(rng, vs)):  # the voxeliser's own rule
        if n != grid[i]:
            raise ValueError(f"{pw}.grid_size[{i}] = {grid[i]} does not match round((max - min) / voxel_size) = {n}")
    inputs = _strings(get(data, "input_names", where), f"{where}: input_names")
    outputs = _strings(get(data, "output_names", where), f"{where}: output_names")
    if len(inputs) != 3:
        raise ValueError(f"{where}: input_names: expected 3 (voxels, voxel_num_points, voxel_coords), got {inputs}")
    if len(outputs) != 4:
        raise ValueError(f"{where}: output_names: expected 4 (boxes, scores, labels, valid_count), got {outputs}")


def check_sidecar_against_graph(data: dict, model, where: str) -> None:
    """The sidecar must describe the ONNX graph it sits next to: the graph's input and output names,
    the class count and range of its redundancy-elimination node, and the first sparse conv's grid
    (spconv's [nz + 1, ny, nx]). ``model``: an ``onnx.ModelProto``."""
    from onnx import helper

    graph_in = [i.name for i in model.graph.input]
    graph_out = [o.name for o in model.graph.output]
    if list(data["input_names"]) != graph_in:
        raise ValueError(f"{where}: input_names {data['input_names']} differ from the model's inputs {graph_in}")
    if list(data["output_names"]) != graph_out:
        raise ValueError(f"{where}: output_names {data['output_names']} differ from the model's outputs {graph_out}")
    nx, ny, nz = data["preprocess"]["grid_size"]
    for node in (n for n in model.graph.node if n.op_type == "IoUAwareRedundancyElimination"):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if "num_classes" in attrs and int(attrs["num_classes"]) != len(data["class_names"]):
            raise ValueError(f"{where}: class_names has {len(data['class_names'])} classes, the model's "
                             f"post-processing {attrs['num_classes']}")
        if "pc_range" in attrs and not np.allclose(attrs["pc_range"], data["preprocess"]["point_cloud_range"],
                                                   atol=1e-4):
            raise ValueError(f"{where}: preprocess.point_cloud_range {data['preprocess']['point_cloud_range']} "
                             f"differs from the model's {[round(v, 4) for v in attrs['pc_range']]}")
    first = next((n for n in model.graph.node if n.op_type in ("SparseConvolution", "SparseConvolutionInt8")), None)
    attr = next((a for a in first.attribute if a.name == "spatial_shape"), None) if first is not None else None
    if first is not None and attr is None:
        raise ValueError(f"{where}: the model's first SparseConvolution has no spatial_shape attribute")
    if attr is not None:
        shape = [int(v) for v in helper.get_attribute_value(attr)]
        if shape[1:] != [ny, nx] or shape[0] not in (nz, nz + 1):
            raise ValueError(f"{where}: preprocess.grid_size {[nx, ny, nz]} does not match the model's sparse grid "
                             f"(z, y, x) {shape}")

"""The wheel carries its native libraries: built with ``pip wheel .`` (reusing this run's CMake
build), installed outside the checkout, it trains through the C++ kernels and runs an exported
model on ONNX Runtime with its custom ops, with the same outputs as the checkout."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
import numpy as np
import torch
import clean_deploy
from clean_deploy.native import kernels
from clean_deploy.runtime import ort_ops
from clean_deploy.runtime.ort_session import OrtSession
from clean_deploy.models.sparse import sparse_backend
from clean_deploy.models.sparse_ops import build_rulebook, conv_with_rulebook
pts = np.load(sys.argv[2])
sess = OrtSession(sys.argv[1], threads=1)
det = sess(pts, None)
idx = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 2], [0, 2, 2, 2]], dtype=torch.int32)
rb = build_rulebook(idx, (4, 4, 4), 3, 1, 1, 1, True)
f = torch.ones(3, 2, requires_grad=True)
conv_with_rulebook(f, torch.ones(1, 3, 3, 3, 2), None, rb).sum().backward()
print(json.dumps({"package": clean_deploy.__file__, "kernels": str(kernels.library_path()),
                  "ort": str(ort_ops.library_path()), "backend": sparse_backend("cpu"),
                  "boxes": np.asarray(det.boxes).tolist(), "scores": np.asarray(det.scores).tolist(),
                  "grad": f.grad.tolist()}))
"""


def test_wheel_installs_outside_the_checkout_with_its_native_libraries(tmp_path):
    from clean_deploy.export.onnx_export import export_onnx
    from clean_deploy.models.detector import build_detector
    from clean_deploy.models.zoo import get_config

    # the wheel, from this checkout (the CMake build of this run is reused: a no-op rebuild)
    env = {k: v for k, v in os.environ.items() if k not in ("CLEAN_DEPLOY_KERNELS_LIB", "CLEAN_DEPLOY_ORT_LIB")}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(tmp_path / "dist")], check=True, cwd=tmp_path, env=env, capture_output=True)
    wheels = list((tmp_path / "dist").glob("clean_deploy-*.whl"))
    assert len(wheels) == 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "clean_deploy/native/lib/libclean_deploy_kernels.so" in names
    assert "clean_deploy/native/lib/libclean_deploy_ort.so" in names
    assert not [n for n in names if n.endswith(".so") and not n.startswith("clean_deploy/native/lib/")]
    # installed into a folder of its own; the dependencies come from this interpreter's environment
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target),
                    str(wheels[0])], check=True, env=env, capture_output=True)

    torch_seed = 0
    import torch

    torch.manual_seed(torch_seed)
    model = build_detector(get_config("centerpoint_fast@0.25x")).eval()
    with torch.no_grad():  # a non-trivial head: some boxes pass the score threshold
        model.dense_head.hm[-1].bias.fill_(1.0)
    onnx_path = export_onnx(model, tmp_path / "model" / "student.onnx").onnx_path
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.uniform([0, -20, -2, 0], [50, 20, 1, 1], (20000, 4))]).astype(np.float32)
    np.save(tmp_path / "pts.npy", pts)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    run = subprocess.run([sys.executable, str(script), str(onnx_path), str(tmp_path / "pts.npy")],
                         cwd=outside, env={**env, "PYTHONPATH": str(target)}, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["package"].startswith(str(target)), got["package"]
    assert got["kernels"].startswith(str(target)) and got["ort"].startswith(str(target))
    assert got["backend"] == "clean_deploy"
    # all-ones weights: each site's gradient counts the sites within one cell of it (all three here:
    # (1,1,1)-(1,1,2), (1,1,1)-(2,2,2) and (1,1,2)-(2,2,2) are 3x3x3 neighbours), per channel
    assert got["grad"] == [[3.0, 3.0], [3.0, 3.0], [3.0, 3.0]]
    # the same detections as the checkout's session
    from clean_deploy.runtime.ort_session import OrtSession

    ref = OrtSession(onnx_path, threads=1)(pts, None)
    assert len(got["boxes"]) == len(ref.boxes) > 0
    np.testing.assert_allclose(np.array(got["boxes"]), ref.boxes, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.array(got["scores"]), ref.scores, rtol=0, atol=1e-6)

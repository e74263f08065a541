"""Shared fixtures: a small synthetic KITTI-format benchmark generated once per test session."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory):
    from clean_deploy.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, 6, 2, seed=7, workers=1, azimuth_res=0.3)
    return root


@pytest.fixture(scope="session")
def trained_students(synth_data, tmp_path_factory):
    """Small students fitted to the fixture frames (no augmentation), shared by the training,
    export and runtime tests: name -> (model in eval mode, training history)."""
    import torch

    from clean_deploy.config import AugmentConfig, GTSamplingConfig, TrainConfig
    from clean_deploy.models.config import RedundancyConfig
    from clean_deploy.models.zoo import get_config, with_iou_branch
    from clean_deploy.train.loop import Trainer

    aug = AugmentConfig(gt_sampling=GTSamplingConfig(enabled=False), random_flip_x=False, global_rotation=None,
                        global_scaling=None)
    out = {}
    for name, epochs, re in (("second_fast@0.25x", 20, True), ("centerpoint_fast@0.25x", 10, False)):
        cfg = with_iou_branch(get_config(name))
        if re:  # the anchor student deploys with IoU-aware redundancy elimination
            cfg = cfg.replace(post=cfg.post.replace(redundancy=RedundancyConfig()))
        torch.manual_seed(0)
        tcfg = TrainConfig(epochs=epochs, batch_size=2, lr=0.01, num_workers=0, seed=0, device="cpu", pct_start=0.3)
        res = Trainer(cfg, tcfg, synth_data, tmp_path_factory.mktemp(name.replace("@", "_")), augment=aug,
                      progress=False).fit()
        out[name] = (res.model.eval(), res.history)
    return out


def pytest_collection_modifyitems(config, items):
    """Tests that need the (expensive) trained students run in one xdist worker, so the students
    are trained once per run (with ``pytest -n 2 --dist loadgroup``)."""
    for item in items:
        if "trained_students" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("trained_students"))

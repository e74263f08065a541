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

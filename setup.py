"""Package definition for clean_deploy (console script ``clean-deploy``)."""
from setuptools import find_packages, setup

setup(
    name="clean_deploy",
    version="0.1.0",
    description="Compress LiDAR 3D object detectors (CLEAN: CaKD, masked pruning, IoU-aware RE) "
    "and deploy them to ONNX Runtime / TensorRT.",
    python_requires=">=3.10",
    packages=find_packages(include=["clean_deploy", "clean_deploy.*"]),
    # torch is deliberately unpinned here: CPU installs pin torch==2.13.0 in
    # requirements-cpu.txt; the GPU machine brings its own CUDA torch.
    install_requires=[
        "torch>=2.1",
        "numpy>=1.26",
        "scipy>=1.11",
        "numba>=0.60",
        "shapely>=2.0",
        "matplotlib>=3.8",
        "tqdm>=4.66",
        "typer>=0.12",
    ],
    extras_require={
        "sparse": ["spconv==2.3.8"],
        "export": ["onnx>=1.16", "onnxruntime>=1.20", "onnxscript>=0.1"],
        "prune": ["torch-pruning>=1.4"],
        "test": ["pytest>=8", "pytest-xdist>=3.5"],
    },
    entry_points={"console_scripts": ["clean-deploy=clean_deploy.cli.main:main"]},
)

"""Package definition for clean_deploy (console script ``clean-deploy``).

Wheels carry the native libraries built from ``csrc/`` (``libclean_deploy_kernels.so``, the CPU
training kernels, and ``libclean_deploy_ort.so``, the ONNX Runtime custom ops) as package data in
``clean_deploy/native/lib/``, where :mod:`clean_deploy.native` finds them: ``pip wheel .`` runs
``scripts/build_csrc.sh`` (CMake; reused when ``make setup`` already built them) before packaging.
An editable install (``pip install -e .``) finds them in the checkout's ``build/lib/`` instead.
"""
import shutil
import subprocess
from pathlib import Path

from setuptools import Distribution, find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
NATIVE_LIBS = ("libclean_deploy_kernels.so", "libclean_deploy_ort.so")


class BuildPyWithNative(build_py):
    """build_py that also builds the csrc/ libraries and copies them into the package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        built = ROOT / "build" / "lib"
        if (ROOT / "scripts" / "build_csrc.sh").is_file():
            subprocess.run(["bash", str(ROOT / "scripts" / "build_csrc.sh")], cwd=ROOT, check=True)
        dest = Path(self.build_lib) / "clean_deploy" / "native" / "lib"
        dest.mkdir(parents=True, exist_ok=True)
        for name in NATIVE_LIBS:
            src = built / name
            if not src.is_file():
                raise RuntimeError(f"{src} was not built (scripts/build_csrc.sh needs cmake and a C++17 compiler)")
            shutil.copy2(src, dest / name)


class BinaryDistribution(Distribution):
    """The wheel holds native libraries: tag it for this platform, not py3-none-any."""

    def has_ext_modules(self) -> bool:
        return True


setup(
    name="clean_deploy",
    version="0.1.0",
    description="Compress LiDAR 3D object detectors (CLEAN: CaKD, masked pruning, IoU-aware RE) "
    "and deploy them to ONNX Runtime / TensorRT.",
    python_requires=">=3.10",
    packages=find_packages(include=["clean_deploy", "clean_deploy.*"]),
    cmdclass={"build_py": BuildPyWithNative},
    distclass=BinaryDistribution,
    # setuptools' default build/lib is where scripts/build_csrc.sh puts the libraries
    options={"build": {"build_base": "build/setuptools"}},
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

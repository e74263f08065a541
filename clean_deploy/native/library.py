"""Locating the shared libraries that ``csrc/`` builds (see the package docstring)."""
from __future__ import annotations

import os
from pathlib import Path

BUILD_COMMAND = "bash scripts/build_csrc.sh"
_PACKAGE_LIB = Path(__file__).resolve().parent / "lib"
_REPO = Path(__file__).resolve().parents[2]


def candidates(name: str) -> list[Path]:
    """Where ``name`` is looked for without an environment override: the package, then the checkout."""
    return [_PACKAGE_LIB / name, _REPO / "build" / "lib" / name]


def find_library(name: str, env: str, what: str) -> Path:
    """Path of the library ``name``: ``$env`` when set (it must exist), else the first of
    :func:`candidates` that exists. Raises FileNotFoundError saying how to build it."""
    override = os.environ.get(env)
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"{what} not found: ${env}={override} does not exist (unset it to use the "
                                    f"built one, or build it with `{BUILD_COMMAND}`)")
        return path
    for path in candidates(name):
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{what} is not built ({name} is in none of {', '.join(str(p.parent) for p in candidates(name))}). "
        f"Build it with `{BUILD_COMMAND}` in {_REPO} (or `make setup`); it needs cmake and a C++17 compiler.")

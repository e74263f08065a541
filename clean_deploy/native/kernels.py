"""ctypes binding of ``libclean_deploy_kernels.so`` (csrc/capi/kernels_capi.cpp): rulebooks and the
deterministic sparse convolution forward/backward of the CPU training path.

The functions take raw addresses (``tensor.data_ptr()``) so that this layer needs no torch; the
torch operator over them is :mod:`clean_deploy.models.sparse_ops`. Every call releases the GIL and
runs on an OpenMP team of the given number of threads; results do not depend on it. The library
links ``libgomp.so.1``: loaded after torch (as ``sparse_ops`` does: it imports torch first) it binds
to torch's own libgomp and threads; loaded first, it brings the system's.
"""
from __future__ import annotations

import ctypes
import functools
from pathlib import Path

from clean_deploy.native.library import find_library

LIBRARY_NAME = "libclean_deploy_kernels.so"
#: environment variable that points at a library built elsewhere
LIBRARY_ENV = "CLEAN_DEPLOY_KERNELS_LIB"

_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_INT = ctypes.c_int
_ERR_LEN = 2048


class KernelError(ValueError):
    """A kernel refused its input (the message says which and why)."""


def library_path() -> Path:
    return find_library(LIBRARY_NAME, LIBRARY_ENV, "clean_deploy's CPU kernel library")


@functools.lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(library_path()))
    lib.cd_gemm_isa.restype = ctypes.c_char_p
    lib.cd_gemm_isa.argtypes = []
    sigs = {
        "cd_rulebook_build": [_P, _I64, _P, _INT, _INT, ctypes.POINTER(_P), ctypes.POINTER(_I64), _P, ctypes.c_size_t],
        "cd_rulebook_transpose": [_P, _I64, _I64, _I64, _P, _INT, _P, ctypes.c_size_t],
        "cd_sparse_conv_forward": [_INT, _P, _I64, _I64, _P, _I64, _P, _P, _I64, _I64, _P, _INT, _P, ctypes.c_size_t],
        "cd_voxel_query_pool_eval": [_P, _P, _I64, _P, _P, _I64, _P, _P, _P, _I64, _I64, _P, _P, _P, _P, _P, _P,
                                     _INT, _P, ctypes.c_size_t],
        "cd_segment_max": [_P, _I64, _I64, _P, _I64, _P, _P, _INT, _P, ctypes.c_size_t],
        "cd_sparse_conv_backward": [_INT, _P, _I64, _I64, _P, _I64, _P, _P, _I64, _I64, _P, _P, _P, _P, _INT, _P,
                                    ctypes.c_size_t],
    }
    for name, args in sigs.items():
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = args
    lib.cd_rulebook_take.restype = None
    lib.cd_rulebook_take.argtypes = [_P, _P, _P]
    lib.cd_rulebook_free.restype = None
    lib.cd_rulebook_free.argtypes = [_P]
    return lib


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """True when the library can be found and loaded (checked once per process: every CPU sparse
    conv asks, and a missing library would otherwise be looked for on disk at each call)."""
    try:
        _lib()
        return True
    except (OSError, FileNotFoundError):
        return False


def gemm_isa() -> str:
    """The SGEMM micro-kernel the library runs on this CPU: "avx512", "avx2" or "generic"."""
    return _lib().cd_gemm_isa().decode()


def _check(rc: int, err, what: str) -> None:
    if rc != 0:
        raise KernelError(f"{what}: {err.value.decode(errors='replace')}")


def rulebook_build(indices_ptr: int, n: int, geometry: list[int], subm: bool, threads: int):
    """Build a rulebook; returns (handle, num_out). Pass the handle to :func:`rulebook_take`."""
    handle, num_out = _P(), _I64(0)
    err = ctypes.create_string_buffer(_ERR_LEN)
    geom = (ctypes.c_int64 * 15)(*geometry)
    rc = _lib().cd_rulebook_build(indices_ptr, n, geom, int(bool(subm)), int(threads), ctypes.byref(handle),
                                  ctypes.byref(num_out), err, _ERR_LEN)
    _check(rc, err, "sparse conv rulebook")
    return handle, int(num_out.value)


def rulebook_take(handle, out_indices_ptr: int, neighbors_ptr: int) -> None:
    """Copy the rulebook's output sites (num_out x 4) and neighbour table (num_out x K); frees it."""
    _lib().cd_rulebook_take(handle, out_indices_ptr, neighbors_ptr)


def rulebook_free(handle) -> None:
    _lib().cd_rulebook_free(handle)


def rulebook_transpose(neighbors_ptr: int, num_out: int, kernel_volume: int, num_in: int, out_ptr: int,
                       threads: int) -> None:
    err = ctypes.create_string_buffer(_ERR_LEN)
    rc = _lib().cd_rulebook_transpose(neighbors_ptr, num_out, kernel_volume, num_in, out_ptr, int(threads), err,
                                      _ERR_LEN)
    _check(rc, err, "sparse conv rulebook transpose")


def conv_forward(dtype: int, features: int, num_in: int, cin: int, weight: int, cout: int, bias: int | None,
                 neighbors: int, num_out: int, kernel_volume: int, out: int, threads: int) -> None:
    err = ctypes.create_string_buffer(_ERR_LEN)
    rc = _lib().cd_sparse_conv_forward(dtype, features, num_in, cin, weight, cout, bias, neighbors, num_out,
                                       kernel_volume, out, int(threads), err, _ERR_LEN)
    _check(rc, err, "sparse conv forward")


def conv_backward(dtype: int, features: int, num_in: int, cin: int, weight: int, cout: int, neighbors: int,
                  transposed: int | None, num_out: int, kernel_volume: int, grad_out: int, grad_features: int | None,
                  grad_weight: int | None, grad_bias: int | None, threads: int) -> None:
    err = ctypes.create_string_buffer(_ERR_LEN)
    rc = _lib().cd_sparse_conv_backward(dtype, features, num_in, cin, weight, cout, neighbors, transposed, num_out,
                                        kernel_volume, grad_out, grad_features, grad_weight, grad_bias, int(threads),
                                        err, _ERR_LEN)
    _check(rc, err, "sparse conv backward")


def segment_max(src: int, rows: int, c: int, offsets: int, segments: int, out: int, arg: int, threads: int) -> None:
    """Per segment of rows (``offsets``, int64, segments+1): column max (>= 0) and the first row
    attaining it (-1 where the max is 0). float32 rows x c; out float32, arg int64 (segments x c)."""
    err = ctypes.create_string_buffer(_ERR_LEN)
    rc = _lib().cd_segment_max(src, rows, c, offsets, segments, out, arg, int(threads), err, _ERR_LEN)
    _check(rc, err, "segment max")


def voxel_query_pool_eval(proj: int, coords: int, num_voxels: int, points: int, point_batch: int, num_points: int,
                          volume: int, dims: int, offsets: int, q: int, c: int, wpos: int, scale: int, shift: int,
                          voxel_size: int, pc_min: int, out: int, threads: int) -> None:
    """Fused eval-mode voxel-query pooling (csrc/capi/kernels_capi.cpp documents the arguments)."""
    err = ctypes.create_string_buffer(_ERR_LEN)
    rc = _lib().cd_voxel_query_pool_eval(proj, coords, num_voxels, points, point_batch, num_points, volume, dims,
                                         offsets, q, c, wpos, scale, shift, voxel_size, pc_min, out, int(threads), err,
                                         _ERR_LEN)
    _check(rc, err, "voxel query pooling")

"""The one place spconv is imported: CPU work-arounds and the single-thread guard.

Every other module does ``from clean_deploy.models.sparse import spconv`` (never ``import spconv``)
so that two known problems of spconv 2.3.8's CPU build are handled once:

1. Its sparse-conv backward calls ``torch.cuda.current_stream()`` even on CPU tensors, which fails
   on a CPU-only torch ("Torch not compiled with CUDA enabled"). When CUDA is unavailable we replace
   ``get_current_stream`` (in ``cppcore`` and in the modules that imported the name) with a function
   returning the null stream 0.
2. Its CPU scatter-add races when torch runs more than one intra-op thread, giving wrong features
   (seen: up to 0.67 off a dense ``conv3d``). :func:`sparse_region` runs a block of sparse ops with
   one thread and restores the thread count after; :class:`SparseBlock` does the same for forward
   and backward of a block (autograd runs backward outside any ``with`` block).
"""
from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from typing import Iterator

import torch

# spconv 2.3.8 on torch 2.x: each dense() call warns about non-tuple indexing, and torch.fx logs a
# deprecation notice for spconv's is_fx_tracing() check; neither concerns our users
warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing")
logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)

try:
    import spconv.pytorch as spconv  # noqa: F401  (re-exported)
    import spconv.pytorch.cppcore as _spconv_cppcore
    import spconv.pytorch.hash as _spconv_hash
    import spconv.pytorch.ops as _spconv_ops
    from spconv.pytorch.utils import PointToVoxel  # noqa: F401  (re-exported)

    HAS_SPCONV = True
except ImportError as _err:  # pragma: no cover - exercised only where spconv is missing
    spconv = None  # type: ignore[assignment]
    PointToVoxel = None  # type: ignore[assignment]
    HAS_SPCONV = False
    _IMPORT_ERROR = _err

__all__ = [
    "spconv",
    "PointToVoxel",
    "HAS_SPCONV",
    "require_spconv",
    "sparse_region",
    "SparseBlock",
    "patch_applied",
]

_PATCHED = False


def _null_stream() -> int:
    return 0


def _apply_cpu_patch() -> None:
    """Make spconv's backward usable on a CPU-only torch (see module docstring, item 1)."""
    global _PATCHED
    if not HAS_SPCONV or torch.cuda.is_available() or _PATCHED:
        return
    for mod in (_spconv_cppcore, _spconv_ops, _spconv_hash):
        if hasattr(mod, "get_current_stream"):
            mod.get_current_stream = _null_stream
    _PATCHED = True


_apply_cpu_patch()


def patch_applied() -> bool:
    """True when the CPU stream patch is active (CPU-only torch with spconv installed)."""
    return _PATCHED


def require_spconv() -> None:
    """Raise a clear error when spconv is not installed."""
    if not HAS_SPCONV:
        raise ImportError(
            "clean_deploy needs spconv for sparse convolution and voxelisation: "
            "`pip install spconv==2.3.8` (CPU) or spconv-cu126 on a GPU machine "
            f"(import failed with: {_IMPORT_ERROR})"
        )


_lock = threading.RLock()
_depth = 0
_saved_threads = 0


def _enter_single_thread() -> None:
    global _depth, _saved_threads
    with _lock:
        if _depth == 0:
            _saved_threads = torch.get_num_threads()
            if _saved_threads != 1:
                torch.set_num_threads(1)
        _depth += 1


def _exit_single_thread() -> None:
    global _depth
    with _lock:
        if _depth == 0:
            return
        _depth -= 1
        if _depth == 0 and _saved_threads != 1:
            torch.set_num_threads(_saved_threads)


@contextlib.contextmanager
def sparse_region(device: torch.device | str | None = "cpu") -> Iterator[None]:
    """Run spconv's CPU ops with one torch thread; restore the thread count after.

    Re-entrant (nested regions keep one thread until the outermost exits). On CUDA devices
    nothing changes.
    """
    if device is not None and torch.device(device).type != "cpu":
        yield
        return
    _enter_single_thread()
    try:
        yield
    finally:
        _exit_single_thread()


_bw_lock = threading.Lock()
_bw_saved: int | None = None


def _backward_single_thread() -> None:
    # Always switch when more than one thread runs: a backward that never reached an input gate
    # (torch.autograd.grad w.r.t. inner activations) leaves a saved count behind, and trusting it
    # would let this backward run spconv multi-threaded (wrong gradients).
    global _bw_saved
    with _bw_lock:
        cur = torch.get_num_threads()
        if cur != 1:
            _bw_saved = cur
            torch.set_num_threads(1)


def finish_backward() -> None:
    """Restore the thread count the block's backward switched from. The input gate calls it; call it
    yourself after a partial backward through a :class:`SparseBlock` (``torch.autograd.grad`` w.r.t.
    inner activations never runs that gate, so the process would stay single-threaded). A no-op
    when nothing is pending."""
    global _bw_saved
    with _bw_lock:
        if _bw_saved is not None:
            torch.set_num_threads(_bw_saved)
            _bw_saved = None


class _GateIn(torch.autograd.Function):
    """Identity; its backward (the last step of the block's backward) restores the thread count."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        finish_backward()
        return grad


class _GateOut(torch.autograd.Function):
    """Identity; its backward (the first step of the block's backward) switches to one thread."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        _backward_single_thread()
        return grad


class SparseBlock:
    """Forward *and* backward of a block of spconv CPU ops with one torch thread.

    Usage (e.g. in a sparse backbone's ``forward``)::

        with SparseBlock(voxel_features.device) as blk:
            feats = blk.input(voxel_features)
            x = spconv.SparseConvTensor(feats, coords, shape, batch_size)
            x = self.layers(x)
            x = blk.output(x)            # Tensor or SparseConvTensor; call for every output

    In forward, the ``with`` block runs with one thread. For backward (which autograd runs after
    the ``with`` block has exited) the outputs carry an identity whose backward switches to one
    thread and the input an identity whose backward restores the thread count: the input's
    gradient is the last thing the block computes. The input is made to require grad (a leaf
    copy) when it does not, so the restoring gate is always part of the graph. On CUDA, or with
    grad disabled, the gates are skipped.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._gated = False

    def __enter__(self) -> "SparseBlock":
        self._gated = self.device.type == "cpu" and torch.is_grad_enabled()
        if self.device.type == "cpu":
            _enter_single_thread()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cpu":
            _exit_single_thread()

    def input(self, features: torch.Tensor) -> torch.Tensor:
        if not self._gated:
            return features
        if not features.requires_grad:
            features = features.detach().requires_grad_(True)
        return _GateIn.apply(features)

    def output(self, x):
        if not self._gated:
            return x
        if isinstance(x, torch.Tensor):
            return _GateOut.apply(x) if x.requires_grad else x
        if x.features.requires_grad:  # spconv.SparseConvTensor
            return x.replace_feature(_GateOut.apply(x.features))
        return x

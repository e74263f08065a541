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

Sparse conv backends. :class:`SubMConv3d` and :class:`SparseConv3d` are spconv's modules (same
parameters, state-dict keys and ONNX export) whose forward picks a backend per call
(:func:`sparse_backend`):

- ``clean_deploy`` (the default on CPU): our C++ kernels as a torch operator with a deterministic,
  multi-threaded backward (:mod:`clean_deploy.models.sparse_ops`); rulebooks are built once per
  ``indice_key`` and kept in the tensor's ``indice_dict`` like spconv's. No single-thread guard.
- ``spconv``: spconv itself (always on CUDA; on CPU behind the single-thread guard above).

``CLEAN_DEPLOY_SPARSE_BACKEND=spconv|clean_deploy`` or :func:`set_sparse_backend` force a choice on
CPU; without it the C++ library is used when it is built (``make setup``) and spconv otherwise, with
a warning.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from typing import Iterator, Optional

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
    "SubMConv3d",
    "SparseConv3d",
    "BACKENDS",
    "BACKEND_ENV",
    "sparse_backend",
    "set_sparse_backend",
    "use_sparse_backend",
    "describe_backend",
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
    copy) when it does not, so the restoring gate is always part of the graph. On CUDA, with
    grad disabled, or with the ``clean_deploy`` backend (race-free), the guard and gates are skipped.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._gated = False

    def __enter__(self) -> "SparseBlock":
        # only spconv's CPU path races; our kernels run multi-threaded (sparse_backend)
        self._guard = self.device.type == "cpu" and sparse_backend(self.device) == "spconv"
        self._gated = self._guard and torch.is_grad_enabled()
        if self._guard:
            _enter_single_thread()
        return self

    def __exit__(self, *exc) -> None:
        if self._guard:
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


# ---------------------------------------------------------------------------------- backends
BACKENDS = ("clean_deploy", "spconv")
#: environment variable that forces the CPU sparse conv backend
BACKEND_ENV = "CLEAN_DEPLOY_SPARSE_BACKEND"
_forced: Optional[str] = None
_warned_fallback = False


def _check_backend(name: str, where: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{where}: unknown sparse conv backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return name


def set_sparse_backend(name: Optional[str]) -> None:
    """Force the CPU sparse conv backend ("clean_deploy" or "spconv"); None: back to the default."""
    global _forced
    _forced = None if name is None else _check_backend(name, "set_sparse_backend")


@contextlib.contextmanager
def use_sparse_backend(name: Optional[str]) -> Iterator[None]:
    """``with use_sparse_backend("spconv"): ...``: the CPU backend inside the block."""
    global _forced
    before = _forced
    set_sparse_backend(name)
    try:
        yield
    finally:
        _forced = before


def sparse_backend(device: torch.device | str = "cpu") -> str:
    """The backend sparse convs use on ``device``: always "spconv" on CUDA; on CPU the forced one
    (:func:`set_sparse_backend`, else ``$CLEAN_DEPLOY_SPARSE_BACKEND``), else "clean_deploy" when its
    library is built, else "spconv" (with a warning)."""
    global _warned_fallback
    if torch.device(device).type != "cpu":
        return "spconv"
    choice = _forced or os.environ.get(BACKEND_ENV) or None
    if choice is not None:
        _check_backend(choice, BACKEND_ENV if _forced is None else "set_sparse_backend")
        if choice == "clean_deploy":
            from clean_deploy.native import kernels

            kernels.library_path()  # a clear FileNotFoundError when it is not built
        return choice
    from clean_deploy.native import kernels

    if kernels.available():
        return "clean_deploy"
    if not _warned_fallback:
        _warned_fallback = True
        logging.getLogger(__name__).warning(
            "clean_deploy's CPU kernel library is not built: sparse convs fall back to spconv "
            "(single-threaded, slower); build it with `bash scripts/build_csrc.sh`")
    return "spconv"


def describe_backend(device: torch.device | str = "cpu") -> str:
    """One line for logs: the backend on ``device`` and, for ours, the SIMD kernel and threads."""
    name = sparse_backend(device)
    if name == "clean_deploy":
        from clean_deploy.native import kernels

        return f"clean_deploy (C++ kernels, {kernels.gemm_isa()}, {torch.get_num_threads()} threads)"
    dev = torch.device(device)
    return "spconv" + (" (CPU, single-threaded)" if dev.type == "cpu" else f" ({dev.type})")


_RULEBOOK_PREFIX = "clean_deploy:"


def shared_rulebooks(x) -> dict:
    """The rulebooks of our backend that a forward kept in ``x.indice_dict`` (``x``: any sparse
    tensor of that forward), for another network that convolves the same input sites: a CaKD student
    on its teacher's voxels skips building them (a layer takes one only when it was built for its very
    input sites and geometry, so a different architecture gets correct results, just no saving).
    spconv's own entries are left out: spconv reuses an entry by key alone."""
    from clean_deploy.models.sparse_ops import SparseRulebook

    d = getattr(x, "indice_dict", None) or {}
    return {k: v for k, v in d.items() if k.startswith(_RULEBOOK_PREFIX) and isinstance(v, SparseRulebook)}


def _clean_deploy_conv(mod, x):
    """Forward of a spconv conv module on our operator; the rulebook is cached in
    ``x.indice_dict`` under the module's ``indice_key`` (checked against the indices and geometry)."""
    from clean_deploy.models.sparse_ops import build_rulebook, conv_with_rulebook

    geometry = (tuple(mod.kernel_size), tuple(mod.stride), tuple(mod.padding), tuple(mod.dilation),
                tuple(int(v) for v in x.spatial_shape), bool(mod.subm))
    key = _RULEBOOK_PREFIX + mod.indice_key if mod.indice_key else None
    rb = x.indice_dict.get(key) if key else None
    if rb is None or rb.in_indices is not x.indices or rb.geometry != geometry:
        rb = build_rulebook(x.indices, x.spatial_shape, mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                            mod.subm)
        if key:
            x.indice_dict[key] = rb
    feats = conv_with_rulebook(x.features, mod.weight, mod.bias, rb)
    out = spconv.SparseConvTensor(feats, rb.out_indices, list(rb.out_shape), x.batch_size, indice_dict=x.indice_dict)
    return out


def _spconv_forward(mod, base, x, add_input):
    """spconv's own forward; on CPU, where spconv refuses a conv bias ("cpu don't support act and
    bias"), the bias is added after the bias-free convolution (the same result)."""
    bias = mod.bias
    if bias is None or x.features.is_cuda:
        return base.forward(mod, x, add_input)
    mod.bias = None
    try:
        out = base.forward(mod, x, add_input)
    finally:
        mod.bias = bias
    return out.replace_feature(out.features + bias)


if HAS_SPCONV:

    class SubMConv3d(spconv.SubMConv3d):
        """spconv's SubMConv3d on the backend of :func:`sparse_backend` (same parameters)."""

        def forward(self, input, add_input=None):  # noqa: A002 - spconv's signature
            if add_input is None and sparse_backend(input.features.device) == "clean_deploy":
                return _clean_deploy_conv(self, input)
            return _spconv_forward(self, spconv.SubMConv3d, input, add_input)

    class SparseConv3d(spconv.SparseConv3d):
        """spconv's SparseConv3d on the backend of :func:`sparse_backend` (same parameters)."""

        def forward(self, input, add_input=None):  # noqa: A002 - spconv's signature
            if add_input is None and sparse_backend(input.features.device) == "clean_deploy":
                return _clean_deploy_conv(self, input)
            return _spconv_forward(self, spconv.SparseConv3d, input, add_input)

else:  # pragma: no cover - exercised only where spconv is missing
    SubMConv3d = SparseConv3d = None  # type: ignore[assignment,misc]

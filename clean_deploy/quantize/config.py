"""Typed configuration of post-training quantisation (``clean-deploy quantize``)."""
from __future__ import annotations

from dataclasses import dataclass

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
#: onnxruntime: dense activations uint8 with zero points (ONNX Runtime's x86 int8 kernels are
#: built for u8 x s8; s8 activations leave float Convs between the Q/DQ pairs and run slower than
#: float32); tensorrt: every activation symmetric int8 (zero point 0), the form an explicitly
#: quantised TensorRT engine takes (dense layers only: TensorRT's plugins run the float sparse
#: conv). Weights are per-channel symmetric int8; the ONNX Runtime target's sparse convs are
#: symmetric int8 (SparseConvolutionInt8).
TARGETS = ("onnxruntime", "tensorrt")
KEPT_WEIGHTS = ("float32", "int8")


@dataclass(frozen=True)
class QuantizeConfig:
    #: onnxruntime | tensorrt (see TARGETS)
    target: str = "onnxruntime"
    #: activation range rule: minmax (largest magnitude seen), percentile (of |x|) or entropy (KL
    #: divergence of the int8 histogram, TensorRT's classic calibrator; ONNX Runtime's implementation)
    method: str = "percentile"
    percentile: float = 99.999
    #: calibration frames, taken in order from ``calib_split`` (train: never the split reported on)
    calib_frames: int = 32
    calib_split: str = "train"
    #: layers (ONNX node names) left in float32
    keep_fp32: tuple[str, ...] = ()
    #: how the kept layers' weights are stored: float32, or int8 per output channel behind a
    #: DequantizeLinear (weight-only; the layer still computes in float32, the file shrinks)
    kept_weights: str = "float32"
    #: quantise the dense 2D backbone and head (ONNX Runtime QDQ) and the sparse convs (ours; default:
    #: yes for onnxruntime, no for tensorrt, whose plugin library runs the float sparse conv only)
    dense: bool = True
    sparse: bool | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.sparse is None:
            object.__setattr__(self, "sparse", self.target == "onnxruntime")
        if self.sparse and self.target == "tensorrt":
            raise ValueError("sparse=True with target tensorrt: the TensorRT plugins implement the float32/float16 "
                             "SparseConvolution only (the sparse convs stay float; docs/tensorrt.md)")
        if self.kept_weights not in KEPT_WEIGHTS:
            raise ValueError(f"kept_weights must be one of {', '.join(KEPT_WEIGHTS)}, got {self.kept_weights!r}")
        if self.kept_weights == "int8" and self.target == "tensorrt":
            raise ValueError("kept_weights int8 with target tensorrt: the TensorRT plugins take the sparse conv "
                             "weights as constants (plugins/prepare_onnx.py); use kept_weights float32")
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"method must be one of {', '.join(CALIBRATION_METHODS)}, got {self.method!r}")
        if not 0 < self.percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")
        if self.calib_frames < 1:
            raise ValueError(f"calib_frames must be >= 1, got {self.calib_frames}")

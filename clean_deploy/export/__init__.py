"""Export to ONNX with custom ops (sparse convolution, IoU-aware redundancy elimination) + sidecar."""

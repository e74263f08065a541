"""Deploy-time pipelines: raw point cloud in, boxes out (PyTorch eager; ONNX Runtime later)."""

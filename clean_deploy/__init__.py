"""clean_deploy: compress LiDAR 3D detectors (CLEAN) and deploy them to ONNX Runtime / TensorRT."""
__version__ = "0.1.0"

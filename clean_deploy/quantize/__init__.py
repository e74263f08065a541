"""Post-training int8 quantisation of exported students (docs/custom_ops.md, SparseConvolutionInt8)."""

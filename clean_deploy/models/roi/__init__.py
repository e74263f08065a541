"""Two-stage RoI refinement (Voxel R-CNN-like): proposals, targets, voxel-query pooling, head."""

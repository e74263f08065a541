"""Data: KITTI reader, synthetic LiDAR benchmark, augmentation, voxelisation."""

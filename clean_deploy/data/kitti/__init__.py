"""KITTI on-disk format: label lines, frame reader, dataset."""

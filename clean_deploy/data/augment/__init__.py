"""Training augmentations of a frame's points and LiDAR boxes, one job per module.

Each random augmentation takes a ``np.random.Generator`` and returns ``(points, boxes, param)``
(new arrays, inputs untouched); the deterministic ``flip_x``/``rotate``/``scale`` apply a given
parameter. Boxes are ``(M, 7+)``; only the first 7 columns are transformed.
"""
from clean_deploy.data.augment.global_rotation import global_rotation, rotate
from clean_deploy.data.augment.global_scaling import global_scaling, scale
from clean_deploy.data.augment.gt_sampling import GTDatabase, GTSampler, build_gt_database
from clean_deploy.data.augment.random_flip import flip_x, random_flip_x

__all__ = [
    "GTDatabase",
    "GTSampler",
    "build_gt_database",
    "flip_x",
    "random_flip_x",
    "rotate",
    "global_rotation",
    "scale",
    "global_scaling",
]

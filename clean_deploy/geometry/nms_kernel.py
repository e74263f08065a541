"""Numba kernel of greedy rotated NMS: boxes are visited in score order and each kept box computes
the exact BEV IoU (rectangle clipping) only against the boxes still alive, so heavily
overlapping candidate sets cost ~(candidates x kept) IoUs instead of all pairs."""
from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _corners(b, out):
    c, s = math.cos(b[6]), math.sin(b[6])
    hl, hw = b[3] / 2.0, b[4] / 2.0
    sx = (1.0, -1.0, -1.0, 1.0)
    sy = (1.0, 1.0, -1.0, -1.0)
    for k in range(4):
        lx, ly = sx[k] * hl, sy[k] * hw
        out[k, 0] = b[0] + lx * c - ly * s
        out[k, 1] = b[1] + lx * s + ly * c


@numba.njit(cache=True)
def _clip_area(subject, n, clip, buf_a, buf_b):
    """Area of convex polygon ``subject`` (n ccw vertices) clipped by convex ccw quad ``clip``."""
    for i in range(n):
        buf_a[i, 0] = subject[i, 0]
        buf_a[i, 1] = subject[i, 1]
    m = n
    for e in range(4):
        ax, ay = clip[e, 0], clip[e, 1]
        bx, by = clip[(e + 1) % 4, 0], clip[(e + 1) % 4, 1]
        k = 0
        for i in range(m):
            px, py = buf_a[i, 0], buf_a[i, 1]
            qx, qy = buf_a[(i + 1) % m, 0], buf_a[(i + 1) % m, 1]
            dp = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
            dq = (bx - ax) * (qy - ay) - (by - ay) * (qx - ax)
            if dp >= 0:
                buf_b[k, 0] = px
                buf_b[k, 1] = py
                k += 1
            if (dp >= 0) != (dq >= 0):
                t = dp / (dp - dq)
                buf_b[k, 0] = px + t * (qx - px)
                buf_b[k, 1] = py + t * (qy - py)
                k += 1
        m = k
        if m == 0:
            return 0.0
        for i in range(m):
            buf_a[i, 0] = buf_b[i, 0]
            buf_a[i, 1] = buf_b[i, 1]
    area = 0.0
    for i in range(m):
        j = (i + 1) % m
        area += buf_a[i, 0] * buf_a[j, 1] - buf_a[j, 0] * buf_a[i, 1]
    return abs(area) / 2.0


@numba.njit(cache=True)
def rect_iou_bev(a, b, ca, cb, buf_a, buf_b):
    """Exact BEV IoU of two boxes (x,y,z,l,w,h,yaw) given their precomputed corners."""
    inter = _clip_area(ca, 4, cb, buf_a, buf_b)
    union = a[3] * a[4] + b[3] * b[4] - inter
    return inter / union if union > 0 else 0.0


@numba.njit(cache=True)
def greedy_nms(boxes, labels, same_thresh, cross_thresh, max_keep=-1):
    """Keep mask of greedy NMS over score-sorted boxes (K,7) (float64).

    A kept box suppresses a later box of the same label when their BEV IoU exceeds
    ``same_thresh[label]``, and a box of another label when it exceeds ``cross_thresh`` (use a
    value >= 1 for class-aware NMS, the same value as ``same_thresh`` for class-agnostic NMS).
    ``max_keep`` >= 0 stops once that many boxes are kept (the later ones are dropped): the kept
    boxes are then the first ``max_keep`` of the uncapped result, found without scanning the rest.
    """
    k = boxes.shape[0]
    keep = np.ones(k, dtype=np.bool_)
    kept = 0
    corners = np.empty((k, 4, 2))
    radius = np.empty(k)
    for i in range(k):
        _corners(boxes[i], corners[i])
        radius[i] = 0.5 * math.sqrt(boxes[i, 3] ** 2 + boxes[i, 4] ** 2)
    buf_a = np.empty((16, 2))
    buf_b = np.empty((16, 2))
    for i in range(k):
        if not keep[i]:
            continue
        if max_keep >= 0 and kept >= max_keep:
            keep[i:] = False
            break
        kept += 1
        for j in range(i + 1, k):
            if not keep[j]:
                continue
            thr = same_thresh[labels[i]] if labels[i] == labels[j] else cross_thresh
            if thr >= 1.0:
                continue
            dx = boxes[i, 0] - boxes[j, 0]
            dy = boxes[i, 1] - boxes[j, 1]
            r = radius[i] + radius[j]
            if dx * dx + dy * dy > r * r:
                continue
            if rect_iou_bev(boxes[i], boxes[j], corners[i], corners[j], buf_a, buf_b) > thr:
                keep[j] = False
    return keep

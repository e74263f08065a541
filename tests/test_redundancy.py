"""IoU-aware redundancy elimination: rescoring, planted duplicates removed, distinct boxes kept."""
import math

import pytest
import torch

from clean_deploy.models.redundancy import eliminate_frame, redundancy_elimination
from clean_deploy.models.config import PostProcessConfig, RedundancyConfig
from clean_deploy.models.postprocess import postprocess

CAR, PED, CYC = 0, 1, 2


def _scene():
    boxes = torch.tensor([
        [10.0, 0.0, -0.9, 3.9, 1.6, 1.5, 0.0],    # 0 car A
        [10.2, 0.1, -0.9, 3.9, 1.6, 1.5, 0.05],   # 1 duplicate of A, worse quality
        [25.0, 5.0, -0.9, 4.1, 1.7, 1.5, 1.0],    # 2 distinct car
        [15.0, -4.0, -0.8, 0.8, 0.6, 1.7, 0.0],   # 3 pedestrian
        [15.05, -4.0, -0.8, 0.9, 0.6, 1.7, 0.1],  # 4 same object called cyclist (cross-class dup)
        [40.0, -8.0, -0.8, 3.9, 1.6, 1.5, 0.0],   # 5 low-quality false positive
        [12.0, 8.0, -0.8, 1.8, 0.6, 1.7, 0.0],    # 6 distinct cyclist
    ])
    scores = torch.tensor([0.80, 0.90, 0.60, 0.70, 0.50, 0.75, 0.55])
    labels = torch.tensor([CAR, CAR, CAR, PED, CYC, CAR, CYC])
    iou = torch.tensor([0.85, 0.40, 0.70, 0.70, 0.30, 0.05, 0.60])
    return boxes, scores, labels, iou


def test_rescoring_orders_by_quality_and_removes_duplicates():
    boxes, scores, labels, iou = _scene()
    cfg = RedundancyConfig(beta=(0.7, 0.7, 0.7), score_thresh=0.05, min_iou=(0.1, 0.1, 0.1),
                           nms_thresh=(0.1, 0.1, 0.1), cross_class_thresh=0.3, max_output=8)
    r = eliminate_frame(boxes, scores, labels, iou, cfg)
    n = r["valid"]
    kept = r["boxes"][:n]
    # kept: car A (not its higher-scored but worse-localised duplicate), distinct car, the
    # pedestrian (better quality than its cyclist twin), distinct cyclist; the FP (iou .05) is gone
    expect = boxes[[0, 3, 2, 6]]
    q = scores ** 0.3 * iou ** 0.7
    order = [0, 3, 2, 6]
    assert q[order].tolist() == sorted(q[order].tolist(), reverse=True)
    assert n == 4
    torch.testing.assert_close(kept, expect)
    torch.testing.assert_close(r["scores"][:n], q[order])
    assert r["labels"][:n].tolist() == [CAR, PED, CAR, CYC]
    # static shapes: zero padding and label -1 beyond the valid count
    assert r["boxes"].shape == (8, 7) and (r["labels"][n:] == -1).all() and (r["boxes"][n:] == 0).all()


def test_plain_nms_keeps_cross_class_duplicate_re_does_not():
    boxes, scores, labels, iou = _scene()
    plain = postprocess({"boxes": boxes[None], "scores": scores[None], "labels": labels[None], "iou": None},
                        PostProcessConfig(score_thresh=0.05, nms_thresh=0.1))[0]
    assert {3, 4} <= {int(i) for i in torch.cdist(plain["boxes"][:, :2], boxes[:, :2]).argmin(1)}
    re = postprocess({"boxes": boxes[None], "scores": scores[None], "labels": labels[None], "iou": iou[None]},
                     PostProcessConfig(redundancy=RedundancyConfig(score_thresh=0.05)))[0]
    hit = {int(i) for i in torch.cdist(re["boxes"][:, :2], boxes[:, :2]).argmin(1)}
    assert 3 in hit and 4 not in hit and 5 not in hit
    # distinct boxes are all kept
    assert {0, 2, 6} <= hit


def test_without_iou_branch_and_padding_and_empty():
    boxes, scores, labels, _ = _scene()
    cfg = RedundancyConfig(score_thresh=0.05, cross_class_thresh=1.0, max_output=3)
    r = eliminate_frame(boxes, scores, labels, None, cfg)
    assert r["valid"] == 3  # capped at max_output
    assert torch.equal(r["scores"], torch.tensor([0.90, 0.75, 0.70]))
    e = eliminate_frame(boxes[:0], scores[:0], labels[:0], None, cfg)
    assert e["valid"] == 0 and e["boxes"].shape == (3, 7)
    dec = {"boxes": boxes[None], "scores": scores[None], "labels": labels[None], "iou": None,
           "valid": torch.zeros(1, len(boxes), dtype=torch.bool)}
    assert len(redundancy_elimination(dec, cfg)[0]["boxes"]) == 0

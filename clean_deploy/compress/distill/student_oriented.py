"""Student-oriented distillation: the student's own confident boxes become RoIs of the teacher's
second stage, whose IoU-guided confidence is the target of the student's class score there. The
student learns the teacher's category judgement exactly where it fires, false positives included."""
from __future__ import annotations

import torch

from clean_deploy.compress.distill.response_kd import bernoulli_kl
from clean_deploy.geometry.nms import nms_rotated


@torch.no_grad()
def select_student_candidates(decoded: dict, score_thresh: float, nms_thresh: float, max_per_frame: int):
    """Per frame: candidates above ``score_thresh`` after class-agnostic NMS, at most
    ``max_per_frame``. Returns rois (N,R,7), indices into the candidate list (N,R), valid (N,R)."""
    boxes, scores = decoded["boxes"], decoded["scores"]
    n = boxes.shape[0]
    rois = boxes.new_zeros(n, max_per_frame, 7)
    index = torch.zeros(n, max_per_frame, dtype=torch.long, device=boxes.device)
    valid = torch.zeros(n, max_per_frame, dtype=torch.bool, device=boxes.device)
    for b in range(n):
        cand = (scores[b] >= score_thresh).nonzero(as_tuple=True)[0]
        if len(cand) == 0:
            continue
        cand = cand[scores[b, cand].argsort(descending=True)[: 8 * max_per_frame]]
        bx = boxes[b, cand, :7].detach()
        bx = torch.cat([bx[:, :3], bx[:, 3:6].clamp(min=0.1), bx[:, 6:7]], 1)
        keep = nms_rotated(bx, scores[b, cand], nms_thresh, post_max=max_per_frame)
        m = len(keep)
        rois[b, :m] = bx[keep]
        index[b, :m] = cand[keep]
        valid[b, :m] = True
    return rois, index, valid


def student_oriented_loss(student_decoded: dict, teacher, teacher_out: dict, score_thresh: float,
                          nms_thresh: float, max_per_frame: int) -> torch.Tensor:
    """Bernoulli KL between the teacher's second-stage confidence on the student's candidates and
    the student's class probability of those candidates (mean over candidates)."""
    rois, index, valid = select_student_candidates(student_decoded, score_thresh, nms_thresh, max_per_frame)
    logits = student_decoded["logits"].gather(1, index)
    if not valid.any():
        return logits.sum() * 0.0
    q_t, _ = teacher.roi_head.score_boxes(teacher_out["sparse"], rois, valid)
    kl = bernoulli_kl(logits, q_t)
    return (kl * valid).sum() / valid.sum()

"""Box coders: residual encoding of LiDAR boxes relative to anchors (SECOND/OpenPCDet style)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

#: largest decoded size ratio to the anchor is exp(5) ~ 148
_MAX_LOG_RATIO = 5.0


@dataclass(frozen=True)
class ResidualCoder:
    """Encode ``(x,y,z,l,w,h,yaw)`` against anchors of the same layout.

    Centre offsets are divided by the anchor's BEV diagonal (x, y) and height (z), sizes are log
    ratios, and the angle is the plain residual (``sincos=False``) or the difference of
    (cos, sin) (``sincos=True``, 8 outputs). Extra columns beyond 7 (e.g. velocities) are coded as
    plain differences.
    """

    sincos: bool = False

    @property
    def code_size(self) -> int:
        return 8 if self.sincos else 7

    def encode(self, boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        xa, ya, za, la, wa, ha, ra = anchors[..., :7].unbind(-1)
        xg, yg, zg, lg, wg, hg, rg = boxes[..., :7].unbind(-1)
        la, wa, ha = la.clamp(min=1e-5), wa.clamp(min=1e-5), ha.clamp(min=1e-5)
        lg, wg, hg = lg.clamp(min=1e-5), wg.clamp(min=1e-5), hg.clamp(min=1e-5)
        diag = torch.sqrt(la ** 2 + wa ** 2)
        out = [(xg - xa) / diag, (yg - ya) / diag, (zg - za) / ha,
               torch.log(lg / la), torch.log(wg / wa), torch.log(hg / ha)]
        if self.sincos:
            out += [torch.cos(rg) - torch.cos(ra), torch.sin(rg) - torch.sin(ra)]
        else:
            out.append(rg - ra)
        extra = boxes[..., 7:] - anchors[..., 7:boxes.shape[-1]] if boxes.shape[-1] > 7 else None
        enc = torch.stack(out, -1)
        return torch.cat([enc, extra], -1) if extra is not None else enc

    def decode(self, codes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        xa, ya, za, la, wa, ha, ra = anchors[..., :7].unbind(-1)
        n = 8 if self.sincos else 7
        t = codes[..., :n].unbind(-1)
        diag = torch.sqrt(la ** 2 + wa ** 2)
        x = t[0] * diag + xa
        y = t[1] * diag + ya
        z = t[2] * ha + za
        # size codes are log ratios; clamp so an untrained head cannot overflow to inf
        l = torch.exp(t[3].clamp(max=_MAX_LOG_RATIO)) * la
        w = torch.exp(t[4].clamp(max=_MAX_LOG_RATIO)) * wa
        h = torch.exp(t[5].clamp(max=_MAX_LOG_RATIO)) * ha
        if self.sincos:
            r = torch.atan2(t[7] + torch.sin(ra), t[6] + torch.cos(ra))
        else:
            r = t[6] + ra
        dec = torch.stack([x, y, z, l, w, h, r], -1)
        if codes.shape[-1] > n:
            dec = torch.cat([dec, codes[..., n:] + anchors[..., 7:7 + codes.shape[-1] - n]], -1)
        return dec

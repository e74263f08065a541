"""Voxel-query RoI grid pooling: grid points inside each rotated RoI gather the non-empty voxels of
a sparse feature map around them (a fixed neighbourhood looked up through a dense index volume),
encode (voxel feature, relative position) with a shared layer and max-pool per grid point."""
from __future__ import annotations

import itertools

import torch
from torch import nn

from clean_deploy.geometry.boxes import rotate_points_z_batch


class SegmentMax(torch.autograd.Function):
    """``out[p, c] = max(0, max over the rows of segment p of src[r, c])``: rows
    ``offsets[p]:offsets[p+1]`` form segment p (contiguous, as the found voxels of a grid point
    are). The C++ kernel also records the row that attains each max, so backward routes each
    output's gradient to that row with one scatter.

    What it replaces, ``scatter_reduce(..., "amax")``, computes the same forward, but torch's amax
    backward finds the winners again with several (rows x C)-sized gathers, comparisons and
    divisions (splitting ties evenly): a third of a teacher training step. The gradients agree
    except on exact ties of positive values; maxima of 0 get no gradient in either (src comes from
    a ReLU, whose gradient is 0 there)."""

    @staticmethod
    def forward(ctx, src: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        from clean_deploy.native import kernels

        src = src.contiguous()
        rows, c = src.shape
        n = offsets.shape[0] - 1
        out = src.new_empty((n, c))
        arg = torch.empty((n, c), dtype=torch.long)
        if n and c:
            kernels.segment_max(src.data_ptr(), rows, c, offsets.data_ptr(), n, out.data_ptr(), arg.data_ptr(),
                                torch.get_num_threads())
        ctx.save_for_backward(arg)
        ctx.rows = rows
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (arg,) = ctx.saved_tensors
        c = arg.shape[1]
        valid = arg >= 0
        target = (arg * c + torch.arange(c))[valid]
        g_src = grad.new_zeros(ctx.rows * c)
        g_src[target] = grad[valid]  # every (row, channel) wins at most one segment: no collisions
        return g_src.view(ctx.rows, c), None


def segment_max(src: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Max (>= 0) over contiguous row segments (see :class:`SegmentMax`); the C++ kernel for float32
    CPU tensors when its library is built, else torch's ``scatter_reduce``."""
    n = offsets.shape[0] - 1
    if src.device.type == "cpu" and src.dtype == torch.float32:
        from clean_deploy.native import kernels

        if kernels.available():
            return SegmentMax.apply(src, offsets.contiguous())
    seg = torch.repeat_interleave(torch.arange(n, device=src.device), offsets[1:] - offsets[:-1])
    return src.new_zeros(n, src.shape[1]).scatter_reduce(0, seg[:, None].expand(-1, src.shape[1]), src, "amax",
                                                          include_self=True)


def roi_grid_points(rois: torch.Tensor, grid: int) -> torch.Tensor:
    """(K,7) RoIs -> (K, grid^3, 3) points at the centres of a grid x grid x grid lattice."""
    steps = (torch.arange(grid, dtype=rois.dtype, device=rois.device) + 0.5) / grid - 0.5
    gx, gy, gz = torch.meshgrid(steps, steps, steps, indexing="ij")
    unit = torch.stack([gx, gy, gz], -1).reshape(1, -1, 3)  # (1,G3,3) in [-0.5,0.5]
    local = unit * rois[:, None, 3:6]
    return rotate_points_z_batch(local, rois[:, 6]) + rois[:, None, 0:3]


class VoxelQueryPool(nn.Module):
    """Pool one sparse scale onto RoI grid points.

    ``voxel_size``: metres per voxel at this scale (x, y, z); ``pc_min``: range minimum.
    For each grid point the voxels at integer offsets within ``query_range`` (z, y, x) of its
    own voxel are candidates; empty ones are masked. Output (K, G3, out_channels).
    """

    def __init__(self, in_channels: int, out_channels: int, voxel_size, pc_min, query_range) -> None:
        super().__init__()
        self.feat = nn.Linear(in_channels, out_channels, bias=False)
        self.pos = nn.Linear(3, out_channels, bias=False)
        self.norm = nn.BatchNorm1d(out_channels, eps=1e-3)
        self.out = nn.Sequential(nn.Linear(out_channels, out_channels, bias=False),
                                 nn.BatchNorm1d(out_channels, eps=1e-3), nn.ReLU())
        self.register_buffer("voxel_size", torch.tensor(voxel_size, dtype=torch.float32), persistent=False)
        self.register_buffer("pc_min", torch.tensor(pc_min, dtype=torch.float32), persistent=False)
        rz, ry, rx = query_range
        offs = list(itertools.product(range(-rz, rz + 1), range(-ry, ry + 1), range(-rx, rx + 1)))
        self.register_buffer("offsets", torch.tensor(offs, dtype=torch.long), persistent=False)  # (Q,3) z,y,x
        self.out_channels = out_channels

    def _fused_eval(self, proj: torch.Tensor, points: torch.Tensor | None = None) -> bool:
        """Frozen, gradient-free float32 CPU pooling (a CaKD teacher, inference) runs fused in C++
        (equal to the torch path up to float rounding: BN folded, pos(rel) as three products)."""
        if self.training or torch.is_grad_enabled() or proj.device.type != "cpu" or proj.dtype != torch.float32:
            return False
        if points is not None and points.dtype != torch.float32:
            return False
        from clean_deploy.native import kernels

        return kernels.available()

    def _pool_eval(self, proj: torch.Tensor, indices: torch.Tensor, points: torch.Tensor, batch_idx: torch.Tensor,
                   volume: torch.Tensor) -> torch.Tensor:
        """max over the found voxels of relu(BN(proj + pos(rel))) with BN's running statistics, fused
        in C++ (the candidate lookup too)."""
        from clean_deploy.native import kernels

        bn = self.norm
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).float().contiguous()
        shift = (bn.bias - bn.running_mean * scale).float().contiguous()
        k, g3, _ = points.shape
        c = proj.shape[1]
        proj, idx = proj.contiguous(), indices.int().contiguous()
        pts = points.reshape(-1, 3).float().contiguous()
        pb = batch_idx.long().repeat_interleave(g3).contiguous()
        vol = volume.contiguous()
        dims = torch.tensor(vol.shape, dtype=torch.long)
        offs = self.offsets.contiguous()
        wpos = self.pos.weight.float().contiguous()
        vs, pmin = self.voxel_size.float().contiguous(), self.pc_min.float().contiguous()
        out = proj.new_empty((k * g3, c))
        if out.numel():
            kernels.voxel_query_pool_eval(proj.data_ptr(), idx.data_ptr(), proj.shape[0], pts.data_ptr(), pb.data_ptr(),
                                          k * g3, vol.data_ptr(), dims.data_ptr(), offs.data_ptr(), offs.shape[0], c,
                                          wpos.data_ptr(), scale.data_ptr(), shift.data_ptr(), vs.data_ptr(),
                                          pmin.data_ptr(), out.data_ptr(), torch.get_num_threads())
        return out

    @staticmethod
    def _volume(sparse, coords: torch.Tensor) -> torch.Tensor:
        """Dense (B, D, H, W) index of the scale's voxels (-1: empty). Kept in the sparse tensor's
        ``indice_dict`` (shared by a backbone forward's outputs) for the other poolings of the same
        features: a CaKD step pools the teacher's features three times (proposals, GT, student boxes)."""
        d, h, w = sparse.spatial_shape
        cache = getattr(sparse, "indice_dict", None)
        key = f"clean_deploy:voxel_volume:{sparse.batch_size}x{d}x{h}x{w}"
        # only gradient-free pooling repeats on the same features; kept there, the volume lives as
        # long as the backbone's outputs (a dense grid: large at fine scales)
        use_cache = isinstance(cache, dict) and not torch.is_grad_enabled()
        hit = cache.get(key) if use_cache else None
        if hit is not None and hit[0] is sparse.indices:
            return hit[1]
        volume = torch.full((sparse.batch_size, d, h, w), -1, dtype=torch.long, device=coords.device)
        volume[coords[:, 0], coords[:, 1], coords[:, 2], coords[:, 3]] = torch.arange(len(coords), device=coords.device)
        if use_cache:
            cache[key] = (sparse.indices, volume)
        return volume

    def forward(self, sparse, points: torch.Tensor, batch_idx: torch.Tensor) -> torch.Tensor:
        """``sparse``: SparseConvTensor; ``points`` (K,G3,3); ``batch_idx`` (K,) frame of each RoI."""
        k, g3, _ = points.shape
        coords = sparse.indices.long()  # (V,4) b,z,y,x
        d, h, w = sparse.spatial_shape
        volume = self._volume(sparse, coords)
        if self._fused_eval(sparse.features, points):
            proj = self.feat(sparse.features)
            return self.out(self._pool_eval(proj, sparse.indices, points, batch_idx, volume)).view(k, g3, -1)
        vs, pmin = self.voxel_size.to(points.dtype), self.pc_min.to(points.dtype)
        cell = ((points - pmin) / vs).floor().long()  # (K,G3,3) x,y,z
        zyx = cell[..., [2, 1, 0]][:, :, None, :] + self.offsets[None, None]  # (K,G3,Q,3)
        inb = ((zyx[..., 0] >= 0) & (zyx[..., 0] < d) & (zyx[..., 1] >= 0) & (zyx[..., 1] < h)
               & (zyx[..., 2] >= 0) & (zyx[..., 2] < w))
        zc = zyx[..., 0].clamp(0, d - 1)
        yc = zyx[..., 1].clamp(0, h - 1)
        xc = zyx[..., 2].clamp(0, w - 1)
        bi = batch_idx[:, None, None].expand_as(zc)
        vidx = volume[bi, zc, yc, xc]
        found = inb & (vidx >= 0)  # (K,G3,Q)
        proj = self.feat(sparse.features)  # (V,C) projected once per voxel
        sel = vidx[found]
        centres = (coords[sel][:, [3, 2, 1]].to(points.dtype) + 0.5) * vs + pmin
        rel = centres - points[:, :, None, :].expand(-1, -1, found.shape[2], -1)[found]
        enc = proj[sel] + self.pos(rel)  # (F,C)
        # BN needs two rows in training; a frame whose RoIs see at most one voxel skips it
        enc = torch.relu(self.norm(enc) if (enc.shape[0] > 1 or not self.training) else enc)
        c = enc.shape[1]
        # max over each grid point's found voxels without materialising the (K*G3*Q, C) block: the
        # found rows are in (RoI, grid point, offset) order, so each grid point's rows are contiguous;
        # enc >= 0, so the max is 0 where no voxel was found
        offsets = torch.zeros(k * g3 + 1, dtype=torch.long, device=enc.device)
        offsets[1:] = found.view(k * g3, -1).sum(1).cumsum(0)
        pooled = segment_max(enc, offsets)
        return self.out(pooled).view(k, g3, c)

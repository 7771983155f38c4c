"""Exact, deterministic SVD with a smoothed backward, and the state normalisations built on it.

`torch.linalg.svd`'s gradient divides by `s_j^2 - s_i^2`; a context state summed over fewer tokens than its
size is rank-deficient (many zero singular values) and the gradient becomes inf/NaN on every step. The
backward here is torch's formula with `1 / x` replaced by `x / (x^2 + eps^2)` (and `1 / s` by
`s / (s^2 + eps_s^2)`), `eps` relative to the largest `s^2`: identical on well-conditioned matrices, finite on
degenerate ones.
"""

from __future__ import annotations

import torch


def _smooth_inverse(x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return x / (x * x + eps * eps)


class _SmoothSVD(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, eps: float):
        u, s, vh = torch.linalg.svd(a, full_matrices=False)
        ctx.save_for_backward(u, s, vh)
        ctx.eps = eps
        ctx.shape = a.shape
        return u, s, vh

    @staticmethod
    def backward(ctx, gu, gs, gvh):
        u, s, vh = ctx.saved_tensors
        m, n = ctx.shape[-2], ctx.shape[-1]
        k = s.shape[-1]
        s2 = s * s
        scale = s2.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(s.dtype).tiny)  # (..., 1)
        eps = ctx.eps * scale
        diff = s2.unsqueeze(-2) - s2.unsqueeze(-1)  # E_ij = s_j^2 - s_i^2
        inv_e = _smooth_inverse(diff, eps.unsqueeze(-1))
        inv_e.diagonal(dim1=-2, dim2=-1).zero_()
        inv_s = _smooth_inverse(s, ctx.eps * scale.sqrt())
        v = vh.mT
        gv = gvh.mT if gvh is not None else None

        inner = torch.zeros(*s.shape[:-1], k, k, dtype=s.dtype, device=s.device)
        if gu is not None:
            uhgu = u.mT @ gu
            inner = inner + (uhgu - uhgu.mT) * inv_e * s.unsqueeze(-2)
        if gv is not None:
            vhgv = v.mT @ gv
            inner = inner + s.unsqueeze(-1) * (vhgv - vhgv.mT) * inv_e
        if gs is not None:
            inner = inner + torch.diag_embed(gs)

        if m > k and gu is not None:
            ga = u @ inner
            gu_sinv = gu * inv_s.unsqueeze(-2)
            ga = ga + gu_sinv - u @ (u.mT @ gu_sinv)
            ga = ga @ vh
        elif n > k and gv is not None:
            ga = inner @ vh
            sinv_gvh = gvh * inv_s.unsqueeze(-1)
            ga = ga + sinv_gvh - (sinv_gvh @ v) @ vh
            ga = u @ ga
        else:
            ga = u @ inner @ vh
        return ga, None


def smooth_svd(a: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD `a = U diag(S) Vh` (batched) whose backward stays finite for degenerate spectra."""
    if torch.is_grad_enabled() and a.requires_grad:
        return _SmoothSVD.apply(a, eps)
    return torch.linalg.svd(a, full_matrices=False)


def svd_factors(state: torch.Tensor, rank: int, grad_eps: float, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-`rank` orthogonal factors of `N = U_k V_k^T` for a batch of states `(b, d_r, r)`.

    Returns `(U_k, V_k)` of shapes `(b, d_r, k)` and `(b, r, k)`. Directions whose singular value is below
    `tol * s_max` (or exactly zero) are zeroed in both factors: an empty or short context contributes no
    arbitrary directions.
    """
    u, s, vh = smooth_svd(state, grad_eps)
    u, s, v = u[..., :rank], s[..., :rank], vh[..., :rank, :].mT
    keep = (s > tol * s[..., :1]) & (s > 0)
    mask = keep.to(u.dtype).unsqueeze(-2)
    return u * mask, v * mask


def normalize_state(state: torch.Tensor, normalization: str, rank: int, grad_eps: float, tol: float):
    """Normalise states `(b, d_r, r)`: svd -> `(U_k, V_k)` with `N = U_k V_k^T`; otherwise `(N, None)`."""
    if normalization == "svd":
        return svd_factors(state, rank, grad_eps, tol)
    if normalization == "frobenius":
        norm = torch.linalg.matrix_norm(state, ord="fro", keepdim=True)
        return state / norm.clamp_min(torch.finfo(state.dtype).tiny), None
    return state, None

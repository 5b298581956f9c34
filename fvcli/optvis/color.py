"""Color: from the optimized, decorrelated space to RGB in [0, 1] (the article's "decorrelated color space").

Neighbouring color channels of natural images are strongly correlated, so a gradient step on raw RGB mostly moves
brightness. The params optimize in a space whitened by the square root of the ImageNet color covariance and map
back with `to_rgb`; then a sigmoid (or lucid's smooth clamp) keeps the values in [0, 1]. Every parameterization
(pixel, Fourier, shared, MACO) and the spectra of natural images (fvcli/optvis/spectrum.py, the inverse map) share
this one matrix, which is why it lives in a file of its own.
"""
from __future__ import annotations

import numpy as np
import torch

# lucid optvis/param/color.py: square root of the ImageNet color covariance ("svd_sqrt"), normalised by its largest
# column norm (0.46195238) so that the decorrelated space has unit scale.
COLOR_CORRELATION_SVD_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
COLOR_CORRELATION_NORMALIZED = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))
COLOR_MEAN = (0.48, 0.46, 0.41)  # lucid: added only when no sigmoid is used


def to_rgb(t: torch.Tensor, decorrelate: bool, sigmoid: bool) -> torch.Tensor:
    """(B, 3, H, W) unconstrained -> (B, 3, H, W) in [0, 1]."""
    if decorrelate:
        m = torch.as_tensor(COLOR_CORRELATION_NORMALIZED, dtype=t.dtype, device=t.device)
        t = torch.matmul(m, t.flatten(2)).view(t.shape)  # rgb = M @ t per pixel: (3, 3) @ (B, 3, H*W)
    if sigmoid:
        return torch.sigmoid(t)
    mean = torch.tensor(COLOR_MEAN, dtype=t.dtype, device=t.device).view(1, 3, 1, 1)
    return (torch.tanh(2 * (t + mean) - 1) + 1) / 2  # lucid's constrain_L_inf(2t-1)/2+0.5, a smooth clamp

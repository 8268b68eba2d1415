"""Metric formulas that need no pretrained network, as the peers define them (see the README).

Videos are uint8 arrays (frames, H, W, 3). Per-frame values are averaged over frames.
"""

from __future__ import annotations

import numpy as np

PSNR_CAP = 100.0  # dB, for identical frames (where PSNR is infinite)


def _check(pred: np.ndarray, truth: np.ndarray) -> None:
    if pred.shape != truth.shape:
        raise ValueError(f"videos differ in shape: {pred.shape} vs {truth.shape}")


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    """Plain mean absolute error on the [0, 1] scale."""
    _check(pred, truth)
    return float(np.abs(pred.astype(np.float64) - truth.astype(np.float64)).mean() / 255.0)


def l1_disco(pred: np.ndarray, truth: np.ndarray) -> float:
    """DisCo's L1: mean absolute error on 0-255 pixels divided by H x W (hence values near 1e-5)."""
    _check(pred, truth)
    height, width = pred.shape[1:3]
    return float(np.abs(pred.astype(np.float64) - truth.astype(np.float64)).mean() / (height * width))


def psnr(pred: np.ndarray, truth: np.ndarray, cap: float = PSNR_CAP) -> float:
    """Mean over frames of PSNR on uint8 (peak 255), each frame capped at ``cap`` dB."""
    _check(pred, truth)
    mse = ((pred.astype(np.float64) - truth.astype(np.float64)) ** 2).reshape(len(pred), -1).mean(1)
    with np.errstate(divide="ignore"):
        values = np.where(mse == 0, cap, 10 * np.log10(255.0**2 / np.maximum(mse, 1e-300)))
    return float(np.minimum(values, cap).mean())


def ssim(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean over frames of SSIM on grayscale uint8 images (DisCo's protocol, skimage defaults)."""
    import cv2
    from skimage.metrics import structural_similarity

    _check(pred, truth)
    values = [
        structural_similarity(cv2.cvtColor(p, cv2.COLOR_RGB2GRAY), cv2.cvtColor(t, cv2.COLOR_RGB2GRAY), data_range=255)
        for p, t in zip(pred, truth)
    ]
    return float(np.mean(values))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples): FVD, FID."""
    from scipy import linalg

    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Fréchet distance needs at least two samples in each set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))

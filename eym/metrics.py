"""Metric formulas that need no pretrained network, as the peers define them (see docs/method.md, Metrics).

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


# -- inside a region ----------------------------------------------------------------------------------
# On a static scene most pixels are background that any editor keeps; these give a metric inside a
# per-frame region (bool masks (frames, H, W)), e.g. the person or the rest. Frames whose region is
# empty are left out; NaN when every frame's is.


def _region_frames(mask: np.ndarray) -> np.ndarray:
    return np.where(mask.reshape(len(mask), -1).any(1))[0]


def region_mae(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute error on the [0, 1] scale over the region's pixels, averaged over frames."""
    _check(pred, truth)
    diff = np.abs(pred.astype(np.float64) - truth.astype(np.float64)).mean(-1) / 255.0
    values = [diff[f][mask[f]].mean() for f in _region_frames(mask)]
    return float(np.mean(values)) if values else float("nan")


def region_l1_disco(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """DisCo's L1 (0-255 error divided by H x W) over the region's pixels."""
    height, width = pred.shape[1:3]
    return region_mae(pred, truth, mask) * 255.0 / (height * width)


def region_psnr(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, cap: float = PSNR_CAP) -> float:
    """PSNR (peak 255) of the region's pixels, per frame (capped), averaged over frames."""
    _check(pred, truth)
    sq = ((pred.astype(np.float64) - truth.astype(np.float64)) ** 2).mean(-1)
    values = []
    for f in _region_frames(mask):
        mse = sq[f][mask[f]].mean()
        values.append(cap if mse == 0 else min(cap, 10 * np.log10(255.0**2 / mse)))
    return float(np.mean(values)) if values else float("nan")


def region_ssim(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """The SSIM map (grayscale, skimage defaults) averaged over the region's pixels, then over frames."""
    import cv2
    from skimage.metrics import structural_similarity

    _check(pred, truth)
    values = []
    for f in _region_frames(mask):
        a, b = (cv2.cvtColor(x[f], cv2.COLOR_RGB2GRAY) for x in (pred, truth))
        _, full = structural_similarity(a, b, data_range=255, full=True)
        values.append(full[mask[f]].mean())
    return float(np.mean(values)) if values else float("nan")


def temporal_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute difference (0-1 scale) between the frame-to-frame changes of a video and those of
    its ground truth: a flickering edit (or one that does not move as it should) scores high, even
    when each frame alone is close."""
    _check(pred, truth)
    if len(pred) < 2:
        return float("nan")
    change = np.diff(pred.astype(np.float64), axis=0) - np.diff(truth.astype(np.float64), axis=0)
    return float(np.abs(change).mean() / 255.0)

"""Long clips in overlapping windows: at every DDIM step each window of ``frames`` consecutive frames is
predicted on its own and the overlapping predictions are fused, weighted down towards a window's edges.

This is MimicMotion's progressive latent fusion done on the noise prediction: a DDIM step is linear in
it frame by frame, so fusing the predictions equals fusing the windows' stepped latents, and each frame
keeps one trajectory. Attention (RCA, the temporal layers) sees one window; memory is one window's; time
grows with the number of windows. A clip no longer than a window takes the unwindowed path, unchanged.
"""

from __future__ import annotations

import torch


def window_starts(count: int, frames: int, overlap: int) -> list[int]:
    """First frame of each window: every ``frames - overlap`` frames, the last one ending at the clip's end."""
    if count <= frames:
        return [0]
    stride = max(1, frames - overlap)
    return sorted(set(range(0, count - frames, stride)) | {count - frames})


def _ramp(length: int) -> torch.Tensor:
    return torch.arange(1, length + 1, dtype=torch.float64) / (length + 1)


def fusion_weights(count: int, frames: int, overlap: int) -> torch.Tensor:
    """(windows, count) float64: each window's weight on each frame; every frame's weights sum to one.
    Inside a window the weight is 1, and over the frames it shares with the previous (next) window it
    rises (falls) linearly, so two windows hand a frame over gradually; the clip's ends keep weight 1."""
    starts = window_starts(count, frames, overlap)
    raw = torch.zeros(len(starts), count, dtype=torch.float64)
    for k, start in enumerate(starts):
        weight = torch.ones(min(frames, count), dtype=torch.float64)
        shared_before = starts[k - 1] + frames - start if k > 0 else 0
        shared_after = start + frames - starts[k + 1] if k + 1 < len(starts) else 0
        if shared_before > 0:
            weight[:shared_before] = _ramp(shared_before)
        if shared_after > 0:
            weight[len(weight) - shared_after :] = torch.minimum(
                weight[len(weight) - shared_after :], _ramp(shared_after).flip(0)
            )
        raw[k, start : start + len(weight)] = weight
    return raw / raw.sum(dim=0, keepdim=True)


class Windowed:
    """The video model as ``ddim_sample`` and ``ddim_invert`` call it, on a clip of any length: one call
    per window (frames on dimension 2 of the latents and of the skeletons), predictions fused."""

    def __init__(self, model, frames: int, overlap: int):
        if not 0 <= overlap < frames:
            raise ValueError(f"window.overlap must be at least 0 and less than window.frames ({frames}), not {overlap}")
        self.model, self.frames, self.overlap = model, frames, overlap
        self.plans: dict[int, tuple[list[int], torch.Tensor]] = {}  # clip length -> starts, weights (every step)

    def windows(self, count: int) -> int:
        return len(window_starts(count, self.frames, self.overlap))

    def __call__(self, x, t, text, skeletons, conditioning_scale):
        count = x.shape[2]
        if count <= self.frames:  # one window: the model itself, bit for bit
            return self.model(x, t, text, skeletons, conditioning_scale)
        if count not in self.plans:
            weights = fusion_weights(count, self.frames, self.overlap)
            self.plans[count] = window_starts(count, self.frames, self.overlap), weights.to(x.device, torch.float32)
        starts, weights = self.plans[count]
        fused, dtype = torch.zeros(x.shape, device=x.device, dtype=torch.float32), x.dtype
        for k, start in enumerate(starts):
            part = slice(start, start + self.frames)
            cond = None if skeletons is None else skeletons[:, :, part]
            eps = self.model(x[:, :, part], t, text, cond, conditioning_scale)
            fused[:, :, part] += eps.float() * weights[k, part].view(1, 1, -1, 1, 1)
            dtype = eps.dtype
        return fused.to(dtype)

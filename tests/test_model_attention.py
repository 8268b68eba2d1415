"""Spatial attention across frames: RCA and the baselines against a naive per-frame loop."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention

from eym_model.attention import FrameContext, VideoSelfAttnProcessor

FRAMES, TOKENS, DIM, BATCH = 5, 6, 16, 2


def naive_attention(attn: Attention, x: torch.Tensor, sources: dict[int, list[int]]) -> torch.Tensor:
    """Loop over videos and frames: queries of frame i, keys/values of its source frames concatenated."""
    video = x.view(BATCH, FRAMES, TOKENS, DIM)
    out = torch.empty_like(video)
    heads, head_dim = attn.heads, DIM // attn.heads
    for b in range(BATCH):
        for i in range(FRAMES):
            q = attn.to_q(video[b, i])
            kv_in = torch.cat([video[b, j] for j in sources[i]])
            k, v = attn.to_k(kv_in), attn.to_v(kv_in)
            rows = []
            for h in range(heads):
                sl = slice(h * head_dim, (h + 1) * head_dim)
                weights = torch.softmax(q[:, sl] @ k[:, sl].T / head_dim**0.5, dim=-1)
                rows.append(weights @ v[:, sl])
            out[b, i] = attn.to_out[0](torch.cat(rows, -1))
    return out.view(BATCH * FRAMES, TOKENS, DIM)


EXPECTED_SOURCES = {
    ("rca", "paper"): {0: [0, 1], 1: [0, 2], 2: [1, 3], 3: [2, 4], 4: [3, 4]},
    ("rca", "circular"): {0: [4, 1], 1: [0, 2], 2: [1, 3], 3: [2, 4], 4: [3, 0]},
    ("sparse_causal", "paper"): {0: [0, 0], 1: [0, 0], 2: [0, 1], 3: [0, 2], 4: [0, 3]},
    ("full", "paper"): {i: list(range(FRAMES)) for i in range(FRAMES)},
    ("frame", "paper"): {i: [i] for i in range(FRAMES)},
}


@pytest.mark.parametrize("mode, edge", list(EXPECTED_SOURCES))
def test_processor_matches_a_naive_per_frame_loop(mode, edge):
    torch.manual_seed(0)
    attn = Attention(DIM, heads=2, dim_head=DIM // 2)
    context = FrameContext(num_frames=FRAMES)
    attn.set_processor(VideoSelfAttnProcessor(context, mode, edge))
    x = torch.randn(BATCH * FRAMES, TOKENS, DIM)
    with torch.no_grad():
        got, want = attn(x), naive_attention(attn, x, EXPECTED_SOURCES[(mode, edge)])
    # First, a middle and the last frame are all covered by the full comparison.
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_rca_frame_depends_on_its_neighbours_only():
    torch.manual_seed(1)
    attn = Attention(DIM, heads=2, dim_head=DIM // 2)
    attn.set_processor(VideoSelfAttnProcessor(FrameContext(num_frames=FRAMES), "rca"))
    x = torch.randn(BATCH * FRAMES, TOKENS, DIM)
    changed = x.clone()
    changed.view(BATCH, FRAMES, TOKENS, DIM)[:, 2] += 1.0  # perturb frame 2 of every video
    with torch.no_grad():
        diff = (attn(changed) - attn(x)).view(BATCH, FRAMES, -1).abs().amax((0, 2))
    assert diff[[1, 2, 3]].min() > 1e-3  # its neighbours (keys/values) and itself (queries)
    assert diff[[0, 4]].max() == 0  # frame 0 sees frames 0-1, frame 4 sees frames 3-4


def test_unknown_mode_or_missing_frame_count_is_a_clear_error():
    with pytest.raises(ValueError, match="spatial attention mode"):
        VideoSelfAttnProcessor(FrameContext(), "diagonal")
    with pytest.raises(ValueError, match="RCA edge"):
        VideoSelfAttnProcessor(FrameContext(), "rca", "mirror")
    attn = Attention(DIM, heads=2, dim_head=DIM // 2)
    attn.set_processor(VideoSelfAttnProcessor(FrameContext(), "rca"))
    with pytest.raises(RuntimeError, match="number of frames is unknown"):
        attn(torch.randn(FRAMES, TOKENS, DIM))

"""Seed ranges of the puppet world: evaluation cases and eym-mini's training data never share a seed.

Every generated clip is drawn from ``numpy.random.default_rng(seed)``. Cases that measure the
pipeline (the benchmark, the demo, the tests) take seeds below ``TRAINING_START``; eym-mini's
training frames take seeds in ``TRAINING`` and its held-out frames seeds in ``HELDOUT``. The
generators check their seeds, so a model is never evaluated on what it was trained on.
"""

from __future__ import annotations

EVALUATION = range(0, 1_000_000_000)
TRAINING = range(1_000_000_000, 1_500_000_000)
HELDOUT = range(1_500_000_000, 2_000_000_000)
RANGES = {"evaluation": EVALUATION, "training": TRAINING, "heldout": HELDOUT}


def check_seed(seed: int, purpose: str) -> int:
    """``seed`` if it lies in the range of ``purpose`` (evaluation, training or heldout), else ValueError."""
    allowed = RANGES[purpose]
    if int(seed) not in allowed:
        owner = next((name for name, r in RANGES.items() if int(seed) in r), "no")
        raise ValueError(
            f"puppet seed {seed} belongs to the {owner} range, not {purpose} "
            f"({allowed.start}..{allowed.stop - 1}): evaluation cases and eym-mini's training data must not share seeds"
        )
    return int(seed)


def seeds_for(purpose: str, count: int, offset: int = 0) -> range:
    """``count`` consecutive seeds of ``purpose``'s range, starting ``offset`` into it."""
    allowed = RANGES[purpose]
    start = allowed.start + offset
    if offset < 0 or start + count > allowed.stop:
        raise ValueError(f"{count} {purpose} seeds from offset {offset} do not fit in {allowed}")
    return range(start, start + count)

"""Skeleton offset (retargeting): the reference's keypoints moved onto the source person, with a verdict.

The paper's Algorithm 1 is missing from the text we have; this is the reconstruction documented in
docs/method.md (skeleton offset):

- scale ``s``: the median, over the body segments that both people show (shoulder width, neck-hip,
  upper arm, forearm, thigh, shin, neck-nose, eye distance; each segment's length the median over
  the frames that show it), of the source/reference length ratios. No full body is needed.
- anchor: ``auto`` takes the first of feet, mid-hip, neck, shoulder centre that both people show
  (on any frames); a name forces one.
- ``retarget: bones`` (default) rebuilds every reference frame from its own bone directions with the
  source's bone lengths (each bone scaled by its own source/reference median length ratio, so the
  reference's foreshortening is kept; bones the source never shows take ``s``), pinned at the
  anchor; ``scale`` scales the whole reference by ``s``; ``none`` only moves it.
- ``mode: video``: one translation putting the reference's anchor (s times it) on the source's, on
  the first frame where both are found, so the reference keeps its own trajectory; ``frame``: the
  anchor pinned in every frame.
- joints under ``min_confidence`` or outside the frame are dropped.

A verdict checks the result (a plausible scale, most joints inside the frame, a common segment and
anchor); a bad one lists what is wrong and what to change (the offset stage stops the case on it).
"""

from __future__ import annotations

import numpy as np

from eym.errors import InputError
from eym.parameters import Verdict as VerdictLimits
from eym.skeleton import ANCHORS, JOINTS, NUM_JOINTS, PARENT, bone_lengths, segment_lengths, visible

RETARGET = ("bones", "scale", "none")


class Verdict(list):
    """The problems found with an alignment, each with what to change; empty means good."""

    @property
    def ok(self) -> bool:
        return not self


def segment_scale(
    source: np.ndarray, reference: np.ndarray, min_confidence: float, min_fraction: float
) -> tuple[float, dict]:
    """The median source/reference length ratio over the segments both show; NaN if there is none."""
    src, ref = segment_lengths(source, min_confidence), segment_lengths(reference, min_confidence)
    ratios = {}
    for name in src:
        enough = [np.isfinite(x).sum() >= max(1.0, min_fraction * len(x)) for x in (src[name], ref[name])]
        if all(enough):
            ratios[name] = float(np.nanmedian(src[name]) / np.nanmedian(ref[name]))
    return (float(np.median(list(ratios.values()))) if ratios else float("nan")), ratios


def choose_anchor(source: np.ndarray, reference: np.ndarray, anchor: str, min_confidence: float):
    """(name, source points, reference points) of the first anchor both show, or (None, ...)."""
    names = list(ANCHORS) if anchor == "auto" else [anchor]
    for name in names:
        src, ref = ANCHORS[name](source, min_confidence), ANCHORS[name](reference, min_confidence)
        if np.isfinite(src).all(-1).any() and np.isfinite(ref).all(-1).any():
            return name, src, ref
    return None, None, None


def floor_points(src_anchor: np.ndarray, ref_anchor: np.ndarray, ref_feet: np.ndarray, s: float) -> np.ndarray | None:
    """Where the source's feet would be, from its anchor and the reference's most upright posture
    (its largest anchor-to-feet drop) scaled by ``s``; None when the reference never shows both."""
    drop = ref_feet - ref_anchor
    ok = np.isfinite(drop).all(-1)
    if not ok.any():
        return None
    upright = drop[np.where(ok)[0][np.argmax(drop[ok, 1])]]
    return src_anchor + s * upright


def translation(src_anchor: np.ndarray, ref_anchor: np.ndarray, s: float, mode: str) -> np.ndarray:
    """(frames, 2) shifts that put s x the reference anchor on the source anchor."""
    src_ok, ref_ok = np.isfinite(src_anchor).all(-1), np.isfinite(ref_anchor).all(-1)
    both = np.where(src_ok & ref_ok)[0]
    if mode == "frame" and len(both):
        # Frames where an anchor is missing borrow the nearest frame's translation.
        nearest = both[np.abs(np.arange(len(src_anchor))[:, None] - both[None]).argmin(1)]
        return src_anchor[nearest] - s * ref_anchor[nearest]
    # The first frame where both are found; else the first frame of each.
    f_src, f_ref = (both[0], both[0]) if len(both) else (np.argmax(src_ok), np.argmax(ref_ok))
    return np.broadcast_to(src_anchor[f_src] - s * ref_anchor[f_ref], (len(src_anchor), 2)).copy()


def _tree_order() -> list[int]:
    order, frontier = [], [1]
    while frontier:
        joint = frontier.pop(0)
        order.append(joint)
        frontier += [c for c, p in PARENT.items() if p == joint]
    return order


def rebuild_with_bones(reference: np.ndarray, bone_scale: np.ndarray, s: float, anchor, min_confidence: float):
    """Each reference frame rebuilt from the neck outwards: bone vector x its bone's scale, then moved
    so that its anchor sits where s x the reference anchor is. Joints whose parent is missing keep
    the global scale ``s`` about the neck."""
    vis = visible(reference, min_confidence)
    out = reference.copy()
    out[..., :2] = s * reference[..., :2]
    order = _tree_order()[1:]
    for f in range(len(reference)):
        if not vis[f, 1]:
            continue  # no neck to build from: the frame keeps the global scale
        placed = {1}
        for child in order:
            parent = PARENT[child]
            if vis[f, child] and parent in placed and vis[f, parent]:
                out[f, child, :2] = out[f, parent, :2] + bone_scale[child] * (
                    reference[f, child, :2] - reference[f, parent, :2]
                )
                placed.add(child)
    if anchor is not None:
        scaled = reference.copy()
        scaled[..., :2] = s * reference[..., :2]
        pin = ANCHORS[anchor](scaled, min_confidence) - ANCHORS[anchor](out, min_confidence)
        out[..., :2] += np.nan_to_num(pin)[:, None, :]
    return out


def align(
    source: np.ndarray,
    reference: np.ndarray,
    retarget: str = "bones",
    anchor: str = "auto",
    mode: str = "video",
    min_confidence: float = 0.3,
    width: int | None = None,
    height: int | None = None,
    min_visible_fraction: float = 0.25,
    verdict: dict | None = None,
) -> tuple[np.ndarray, dict]:
    """Reference keypoints moved onto the source person; returns them and what was done (with a verdict)."""
    _check_choices(source, reference, retarget, anchor, mode)
    limits = {**VerdictLimits().model_dump(), **(verdict or {})}  # the schema's defaults, for what is not given
    problems = Verdict()
    s, ratios = _body_scale(source, reference, retarget, min_confidence, min_visible_fraction, limits, problems)
    name, src_anchor, ref_anchor, floor = _anchors(source, reference, anchor, s, min_confidence, problems)
    aligned, bone_scale = _scaled_reference(source, reference, retarget, bool(ratios), s, name, min_confidence)
    shift = translation(src_anchor, ref_anchor, s, mode)
    aligned[..., :2] += shift[:, None, :]
    aligned, kept, shown, inside, warnings = _inside_frame(aligned, reference, min_confidence, width, height, limits)
    if inside < limits["min_inside_fraction"]:
        problems.append(
            f"only {inside:.0%} of the reference's joints land inside the frame after alignment "
            f"(offset.verdict.min_inside_fraction is {limits['min_inside_fraction']:.0%}): the edit would lose most "
            f"of the body. Check offset/preview.png; try another anchor (offset.anchor, now {name}) or "
            "offset.mode: frame"
        )
    info = {
        "retarget": retarget,
        "scale": s,
        "segments": ratios,
        "bone_scale": {JOINTS[c]: float(bone_scale[c]) for c in PARENT},
        "anchor": name,
        "anchor_requested": anchor,
        "feet_estimated": floor is not None,
        "mode": mode,
        "translation": shift[0].tolist() if mode == "video" else shift.tolist(),
        "joints_outside_frame": shown - kept,
        "inside_fraction": inside,
        "verdict": "good" if problems.ok else "bad",
        "problems": list(problems),
        "warnings": warnings,
    }
    return aligned, info


def _check_choices(source, reference, retarget: str, anchor: str, mode: str) -> None:
    if retarget not in RETARGET:
        raise InputError(f"params: offset.retarget must be one of {list(RETARGET)}, not {retarget!r}")
    if anchor != "auto" and anchor not in ANCHORS:
        raise InputError(f"params: offset.anchor must be auto or one of {list(ANCHORS)}, not {anchor!r}")
    if mode not in ("video", "frame"):
        raise InputError(f"params: offset.mode must be video or frame, not {mode!r}")
    if len(source) != len(reference):
        raise InputError(f"skeleton offset: source has {len(source)} frames, reference {len(reference)}")


def _body_scale(source, reference, retarget, min_confidence, min_visible_fraction, limits, problems):
    """The global scale from source to reference (1 without retargeting) and the segment ratios it
    came from; an empty or implausible measurement is a problem of the verdict."""
    s, ratios = segment_scale(source, reference, min_confidence, min_visible_fraction)
    if not ratios:
        problems.append(
            "the source and the reference show no body segment in common, so their sizes cannot be compared: "
            "check offset/preview.png and pose/ (was a person found?), or set offset.retarget: none"
        )
    if retarget == "none" or not ratios:
        s = 1.0
    elif not limits["min_scale"] <= s <= limits["max_scale"]:
        problems.append(
            f"the scale {s:.3g} is implausible (offset.verdict allows {limits['min_scale']}-{limits['max_scale']}): "
            f"the segments measured disagree ({', '.join(f'{k} {v:.2f}' for k, v in ratios.items())}); check the "
            "skeletons in offset/preview.png, or set offset.retarget: none"
        )
    return s, ratios


def _anchors(source, reference, anchor, s, min_confidence, problems):
    """The anchor's name and its per-frame points in the source and the reference (zeros when none is
    found in both: no move, and a problem), and the estimated floor points when the feet are out of view."""
    name, src_anchor, ref_anchor = choose_anchor(source, reference, anchor, min_confidence)
    if name is None:
        wanted = "any anchor (feet, mid_hip, neck, shoulder_centre)" if anchor == "auto" else f"the {anchor} anchor"
        problems.append(
            f"{wanted} is never found in both the source and the reference, so the reference cannot be placed"
            + ("; set offset.anchor: auto" if anchor != "auto" else ": is the same body part visible in both?")
        )
        src_anchor = ref_anchor = np.zeros((len(source), 2))  # no move: the preview still shows both
    floor = None
    if name not in (None, "feet"):
        # The source's feet are out of view: put the reference's feet on the floor the source would
        # stand on, so that a reference crouching (or jumping) in its first frame is not moved up.
        ref_feet = ANCHORS["feet"](reference, min_confidence)
        floor = floor_points(src_anchor, ref_anchor, ref_feet, s)
        if floor is not None:
            src_anchor, ref_anchor = floor, ref_feet
    return name, src_anchor, ref_anchor, floor


def _scaled_reference(source, reference, retarget, measured: bool, s, anchor_name, min_confidence):
    """The reference scaled by ``s``, or rebuilt bone by bone with the source's proportions; and the
    scale of each joint's bone."""
    bone_scale = np.full(NUM_JOINTS, s)
    if retarget == "bones" and measured:
        src_bones, ref_bones = bone_lengths(source, min_confidence), bone_lengths(reference, min_confidence)
        known = np.isfinite(src_bones) & np.isfinite(ref_bones) & (ref_bones > 0)
        bone_scale[known] = src_bones[known] / ref_bones[known]
        # Pinned at the anchor both show: the visible body hangs from it with the source's proportions.
        return rebuild_with_bones(reference, bone_scale, s, anchor_name, min_confidence), bone_scale
    aligned = reference.copy()
    aligned[..., :2] = s * reference[..., :2]
    return aligned, bone_scale


def _inside_frame(aligned, reference, min_confidence, width, height, limits):
    """``aligned`` with the joints that land outside the frame made missing; how many of the
    reference's shown joints were kept and shown, the fraction kept, and a warning when many were lost."""
    shown_mask = visible(reference, min_confidence)
    keep, shown = shown_mask.copy(), int(shown_mask.sum())
    if width and height:
        x, y = aligned[..., 0], aligned[..., 1]
        keep &= (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    inside = float(keep.sum() / shown) if shown else 0.0
    aligned[~keep] = (np.nan, np.nan, 0.0)
    warnings = []
    if limits["min_inside_fraction"] <= inside < limits["warn_inside_fraction"]:
        warnings.append(off_canvas_warning(shown_mask, keep, inside, limits["warn_inside_fraction"]))
    return aligned, int(keep.sum()), shown, inside, warnings


def off_canvas_warning(shown: np.ndarray, inside: np.ndarray, fraction: float, threshold: float) -> str:
    """What a good alignment still loses: the joints that land outside the frame in most frames."""
    lost = (shown & ~inside).sum(0) / np.maximum(shown.sum(0), 1)
    names = [JOINTS[j] for j in np.flatnonzero(lost >= 0.5)]
    return (
        f"{1 - fraction:.0%} of the reference's joints land outside the frame after alignment"
        + (f" ({', '.join(names)} in most frames)" if names else "")
        + f": the edit leaves them out (offset.verdict.warn_inside_fraction is {threshold:.0%}); offset/preview.png "
        "shows where the aligned skeleton goes"
    )

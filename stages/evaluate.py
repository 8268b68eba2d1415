"""Evaluation: the paper's metrics for one case, and its HTML report.

With a ground-truth video (puppet world, TikTok-style protocol): L1 (DisCo's per-pixel-area form and
plain MAE), PSNR, SSIM, LPIPS, each also inside the person region (the union of the ground-truth
edit's person mask and the source's) and inside the rest of the frame (background). Always: CLIP
text alignment (TA) and temporal consistency (TC), LPIPS-N (neighbouring edited frames), LPIPS-S
(source vs edited), and pose fidelity: PCK of the skeleton re-extracted from the edit against the
aligned reference skeleton, over all joints and over the joints the edit must move (those where the
source's own skeleton is farther than the PCK threshold from the aligned one: returning the source
scores 0 there, however alike the two motions are). A metric whose network
is not on this machine is reported as unavailable with the reason, never as a number. FVD and
FID-VID compare sets of videos and are computed by the batch aggregation.

Writes ``eval/metrics.json`` (DVC metrics: numbers, null when unavailable), ``eval/details.json``
(per-frame values, reasons) and ``eval/report.html``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from eym import metrics as formulas
from eym.atomic import atomic_path, write_json, write_text
from eym.errors import MissingWeightsError
from eym.keypoints import read_keypoints
from eym.media import read_frames, read_masks, resize_crop
from eym.schema import Evaluation
from eym.skeleton import moved_joints, pck

from .common import (
    EVALUATION,
    FRAMES,
    MASKS,
    OFFSET,
    POSE,
    SAMPLE,
    ground_truth_frames,
    log,
    read_case,
    section,
    stage_main,
)

GT_METRICS = ("l1", "l1_disco", "psnr", "ssim", "lpips")
TEMPORAL = ("temporal_error",)
REGIONS = ("person", "background")
REGION_METRICS = tuple(f"{m}_{r}" for r in REGIONS for m in GT_METRICS)
POSE_METRICS = ("pose_pck", "pose_pck_moved")
ALL_METRICS = GT_METRICS + REGION_METRICS + TEMPORAL + ("clip_ta", "clip_tc", "lpips_n", "lpips_s") + POSE_METRICS


def ground_truth_masks(case_dir: Path, gt_path: Path, truth: np.ndarray, params: dict) -> tuple[np.ndarray, str]:
    """Person masks of the ground-truth video: its own (``<video stem>_masks/``, numbered PNGs, as the
    puppet world writes them) with the same frame choice and crop, else the segmentation backend's."""
    folder = gt_path.with_name(f"{gt_path.stem}_masks")
    if folder.is_dir():
        meta = json.loads((case_dir / FRAMES / "meta.json").read_text())
        masks = read_masks(folder)[meta["reference"]["indices"]].astype(np.uint8) * 255
        resized, _ = resize_crop(masks, meta["width"], meta["height"])
        return resized > 127, str(folder)
    from eym.detect.segmentation import person_probabilities

    p = section(params, "segmentation")
    return person_probabilities(truth, p) >= float(p.threshold), f"segmentation ({p.backend})"


def region_metrics(edited, truth, person: np.ndarray, lpips) -> dict:
    """Every ground-truth metric inside the person region and inside the rest of the frame."""
    out = {}
    for region, mask in (("person", person), ("background", ~person)):
        out[f"l1_{region}"] = formulas.region_mae(edited, truth, mask)
        out[f"l1_disco_{region}"] = formulas.region_l1_disco(edited, truth, mask)
        out[f"psnr_{region}"] = formulas.region_psnr(edited, truth, mask)
        out[f"ssim_{region}"] = formulas.region_ssim(edited, truth, mask)
        if lpips:
            out[f"lpips_{region}"] = lpips.region(edited, truth, mask)
    return {k: (None if v != v else v) for k, v in out.items()}  # NaN (an empty region) is not a number


def _device(p: Evaluation) -> str:
    from eym_model.loading import resolve_device

    return resolve_device(str(p.device))


def compute(case_dir: Path, params: dict) -> tuple[dict, dict]:
    """(metrics, details) for a case whose sample stage has run."""
    case_dir = Path(case_dir)
    p = section(params, "evaluation")
    case = read_case(case_dir)
    edited = read_frames(case_dir / SAMPLE / "frames")
    source = read_frames(case.source_dir / FRAMES / "source")
    values: dict = dict.fromkeys(ALL_METRICS)
    details: dict = {"unavailable": {}, "per_frame": {}}
    missing = details["unavailable"]

    lpips = None
    try:
        from eym.metric_models import LPIPS

        lpips = LPIPS(p.lpips_backbone, p.lpips_net, _device(p))
    except MissingWeightsError as exc:
        for name in ("lpips", "lpips_n", "lpips_s"):
            missing[name] = str(exc)

    if case.ground_truth:
        truth = ground_truth_frames(case_dir, case.ground_truth)
        values.update(
            l1=formulas.mae(edited, truth),
            l1_disco=formulas.l1_disco(edited, truth),
            psnr=formulas.psnr(edited, truth),
            ssim=formulas.ssim(edited, truth),
            temporal_error=formulas.temporal_error(edited, truth) if len(edited) > 1 else None,
        )
        details["per_frame"]["psnr"] = [formulas.psnr(e[None], t[None]) for e, t in zip(edited, truth)]
        if lpips:
            values["lpips"] = float(lpips(edited, truth).mean())
        edit_masks, details["edit_masks_from"] = ground_truth_masks(case_dir, case.ground_truth, truth, params)
        person = edit_masks | read_masks(case.source_dir / MASKS / "masks")
        details["person_area"] = float(person.mean())
        values.update(region_metrics(edited, truth, person, lpips))
    else:
        for name in GT_METRICS + REGION_METRICS + TEMPORAL:
            missing[name] = "the case has no ground-truth video"
    if not lpips:
        for region in REGIONS:
            missing[f"lpips_{region}"] = missing["lpips"]
    if lpips:
        values["lpips_n"] = float(lpips(edited[1:], edited[:-1]).mean()) if len(edited) > 1 else None
        values["lpips_s"] = float(lpips(edited, source).mean())

    try:
        from eym.metric_models import CLIPScorer

        clip = CLIPScorer(p.clip, bool(p.allow_download), _device(p))
        values["clip_ta"] = clip.text_alignment(edited, str(params.get("prompt") or ""))
        values["clip_tc"] = clip.temporal_consistency(edited)
    except MissingWeightsError as exc:
        missing["clip_ta"] = missing["clip_tc"] = str(exc)

    pose, details["per_frame"]["pose_found"], details["moved_joints"] = _pose_fidelity(case_dir, edited, params, p)
    values.update(pose)
    if not details["moved_joints"]:
        missing["pose_pck_moved"] = "the source's skeleton already matches the aligned reference at every joint"
    return values, details


def _pose_fidelity(case_dir: Path, edited: np.ndarray, params: dict, p: Evaluation):
    from eym.detect.pose import PoseDetector

    pose_params = section(params, "pose").model_copy(update={"backend": p.pose_backend})
    found, _ = PoseDetector(pose_params, margin=float(p.pose_margin))(edited, "edited")
    scores, moved = pose_scores(case_dir, found, float(p.pck_alpha), float(pose_params.min_confidence))
    found_per_frame = [bool(np.isfinite(f[:, 0]).any()) for f in found]
    return scores, found_per_frame, moved


def pose_scores(case_dir: Path, found: np.ndarray, alpha: float, min_confidence: float) -> tuple[dict, int]:
    """PCK of the keypoints found in an edit against its aligned reference skeleton, on all joints and
    on the joints the edit must move (None where there are none), and how many joints those are."""
    aligned, _ = read_keypoints(case_dir / OFFSET / "aligned.parquet")
    source, _ = read_keypoints(read_case(case_dir).source_dir / POSE / "source.parquet")
    source = source[np.linspace(0, len(source) - 1, len(aligned)).round().astype(int)]  # same frame count
    moved = moved_joints(source, aligned, alpha, min_confidence)
    scores = {
        "pose_pck": pck(found, aligned, alpha, min_confidence),
        "pose_pck_moved": pck(found, aligned, alpha, min_confidence, only=moved) if moved.any() else float("nan"),
    }
    return {k: None if np.isnan(v) else v for k, v in scores.items()}, int(moved.sum())


def run(case_dir: Path, params: dict) -> dict:
    """Evaluation: metrics.json and the case's HTML report."""
    from eym.report import case_report

    case_dir = Path(case_dir).resolve()
    values, details = compute(case_dir, params)
    with atomic_path(case_dir / EVALUATION) as out:
        out.mkdir()
        write_json(out / "metrics.json", values)
        write_json(out / "details.json", details)
        case = read_case(case_dir)
        prompt = str(params["prompt"] or "")
        page = case_report(case_dir, values, details, prompt, case.ground_truth, case.source_dir)
        write_text(out / "report.html", page)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if v is not None)
    log.info("evaluation: %s; unavailable: %s", shown or "nothing", ", ".join(details["unavailable"]) or "none")
    return values


if __name__ == "__main__":
    sys.exit(stage_main("evaluate", run))

"""Evaluation: the paper's metrics for one case, and its HTML report.

With a ground-truth video (puppet world, TikTok-style protocol): L1 (DisCo's per-pixel-area form and
plain MAE), PSNR, SSIM, LPIPS. Always: CLIP text alignment (TA) and temporal consistency (TC),
LPIPS-N (neighbouring edited frames), LPIPS-S (source vs edited), and pose fidelity: PCK of the
skeleton re-extracted from the edit against the aligned reference skeleton. A metric whose network
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
from eym.media import read_frames, read_video
from eym.skeleton import pck

from .common import EVALUATION, FRAMES, OFFSET, SAMPLE, log, read_case, section, stage_main
from .frames import resize_crop

PARAMS = ("device", "lpips_backbone", "lpips_net", "clip", "allow_download", "pose_backend", "pck_alpha")
GT_METRICS = ("l1", "l1_disco", "psnr", "ssim", "lpips")
ALL_METRICS = GT_METRICS + ("clip_ta", "clip_tc", "lpips_n", "lpips_s", "pose_pck")


def ground_truth_frames(case_dir: Path, gt_path: Path) -> np.ndarray:
    """The ground-truth video with the frames stage's frame choice and crop applied."""
    meta = json.loads((case_dir / FRAMES / "meta.json").read_text())
    frames, _ = resize_crop(read_video(gt_path, meta["reference"]["indices"]), meta["width"], meta["height"])
    return frames


def _device(p: dict) -> str:
    from eym_model.loading import resolve_device

    return resolve_device(str(p["device"]))


def compute(case_dir: Path, params: dict) -> tuple[dict, dict]:
    """(metrics, details) for a case whose sample stage has run."""
    case_dir = Path(case_dir)
    p = section(params, "evaluation", PARAMS)
    case = read_case(case_dir)
    edited = read_frames(case_dir / SAMPLE / "frames")
    source = read_frames(case_dir / FRAMES / "source")
    values: dict = dict.fromkeys(ALL_METRICS)
    details: dict = {"unavailable": {}, "per_frame": {}}
    missing = details["unavailable"]

    lpips = None
    try:
        from eym.metric_models import LPIPS

        lpips = LPIPS(p["lpips_backbone"], p["lpips_net"], _device(p))
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
        )
        details["per_frame"]["psnr"] = [formulas.psnr(e[None], t[None]) for e, t in zip(edited, truth)]
        if lpips:
            values["lpips"] = float(lpips(edited, truth).mean())
    else:
        for name in GT_METRICS:
            missing[name] = "the case has no ground-truth video"
    if lpips:
        values["lpips_n"] = float(lpips(edited[1:], edited[:-1]).mean()) if len(edited) > 1 else None
        values["lpips_s"] = float(lpips(edited, source).mean())

    try:
        from eym.metric_models import CLIPScorer

        clip = CLIPScorer(p["clip"], bool(p["allow_download"]), _device(p))
        values["clip_ta"] = clip.text_alignment(edited, str(params.get("prompt") or ""))
        values["clip_tc"] = clip.temporal_consistency(edited)
    except MissingWeightsError as exc:
        missing["clip_ta"] = missing["clip_tc"] = str(exc)

    values["pose_pck"], details["per_frame"]["pose_found"] = _pose_fidelity(case_dir, edited, params, p)
    return values, details


def _pose_fidelity(case_dir: Path, edited: np.ndarray, params: dict, p: dict):
    from .pose import PoseDetector

    pose_params = dict(section(params, "pose"), backend=p["pose_backend"])
    found, _ = PoseDetector(pose_params)(edited, "edited")
    aligned, _ = read_keypoints(case_dir / OFFSET / "aligned.parquet")
    score = pck(found, aligned, float(p["pck_alpha"]), float(pose_params["min_confidence"]))
    return (None if np.isnan(score) else score), [bool(np.isfinite(f[:, 0]).any()) for f in found]


def run(case_dir: Path, params: dict) -> dict:
    """Evaluation: metrics.json and the case's HTML report."""
    from eym.report import case_report

    case_dir = Path(case_dir).resolve()
    values, details = compute(case_dir, params)
    with atomic_path(case_dir / EVALUATION) as out:
        out.mkdir()
        write_json(out / "metrics.json", values)
        write_json(out / "details.json", details)
        truth = read_case(case_dir).ground_truth
        write_text(out / "report.html", case_report(case_dir, values, details, str(params.get("prompt") or ""), truth))
    shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if v is not None)
    log.info("evaluation: %s; unavailable: %s", shown or "nothing", ", ".join(details["unavailable"]) or "none")
    return values


if __name__ == "__main__":
    sys.exit(stage_main("evaluate", run))

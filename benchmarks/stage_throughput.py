"""Seconds per stage on one case: preprocessing at 512x512 with 24 frames (detectors at their real
cost), and the model stages and evaluation on the tiny CPU model.

    .venv/bin/python benchmarks/stage_throughput.py --size 512 --frames 24

Each stage is timed as a function call (``stages.<name>.run``), so the figures exclude process
start-up; `benchmarks/orchestration.py` measures that overhead. OpenPose runs with random weights,
which cost what the real ones cost; DWPose and rembg need their ONNX files (skipped when absent).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
import yaml

from puppet_world.cases import make_case
from stages import evaluate, frames, invert, offset, pose, sample, segment, stage1, stage2
from stages.common import deep_merge

REPO = Path(__file__).resolve().parents[1]


def timed(label: str, fn, rows: list, frames_count: int) -> None:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    rows.append((label, seconds, seconds / frames_count))
    print(f"{label}: {seconds:.2f} s ({1000 * seconds / frames_count:.0f} ms/frame)", flush=True)


def _alexnet(tmp: Path) -> Path:
    import torchvision

    torch.save(torchvision.models.alexnet().state_dict(), tmp / "alexnet.pth")
    return tmp / "alexnet.pth"


def _clip_l(tmp: Path) -> Path:
    """CLIP ViT-L/14's architecture with random weights: the evaluation's real cost."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from sandbox.models import tiny_tokenizer

    config = CLIPConfig(
        text_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12},
        vision_config={
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": 224,
            "patch_size": 14,
        },
        projection_dim=768,
    )
    CLIPModel(config).save_pretrained(tmp / "clip")
    tiny_tokenizer().save_pretrained(tmp / "clip")
    CLIPImageProcessor().save_pretrained(tmp / "clip")
    return tmp / "clip"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--model-size", type=int, default=256, help="frame size for the tiny-model stages")
    parser.add_argument("--steps", type=int, default=20, help="tuning steps per stage (tiny model)")
    parser.add_argument("--model-frames", type=int, default=8, help="frames of the tiny-model stages")
    parser.add_argument("--ddim-steps", type=int, default=50, help="inversion and sampling steps (tiny model)")
    args = parser.parse_args()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    rows: list = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_case(
            tmp / "input",
            seed=3,
            size=args.size,
            num_frames=args.frames,
            source_motion="dance",
            reference_motion="squat",
        )
        case = tmp / "case"
        case.mkdir()
        (case / "case.yaml").write_text(
            yaml.safe_dump(
                {
                    "id": "bench",
                    "source": "../input/source.mp4",
                    "reference": "../input/reference.mp4",
                    "ground_truth": "../input/gt/edit.mp4",
                }
            )
        )
        pre = deep_merge(
            params, {"frames": {"count": args.frames, "stride": 1, "width": args.size, "height": args.size}}
        )
        n = args.frames
        print(f"preprocessing: {n} frames at {args.size}x{args.size}, {torch.get_num_threads()} threads")
        timed("frames (decord + resize)", lambda: frames.run(case, pre), rows, n)
        timed("segment (mediapipe selfie)", lambda: segment.run(case, pre), rows, n)
        timed("pose (mediapipe, source + reference)", lambda: pose.run(case, pre), rows, 2 * n)
        timed("offset (+ skeleton images)", lambda: offset.run(case, pre), rows, n)

        from controlnet_aux.open_pose.model import bodypose_model

        torch.save(
            {k.split(".", 1)[1]: v for k, v in bodypose_model().state_dict().items()}, tmp / "body_pose_model.pth"
        )
        openpose = deep_merge(
            pre, {"pose": {"backend": "openpose", "annotator": str(tmp), "max_missing_fraction": 1.0}}
        )
        try:
            timed("pose (openpose body net, random weights)", lambda: pose.run(case, openpose), rows, 2 * n)
        except Exception as exc:  # random weights may find no person: the cost is what we measure
            print(f"pose (openpose): {exc}")
        pose.run(case, pre)  # restore the mediapipe poses

        from sandbox.models import save_tiny_models

        base, controlnet = save_tiny_models(tmp / "models")
        small = tmp / "small"
        shutil.copytree(case, small)
        tiny = deep_merge(
            params,
            {
                "frames": {
                    "width": args.model_size,
                    "height": args.model_size,
                    "count": args.model_frames,
                    "stride": 1,
                },
                "model": {
                    "base": str(base),
                    "controlnet": str(controlnet),
                    "gradient_checkpointing": False,
                    "motion_attention_dim": 16,
                    "motion_attention_heads": 2,
                    "temporal_head_dim": 8,
                },
                "stage1": {"steps": args.steps},
                "stage2": {"steps": args.steps},
                "inversion": {"steps": args.ddim_steps},
                "sampling": {"steps": args.ddim_steps},
                "prompt": "a person dancing",
            },
        )
        m = tiny["frames"]["count"]
        print(f"\nmodel stages: tiny model, {m} frames at {args.model_size}x{args.model_size}")
        for stage in (frames, segment, pose, offset):
            stage.run(small, tiny)
        timed(f"stage1 ({args.steps} steps)", lambda: stage1.run(small, tiny), rows, m)
        timed(f"stage2 ({args.steps} steps)", lambda: stage2.run(small, tiny), rows, m)
        ddim = args.ddim_steps
        timed(f"invert ({ddim} steps + {ddim}-step check)", lambda: invert.run(small, tiny), rows, m)
        timed(f"sample ({args.ddim_steps} steps, videos)", lambda: sample.run(small, tiny), rows, m)
        timed("evaluate (no LPIPS/CLIP weights)", lambda: evaluate.run(small, tiny), rows, m)
        networks = deep_merge(
            tiny, {"evaluation": {"lpips_backbone": str(_alexnet(tmp)), "clip": str(_clip_l(tmp)), "device": "cpu"}}
        )
        timed(
            "evaluate (AlexNet LPIPS + CLIP ViT-L/14, random weights)", lambda: evaluate.run(small, networks), rows, m
        )

    print("\n| stage | seconds | per frame |\n|---|---|---|")
    for label, seconds, per in rows:
        print(f"| {label} | {seconds:.2f} | {1000 * per:.0f} ms |")


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")
    main()

"""Metrics that need pretrained networks: LPIPS, CLIP text alignment/temporal consistency, and video
features for FVD / FID-VID. Each network loads from a local file or folder (or a hub id in the local
Hugging Face cache); when it is absent, a MissingWeightsError says what is missing and the caller
reports the metric as unavailable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import MissingWeightsError


def _frames_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (frames, H, W, 3) -> float (frames, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1


# -- LPIPS ----------------------------------------------------------------------------------------
class LPIPS:
    """LPIPS (Zhang et al. 2018) from the ``lpips`` package: its linear heads ship in the wheel; the
    backbone (torchvision's ImageNet AlexNet or VGG16 weights file) comes from ``backbone_file``."""

    def __init__(self, backbone_file: str | None, net: str = "alex", device: str = "cpu"):
        path = Path(backbone_file).expanduser() if backbone_file else None
        if path is None or not path.is_file():
            raise MissingWeightsError(
                f"LPIPS needs torchvision's ImageNet {net} weights (looked for {path}); set "
                f"evaluation.lpips_backbone to e.g. ~/.cache/torch/hub/checkpoints/alexnet-owt-7be5be79.pth "
                f"(download: https://download.pytorch.org/models/alexnet-owt-7be5be79.pth)"
            )
        import lpips  # after the check: its import (torchvision's models) costs seconds per evaluation

        state = torch.load(path, map_location="cpu", weights_only=True)
        features = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith("features.")}
        self.model, self.spatial = (
            lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False, spatial=spatial).eval().to(device)
            for spatial in (False, True)
        )
        for model in (self.model, self.spatial):
            # lpips names torchvision's features.3.weight slice2.3.weight: drop the slice name.
            model.net.load_state_dict({name: features[name.split(".", 1)[1]] for name in model.net.state_dict()})
        self.device = device

    @torch.no_grad()
    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per-frame distances between two uint8 videos of the same shape."""
        out = [
            self.model(_frames_tensor(x).to(self.device), _frames_tensor(y).to(self.device)).flatten().cpu()
            for x, y in zip(np.array_split(a, max(1, len(a) // 8)), np.array_split(b, max(1, len(b) // 8)))
        ]
        return torch.cat(out).numpy()

    @torch.no_grad()
    def region(self, a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
        """The LPIPS distance map averaged over a per-frame region (bool (frames, H, W)), then over frames."""
        values = []
        for f in np.where(mask.reshape(len(mask), -1).any(1))[0]:
            distance = self.spatial(
                _frames_tensor(a[f : f + 1]).to(self.device), _frames_tensor(b[f : f + 1]).to(self.device)
            )
            values.append(float(distance[0, 0].cpu().numpy()[mask[f]].mean()))
        return float(np.mean(values)) if values else float("nan")


# -- CLIP -----------------------------------------------------------------------------------------
def _stored_locally(name_or_path: str) -> bool:
    """A local folder, or a hub id whose config is in the local Hugging Face cache."""
    if Path(name_or_path).expanduser().is_dir():
        return True
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name_or_path, "config.json"), str)
    except ValueError:  # not a valid hub id either
        return False


class CLIPScorer:
    """CLIP image/text embeddings (ViT-L/14 by default) from a hub id in the local cache or a folder."""

    def __init__(self, name_or_path: str, allow_download: bool = False, device: str = "cpu"):
        def missing(why: str) -> MissingWeightsError:
            return MissingWeightsError(
                f"CLIP model {name_or_path!r} is not available locally ({why}); download it where you "
                f"have network (hf download {name_or_path} --local-dir models/clip) and set evaluation.clip to it"
            )

        if not allow_download and not _stored_locally(name_or_path):
            raise missing("not a folder, not in the Hugging Face cache")  # before transformers' slow import
        from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

        try:
            kwargs = {"local_files_only": not allow_download}
            self.model = CLIPModel.from_pretrained(name_or_path, **kwargs).eval().to(device)
            self.tokenizer = CLIPTokenizer.from_pretrained(name_or_path, **kwargs)
            self.processor = CLIPImageProcessor.from_pretrained(name_or_path, **kwargs)
        except (OSError, ValueError) as exc:
            raise missing(type(exc).__name__) from exc
        self.device = device

    @torch.no_grad()
    def image_embeddings(self, frames: np.ndarray) -> torch.Tensor:
        pixels = self.processor(images=list(frames), return_tensors="pt")["pixel_values"].to(self.device)
        emb = self.model.get_image_features(pixel_values=pixels)
        emb = getattr(emb, "pooler_output", emb)
        return torch.nn.functional.normalize(emb.float(), dim=-1)

    @torch.no_grad()
    def text_embedding(self, prompt: str) -> torch.Tensor:
        ids = self.tokenizer([prompt], padding="max_length", truncation=True, return_tensors="pt").to(self.device)
        emb = self.model.get_text_features(**ids)
        emb = getattr(emb, "pooler_output", emb)
        return torch.nn.functional.normalize(emb.float(), dim=-1)[0]

    def text_alignment(self, frames: np.ndarray, prompt: str) -> float:
        """100 x mean cosine similarity between each frame and the prompt (TA)."""
        return float(100 * (self.image_embeddings(frames) @ self.text_embedding(prompt)).mean())

    def temporal_consistency(self, frames: np.ndarray) -> float:
        """Mean cosine similarity between neighbouring frames' embeddings (TC)."""
        emb = self.image_embeddings(frames)
        return float((emb[1:] * emb[:-1]).sum(-1).mean())


# -- video features (FVD, FID-VID) ----------------------------------------------------------------
class VideoFeatures:
    """A TorchScript video network with StyleGAN-V's I3D calling convention:
    ``model(videos, rescale=True, resize=True, return_features=True)`` on (N, 3, T, H, W) float videos
    in [0, 255] returning (N, D) features. StyleGAN-V's ``i3d_torchscript.pt`` (I3D, Kinetics-400) is
    the standard FVD network; FID-VID uses a 3D ResNet-50 exported with the same convention."""

    def __init__(self, file: str | None, what: str, device: str = "cpu", min_frames: int = 10):
        path = Path(file).expanduser() if file else None
        if path is None or not path.is_file():
            raise MissingWeightsError(
                f"{what} needs a TorchScript video network (looked for {path}); see the README, Weights"
            )
        self.model = torch.jit.load(str(path), map_location=device).eval()
        self.device, self.what, self.min_frames = device, what, min_frames

    @torch.no_grad()
    def __call__(self, videos: list[np.ndarray]) -> np.ndarray:
        short = min(len(v) for v in videos)
        if short < self.min_frames:
            raise ValueError(f"{self.what} needs clips of at least {self.min_frames} frames, these have {short}")
        batch = torch.stack([torch.from_numpy(np.ascontiguousarray(v)).permute(3, 0, 1, 2).float() for v in videos])
        feats = self.model(batch.to(self.device), rescale=True, resize=True, return_features=True)
        return feats.float().cpu().numpy()

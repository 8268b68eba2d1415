"""The parameter schema: every key of params.yaml with its type, default, allowed values and meaning.
It is the only place they are defined: params.yaml holds exactly these defaults (a test checks it).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _multiple_of_8(value: int) -> int:
    if value <= 0 or value % 8:
        raise ValueError("must be a positive multiple of 8")
    return value


class Puppet(Section):
    cases: int = Field(80, ge=1, description="cases of the synthetic benchmark (root dvc.yaml: puppet_benchmark)")
    seed: int = Field(0, ge=0, description="benchmark seed: case i uses seed * 100003 + i")
    size: int = Field(512, description="frame side in pixels")
    frames: int = Field(24, ge=1, description="frames per clip")
    fps: float = Field(12, gt=0, description="frame rate of the clips")
    image_source_every: int = Field(8, ge=0, description="every Nth source is a single image (0: none)")
    references_per_source: int = Field(1, ge=1, description="K: cases / K sources, each with K references")

    _size = field_validator("size")(_multiple_of_8)


class Frames(Section):
    count: Optional[int] = Field(8, ge=1, description="frames per clip (null: all that fit)")
    stride: int = Field(2, ge=1, description="take every Nth frame (Tune-A-Video's sample_frame_rate)")
    fps: Optional[float] = Field(None, gt=0, description="or sample at this frame rate instead of a stride")
    start: int = Field(0, ge=0, description="first frame index")
    reference_timing: Literal["rate", "stretch"] = Field("rate", description="the source's frame rate or stretched")
    width: int = Field(128, description="resize to cover, then centre-crop (multiples of 8)")
    height: int = Field(128, description="as width")

    _sides = field_validator("width", "height")(_multiple_of_8)


class Segmentation(Section):
    backend: Literal["mediapipe", "rembg"] = Field("mediapipe", description="mediapipe (offline) or rembg")
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="person probability threshold")
    dilate: int = Field(0, ge=0, description="grow masks by this many pixels")
    min_area: float = Field(0.002, ge=0.0, lt=1.0, description="a smaller mask (share of the frame) is no person")
    max_missing_fraction: float = Field(0.25, ge=0.0, le=1.0, description="share of frames allowed without person")
    mediapipe_model: Literal[0, 1] = Field(0, description="selfie segmentation: 0 general, 1 landscape")
    rembg_model: str = Field("u2net_human_seg", description="rembg model name, in $U2NET_HOME or ~/.u2net")
    rembg_model_path: Optional[str] = Field(None, description="or a local .onnx file")


class Pose(Section):
    backend: Literal["mediapipe", "openpose", "dwpose"] = Field("mediapipe", description="pose detector")
    source_frames: Literal["full", "masked"] = Field("full", description="full frames or, as the paper, masked ones")
    min_confidence: float = Field(0.3, ge=0.0, le=1.0, description="joints below it count as missing")
    max_missing_fraction: float = Field(0.25, ge=0.0, le=1.0, description="share of frames allowed without body")
    interpolate_missing: bool = Field(True, description="fill short gaps of a joint over time")
    mediapipe_complexity: Literal[0, 1, 2] = Field(1, description="BlazePose model; only 1 ships in the wheel")
    annotator: str = Field("lllyasviel/Annotators", description="OpenPose body_pose_model.pth: hub id or folder")
    dwpose: str = Field("yzd-v/DWPose", description="DWPose ONNX models: hub id or folder")
    allow_download: bool = Field(False, description="let the hub download missing detector weights")


class Verdict(Section):
    min_scale: float = Field(0.2, gt=0.0, description="smallest plausible source/reference size ratio")
    max_scale: float = Field(5.0, gt=0.0, description="largest plausible source/reference size ratio")
    min_inside_fraction: float = Field(0.5, ge=0.0, le=1.0, description="share of joints that must stay in frame")
    warn_inside_fraction: float = Field(0.9, ge=0.0, le=1.0, description="below it a good verdict names joints out")


class Region(Section):
    limb_width: float = Field(0.06, gt=0.0, le=1.0, description="limbs drawn this thick, share of the person's height")
    margin: float = Field(0.02, ge=0.0, le=1.0, description="both people's regions grown by this share of the height")
    feather: float = Field(0.03, ge=0.0, le=1.0, description="then faded out over this share of the height")
    max_motion: float = Field(3.0, ge=0.0, description="a still camera (clean plate) changes its background less")


class Offset(Section):
    retarget: Literal["bones", "scale", "none"] = Field("bones", description="bones (lengths kept) | scale | none")
    anchor: Literal["auto", "feet", "mid_hip", "neck", "shoulder_centre"] = Field("auto", description="auto: 1st found")
    mode: Literal["video", "frame"] = Field("video", description="one translation, or one per frame")
    min_confidence: float = Field(0.3, ge=0.0, le=1.0, description="joints below it are dropped")
    min_visible_fraction: float = Field(0.25, ge=0.0, le=1.0, description="a segment counts when seen this often")
    preview_frames: int = Field(4, ge=1, description="rows of offset/preview.png")
    verdict: Verdict = Field(default_factory=Verdict, description="a bad verdict stops the case before tuning")
    region: Region = Field(default_factory=Region, description="where the edit may change pixels (offset/region/)")


class Model(Section):
    base: str = Field(
        "./models/eym-mini/base", description="Stable-Diffusion-1.5-layout base model: hub id (local cache) or folder"
    )
    controlnet: str = Field("./models/eym-mini/controlnet", description="OpenPose ControlNet: hub id or folder")
    allow_download: bool = Field(False, description="let the hub download missing weights (needs network)")
    variant: Optional[str] = Field(None, description="a repository's weight variant, e.g. fp16")
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto | cpu | cuda | cuda:N")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field("auto", description="auto: fp16 on CUDA, fp32 on CPU")
    spatial_attention: Literal["rca", "frame", "sparse_causal", "full"] = Field("rca", description="RCA or a peer's")
    rca_edge: Literal["paper", "circular"] = Field("paper", description="RCA at the first and last frames")
    motion_attention: bool = Field(True, description='false: "w/o MA", ControlNet residuals added directly')
    motion_attention_dim: int = Field(128, ge=1, description="MA's inner width")
    motion_attention_heads: int = Field(4, ge=1, description="MA's attention heads")
    temporal_head_dim: int = Field(64, ge=1, description="head width of the temporal attention layers")
    max_frames: int = Field(64, ge=1, description="longest clip the temporal layers accept")
    attention_backend: Literal["auto", "native", "xformers"] = Field("auto", description="attention kernels")
    gradient_checkpointing: bool = Field(False, description="trade compute for memory while tuning (SD 1.5: on)")
    init_seed: int = Field(0, description="initial weights of the new layers (their outputs start at zero)")
    vae_chunk: int = Field(8, ge=1, description="frames per VAE call (VAE slicing)")


# The trainable groups' names (eym_model.trainable maps each to the parameters it selects).
TRAINABLE_GROUPS = ("temporal", "motion_attention", "spatial_attention")
TRAINABLE_ALIASES = {"rca": "spatial_attention"}
TRAINABLE_PROJECTION = r"attn[12]\.(to_q|to_k|to_v|to_out\.0)"  # one projection of every transformer block


def _known_group(name: str) -> str:
    if name not in TRAINABLE_GROUPS and name not in TRAINABLE_ALIASES and not re.fullmatch(TRAINABLE_PROJECTION, name):
        known = sorted(TRAINABLE_GROUPS) + sorted(TRAINABLE_ALIASES)
        raise ValueError(f"unknown trainable group {name!r}: use {known} or e.g. 'attn1.to_q'")
    return name


class Tuning(Section):
    enabled: bool = Field(True, description="false: the stage writes empty outputs")
    steps: int = Field(200, ge=0, description="training steps (the paper's best with SD 1.5: 300)")
    trainable: list[str] = Field(description="parameter groups trained: temporal, motion_attention, ...")
    masked: bool = Field(description="train on background-masked frames")
    lr: float = Field(1.0e-4, ge=0.0, description="AdamW learning rate (SD 1.5: the peers' 3e-5)")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    adam_epsilon: float = Field(1.0e-8, gt=0.0, description="AdamW epsilon")
    max_grad_norm: float = Field(1.0, gt=0.0, description="gradient clipping")
    seed: int = Field(33, description="seed of the stage's own noise stream (derived with the stage name)")
    checkpoint_every: int = Field(50, ge=1, description="steps between resumable checkpoints")
    use_8bit_adam: bool = Field(False, description="bitsandbytes' AdamW8bit (CUDA)")
    conditioning_scale: float = Field(1.0, ge=0.0, description="ControlNet residual scale while tuning")
    save_dtype: Literal["fp32", "fp16", "bf16"] = Field("fp32", description="dtype of the saved weights")

    @field_validator("trainable")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        return [_known_group(g) for g in value]

    @field_validator("adam_betas")
    @classmethod
    def _betas(cls, value):
        if not all(0.0 <= b < 1.0 for b in value):
            raise ValueError("each beta must be in [0, 1)")
        return value


class Stage1(Tuning):
    """Stage 1, the paper's: temporal attention and MA on the background-masked clip."""

    trainable: list[str] = Field(
        ["temporal", "motion_attention"], description=Tuning.model_fields["trainable"].description
    )
    masked: bool = Field(True, description=Tuning.model_fields["masked"].description)


class Stage2(Tuning):
    """Stage 2, the paper's: RCA's projections and MA on the full frames."""

    trainable: list[str] = Field(
        ["spatial_attention", "motion_attention"], description=Tuning.model_fields["trainable"].description
    )
    masked: bool = Field(False, description=Tuning.model_fields["masked"].description)


class Inversion(Section):
    enabled: bool = Field(True, description="false: no inversion (edits sample from noise or copy the source)")
    steps: int = Field(50, ge=1, description="DDIM inversion steps (sampling.steps must be the same)")
    use_prompt: bool = Field(False, description="invert with the case's prompt instead of the empty one")
    controlnet: bool = Field(False, description="also feed the source skeletons through ControlNet")
    check_reconstruction: bool = Field(True, description="re-sample the inverted noise and report the error")


class Window(Section):
    frames: int = Field(16, ge=1, description="frames the model sees at once; longer clips go in overlapping windows")
    overlap: int = Field(4, ge=0, description="frames two neighbouring windows share, their predictions fused")

    @field_validator("overlap")
    @classmethod
    def _fewer_than_frames(cls, value: int, info):
        if "frames" in info.data and value >= info.data["frames"]:
            raise ValueError(f"must be less than window.frames ({info.data['frames']})")
        return value


class Sampling(Section):
    start: Literal["inverted", "noise", "source"] = Field(
        "inverted", description='inverted (the method) | noise ("ControlNet only") | source ("copy the source")'
    )
    steps: int = Field(50, ge=1, description="DDIM steps (must equal inversion.steps)")
    guidance_scale: float = Field(1.0, ge=0.0, description="classifier-free guidance (1: none, as in the paper)")
    negative_prompt: str = Field("", description="the unconditional prompt of guidance")
    conditioning_scale: float = Field(1.5, ge=0.0, description="ControlNet residual scale")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta (0: deterministic)")
    seed: int = Field(33, description="seed of the sampling noise (used when eta > 0)")
    preserve: Literal["none", "pixels", "latent", "latent+pixels"] = Field(
        "pixels", description="outside offset/region/ keep the source: its latents while sampling, its pixels after"
    )
    vacated: Literal["plate", "edit"] = Field("plate", description="where only the source stood: its clean plate")
    preserve_steps: float = Field(1.0, ge=0.0, le=1.0, description="share of the DDIM steps whose latents blend")
    unchanged: float = Field(8.0, ge=0.0, description="with pixels: grey levels of change still kept as the source")


class Evaluation(Section):
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="device of the metric networks")
    lpips_backbone: str = Field(
        "~/.cache/torch/hub/checkpoints/alexnet-owt-7be5be79.pth",
        description="torchvision's ImageNet AlexNet (or VGG) weights file",
    )
    lpips_net: Literal["alex", "vgg", "squeeze"] = Field("alex", description="LPIPS backbone")
    clip: str = Field("openai/clip-vit-large-patch14", description="CLIP ViT-L/14: hub id or folder")
    allow_download: bool = Field(False, description="let the hub download metric networks")
    pose_backend: Literal["mediapipe", "openpose", "dwpose"] = Field("mediapipe", description="for pose PCK")
    pck_alpha: float = Field(0.1, gt=0.0, le=1.0, description="PCK threshold as a share of the person's size")
    pose_margin: float = Field(0.1, ge=0.0, le=1.0, description="MediaPipe's border re-detecting the edit, of a side")
    fvd_model: Optional[str] = Field(None, description="StyleGAN-V's i3d_torchscript.pt (batch-level FVD)")
    fid_vid_model: Optional[str] = Field(None, description="a 3D ResNet-50 TorchScript for FID-VID")
    video_min_frames: int = Field(10, ge=1, description="shortest clip the video networks take")


class MiniData(Section):
    size: int = Field(128, description="frame side in pixels")
    train_actors: int = Field(5000, ge=1, description="characters from the training seed range")
    heldout_actors: int = Field(64, ge=1, description="characters from the held-out seed range")
    poses_per_actor: int = Field(4, ge=1, description="poses drawn per character")
    workers: int = Field(2, ge=1, description="processes drawing frames")

    _size = field_validator("size")(_multiple_of_8)


# The training settings that the VAE and the diffusion phase share, each defined once (their defaults differ).
TrainingSteps = Annotated[int, Field(ge=1, description="optimizer steps")]
Batch = Annotated[int, Field(ge=1, description="frames per step")]
PeakLR = Annotated[float, Field(gt=0.0, description="peak learning rate")]
Warmup = Annotated[int, Field(ge=0, description="linear warm-up steps")]
FinalLR = Annotated[float, Field(ge=0.0, le=1.0, description="cosine decay ends at this share of lr")]
EMA = Annotated[float, Field(ge=0.0, lt=1.0, description="EMA decay of the saved weights")]
Masked = Annotated[float, Field(ge=0.0, le=1.0, description="share of frames shown with a black background")]
Groups = Annotated[int, Field(ge=1, description="GroupNorm groups")]
Channels = Annotated[list[int], Field(description="channels per level")]


class MiniTraining(Section):
    precision: Literal["fp32", "fp16", "bf16"] = Field("bf16", description="autocast dtype")
    checkpoint_every: int = Field(200, ge=1, description="steps between resumable checkpoints")


class MiniVAE(MiniTraining):
    steps: TrainingSteps = 8500
    batch: Batch = 8
    lr: PeakLR = 1.0e-3
    warmup: Warmup = 100
    final_lr_fraction: FinalLR = 0.05
    ema: EMA = 0.999
    block_out_channels: Channels = [16, 32, 64, 128]  # 4 levels: 8x down, as SD 1.5
    layers_per_block: int = Field(1, ge=1, description="resnets per level")
    latent_channels: int = Field(8, ge=1, description="latent channels (SD 1.5: 4, too few for 128-px puppets)")
    norm_num_groups: Groups = 8
    initial_logvar: float = Field(-6.0, description="initial posterior log-variance (std 0.05)")
    mse_weight: float = Field(1.0, ge=0.0, description="loss: L1 + mse_weight x MSE + kl_weight x KL")
    kl_weight: float = Field(1.0e-6, ge=0.0, description="Stable Diffusion's 1e-6")
    masked_fraction: Masked = 0.15
    heldout_every: int = Field(500, ge=1, description="steps between held-out PSNR checks")
    heldout_check_frames: int = Field(32, ge=1, description="held-out frames of each check")


class MiniTextEncoder(Section):
    hidden_size: int = Field(128, ge=1, description="text embedding width (the UNet's cross-attention width)")
    intermediate_size: int = Field(512, ge=1, description="feed-forward width")
    heads: int = Field(4, ge=1, description="attention heads")
    layers: int = Field(2, ge=1, description="transformer layers")


class MiniUNet(Section):
    block_out_channels: Channels = [64, 128, 256]
    layers_per_block: int = Field(1, ge=1, description="resnets per level")
    heads: int = Field(8, ge=1, description="attention heads")
    norm_num_groups: Groups = 8


class MiniDiffusion(MiniTraining):
    text_encoder: MiniTextEncoder = Field(default_factory=MiniTextEncoder)
    unet: MiniUNet = Field(default_factory=MiniUNet)
    steps: TrainingSteps = 2800
    batch: Batch = 32
    lr: PeakLR = 4.0e-4
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay")
    warmup: Warmup = 200
    final_lr_fraction: FinalLR = 0.1
    ema: EMA = 0.998
    min_snr_gamma: float = Field(5.0, ge=0.0, description="min-SNR loss weighting (0: off)")
    prompt_dropout: float = Field(0.1, ge=0.0, le=1.0, description='share of "" prompts (inversion, guidance)')
    controlnet_dropout: float = Field(0.3, ge=0.0, le=1.0, description="share of batches without ControlNet")
    masked_fraction: Masked = 0.15
    skeleton_jitter: float = Field(0.7, ge=0.0, description="pixels of noise on the drawn joints")
    skeleton_drop: float = Field(0.2, ge=0.0, le=1.0, description="share of skeletons that lose 1-3 joints")
    draw_workers: int = Field(0, ge=0, description="processes drawing skeleton batches ahead (0: in the loop)")
    start_from: Optional[str] = Field(
        None, description="an exported eym-mini folder (models/eym-mini) to go on training from, same architecture"
    )


class MiniExport(Section):
    eval_frames: int = Field(128, ge=1, description="held-out skeletons of the ControlNet pose check")
    eval_steps: int = Field(50, ge=1, description="DDIM steps of the check")
    eval_guidance_scale: float = Field(1.0, ge=0.0, description="guidance of the check (as sampling's)")
    eval_conditioning_scale: float = Field(1.5, ge=0.0, description="ControlNet scale of the check (as sampling's)")
    eval_seed: int = Field(0, description="noise seed of the check")
    detect_size: int = Field(256, ge=8, description="frames are upscaled to this before MediaPipe")
    detect_margin: float = Field(0.25, ge=0.0, le=1.0, description="border added before MediaPipe, of a side")


class EymMini(Section):
    seed: int = Field(0, description="seed of every phase")
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto | cpu | cuda")
    max_minutes: Optional[float] = Field(88, gt=0, description="each run of a phase stops here (resumable)")
    data: MiniData = Field(default_factory=MiniData)
    vae: MiniVAE = Field(default_factory=MiniVAE)
    diffusion: MiniDiffusion = Field(default_factory=MiniDiffusion)
    export: MiniExport = Field(default_factory=MiniExport)


class Parameters(Section):
    """Every section of params.yaml (puppet and eym_mini only matter to their root DVC stages)."""

    puppet: Optional[Puppet] = None
    frames: Frames = Field(default_factory=Frames)
    segmentation: Segmentation = Field(default_factory=Segmentation)
    pose: Pose = Field(default_factory=Pose)
    offset: Offset = Field(default_factory=Offset)
    prompt: str = Field("", description="the case's prompt: each case folder's params.yaml sets it")
    model: Model = Field(default_factory=Model)
    stage1: Stage1 = Field(default_factory=Stage1)
    stage2: Stage2 = Field(default_factory=Stage2)
    inversion: Inversion = Field(default_factory=Inversion)
    window: Window = Field(default_factory=Window)
    sampling: Sampling = Field(default_factory=Sampling)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    eym_mini: Optional[EymMini] = None

"""eym-mini: a small Stable-Diffusion-layout base model and OpenPose ControlNet trained on the puppet world.

Phases (each a root DVC stage, ``dvc repro eym_mini`` runs them all): ``data`` (training and
held-out frames), ``vae``, ``diffusion`` (text encoder + UNet + ControlNet, trained jointly) and
``export`` (the diffusers folders, their evaluation and the model card). Paths are relative to the
repository root.
"""

from pathlib import Path

DATA_DIR = Path("data/eym-mini")  # generated frames (not in git)
BUILD_DIR = Path("build/eym-mini")  # phase outputs and checkpoints (not in git)
MODEL_DIR = Path("models/eym-mini")  # the exported model (in git)
LOG_DIR = MODEL_DIR / "logs"  # loss logs (DVC plots, in git)

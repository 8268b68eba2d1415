"""eym-mini: a small Stable-Diffusion-layout base model and OpenPose ControlNet trained on the puppet world.

Phases (each a root DVC stage, ``dvc repro eym_mini`` runs them all): ``data`` (training and
held-out frames), ``vae``, ``diffusion`` (text encoder + UNet + ControlNet, trained jointly) and
``export`` (the diffusers folders, their evaluation and the model card, in ``build/eym-mini/release``).
``ship`` (not a DVC stage: a decision) copies a release into ``models/eym-mini``, the model every
edit loads by default, which is therefore an input of the edits and never a DVC output. Paths are
relative to the repository root.
"""

from pathlib import Path

DATA_DIR = Path("data/eym-mini")  # generated frames (not in git)
BUILD_DIR = Path("build/eym-mini")  # phase outputs and checkpoints (not in git)
LOG_DIR = BUILD_DIR / "logs"  # loss logs and training runs (DVC plots)
RELEASE_DIR = BUILD_DIR / "release"  # what export made: base/, controlnet/, card, metrics, grid image
MODEL_DIR = Path("models/eym-mini")  # the shipped model (in git): a release copied by ``ship``
GRID = Path("docs/eym-mini-controlnet.png")  # where ``ship`` puts the release's grid image

"""The pinned dependency set installs and imports together."""

import importlib

import pytest

STACK = [
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "accelerate",
    "safetensors",
    "prefect",
    "prefect_dask",
    "dvc",
    "controlnet_aux",
    "rembg",
    "onnxruntime",
    "pyarrow",
    "decord",
    "mediapipe",
    "cv2",
    "imageio_ffmpeg",
    "skimage",
    "yaml",
    "tqdm",
    "gradio",
    "gradio_client",
]


@pytest.mark.parametrize("module", STACK)
def test_module_imports(module):
    importlib.import_module(module)


def test_versions_that_must_agree():
    import numpy
    import pyarrow as pa
    from mediapipe.python import solutions

    assert numpy.__version__.startswith("1."), "mediapipe 0.10.21 needs numpy<2"
    # pyarrow >= 26 fails at import on numpy 1.x; this also exercises the numpy bridge.
    assert pa.array(numpy.arange(3)).to_numpy().tolist() == [0, 1, 2]
    assert hasattr(solutions, "pose") and hasattr(solutions, "selfie_segmentation")

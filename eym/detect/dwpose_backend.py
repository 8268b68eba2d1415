"""DWPose with onnxruntime: YOLOX person boxes, then the DW-LL whole-body pose model per box.

controlnet_aux 0.0.10's DWPose needs the mmcv/mmpose/mmdet stack; DWPose's published ONNX models
(``yolox_l.onnx``, ``dw-ll_ucoco_384.onnx``, hub id ``yzd-v/DWPose``) run on onnxruntime alone.
Pre- and post-processing follow DWPose's ONNX reference: letterbox to 640 for YOLOX, an affine
crop of the box (padding 1.25) to 288x384 for the pose model, and SimCC decoding. Of the 133
whole-body points, the 17 COCO body points are kept and mapped to OpenPose-18 (neck = shoulders'
midpoint).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import MissingWeightsError
from ..skeleton import NUM_JOINTS, J

DETECTOR_FILE, POSE_FILE = "yolox_l.onnx", "dw-ll_ucoco_384.onnx"
DETECTOR_SIZE = (640, 640)  # height, width
POSE_SIZE = (288, 384)  # width, height
SIMCC_SPLIT = 2.0
POSE_MEAN, POSE_STD = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
COCO17 = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)


@dataclass
class DWPose:
    detector: object  # onnxruntime.InferenceSession
    pose: object
    person_threshold: float = 0.3


def locate(models: str, allow_download: bool = False) -> tuple[Path, Path]:
    folder = Path(models).expanduser()
    if folder.is_dir():
        files = folder / DETECTOR_FILE, folder / POSE_FILE
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise MissingWeightsError(f"DWPose folder {folder} lacks {missing}")
        return files
    if models.count("/") != 1:
        raise MissingWeightsError(f"DWPose models {models!r}: no such folder, and not a hub id")
    from huggingface_hub import hf_hub_download

    try:
        return tuple(
            Path(hf_hub_download(models, name, local_files_only=not allow_download))
            for name in (DETECTOR_FILE, POSE_FILE)
        )
    except Exception as exc:
        raise MissingWeightsError(
            f"DWPose models {models}/{{{DETECTOR_FILE},{POSE_FILE}}} are not in the local Hugging Face cache "
            f"({type(exc).__name__}). Download them where you have network (hf download {models} {DETECTOR_FILE} "
            f"{POSE_FILE} --local-dir models/dwpose) and set pose.dwpose to that folder, "
            f"or use pose.backend: mediapipe."
        ) from exc


def open_detector(models: str, allow_download: bool = False) -> DWPose:
    import onnxruntime as ort

    detector_file, pose_file = locate(models, allow_download)
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    return DWPose(
        ort.InferenceSession(str(detector_file), providers=providers),
        ort.InferenceSession(str(pose_file), providers=providers),
    )


# -- person detection (YOLOX) ---------------------------------------------------------------------
def letterbox(image: np.ndarray) -> tuple[np.ndarray, float]:
    height, width = DETECTOR_SIZE
    ratio = min(height / image.shape[0], width / image.shape[1])
    resized = cv2.resize(
        image, (int(image.shape[1] * ratio), int(image.shape[0] * ratio)), interpolation=cv2.INTER_LINEAR
    )
    padded = np.full((height, width, 3), 114, np.uint8)
    padded[: resized.shape[0], : resized.shape[1]] = resized
    return np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32), ratio


def decode_yolox(output: np.ndarray) -> np.ndarray:
    """(anchors, 5 + classes) raw YOLOX output -> boxes as cx, cy, w, h in letterbox pixels + scores."""
    grids, strides = [], []
    height, width = DETECTOR_SIZE
    for stride in (8, 16, 32):
        hs, ws = height // stride, width // stride
        xv, yv = np.meshgrid(np.arange(ws), np.arange(hs))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((hs * ws, 1), stride))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    out = output.astype(np.float64).copy()
    out[:, :2] = (out[:, :2] + grid) * stride
    out[:, 2:4] = np.exp(np.clip(out[:, 2:4], -20, 20)) * stride
    return out


def person_boxes(detector, image_bgr: np.ndarray, threshold: float, nms: float = 0.45) -> np.ndarray:
    """(people, 4) x0, y0, x1, y1 boxes of people in image pixels, best first."""
    blob, ratio = letterbox(image_bgr)
    raw = detector.run(None, {detector.get_inputs()[0].name: blob})[0][0]
    pred = decode_yolox(raw)
    scores = pred[:, 4] * pred[:, 5]  # objectness x person-class probability
    boxes = (
        np.stack(
            [
                pred[:, 0] - pred[:, 2] / 2,
                pred[:, 1] - pred[:, 3] / 2,
                pred[:, 0] + pred[:, 2] / 2,
                pred[:, 1] + pred[:, 3] / 2,
            ],
            1,
        )
        / ratio
    )
    keep = scores > threshold
    boxes, scores = boxes[keep], scores[keep]
    if not len(boxes):
        return boxes.reshape(0, 4)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
    chosen = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), threshold, nms)
    return boxes[np.array(chosen, dtype=int).reshape(-1)]


# -- pose (SimCC) ---------------------------------------------------------------------------------
def box_to_crop(box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and size of the crop for a box: padded 1.25 and widened to the model's aspect ratio."""
    centre = (box[:2] + box[2:]) / 2
    size = (box[2:] - box[:2]) * 1.25
    aspect = POSE_SIZE[0] / POSE_SIZE[1]
    if size[0] > size[1] * aspect:
        size = np.array([size[0], size[0] / aspect])
    else:
        size = np.array([size[1] * aspect, size[1]])
    return centre, size


def crop_matrix(centre: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Affine map from image pixels to the pose model's input pixels."""
    sx, sy = POSE_SIZE[0] / size[0], POSE_SIZE[1] / size[1]
    return np.array([[sx, 0, POSE_SIZE[0] / 2 - sx * centre[0]], [0, sy, POSE_SIZE[1] / 2 - sy * centre[1]]])


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray) -> np.ndarray:
    """(points, bins) SimCC maps -> (points, 3) x, y in model-input pixels and a score."""
    x = simcc_x.argmax(1) / SIMCC_SPLIT
    y = simcc_y.argmax(1) / SIMCC_SPLIT
    score = np.minimum(simcc_x.max(1), simcc_y.max(1))
    return np.stack([x, y, score], 1)


def estimate_pose(pose_session, image_bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
    """OpenPose-18 keypoints (18, 3) in image pixels for one person box."""
    centre, size = box_to_crop(box)
    matrix = crop_matrix(centre, size)
    crop = cv2.warpAffine(image_bgr, matrix, POSE_SIZE, flags=cv2.INTER_LINEAR)
    blob = ((crop - POSE_MEAN) / POSE_STD).transpose(2, 0, 1)[None].astype(np.float32)
    simcc_x, simcc_y = pose_session.run(None, {pose_session.get_inputs()[0].name: blob})[:2]
    points = decode_simcc(simcc_x[0], simcc_y[0])
    inverse = cv2.invertAffineTransform(matrix)
    xy = points[:, :2] @ inverse[:, :2].T + inverse[:, 2]
    kp = np.full((NUM_JOINTS, 3), np.nan, np.float32)
    kp[:, 2] = 0
    for i, name in enumerate(COCO17):
        kp[J[name]] = (xy[i, 0], xy[i, 1], points[i, 2])
    shoulders = kp[[J["right_shoulder"], J["left_shoulder"]]]
    kp[J["neck"]] = (*shoulders[:, :2].mean(0), shoulders[:, 2].min())
    return kp


def detect_people(frames: np.ndarray, model: DWPose, progress=None) -> list[list[np.ndarray]]:
    """Per RGB frame, a list of people as (18, 3) keypoint arrays."""
    people = []
    for frame in frames:
        bgr = np.ascontiguousarray(frame[:, :, ::-1])
        boxes = person_boxes(model.detector, bgr, model.person_threshold)
        people.append([estimate_pose(model.pose, bgr, box) for box in boxes])
        if progress:
            progress()
    return people

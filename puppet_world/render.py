"""Drawing puppets and backgrounds: a clothed, human-looking figure from 18 keypoints, and its mask.

The figure is drawn from keypoints alone (plus an appearance and a standing height for widths),
so the same character can be drawn performing any motion: that is how the ground-truth edit is
made. Drawing happens at 2x and is downsampled for anti-aliasing; the mask is the same shapes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from eym.skeleton import J

SUPERSAMPLE = 2
_SHIFT = 4  # fractional bits for sub-pixel drawing

SKIN_TONES = [(255, 224, 196), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 58, 35)]
HAIR_COLOURS = [(20, 17, 15), (60, 40, 25), (110, 75, 40), (200, 160, 90), (150, 60, 30), (170, 170, 170)]
CLOTH_NAMES = {
    "red": (200, 40, 45),
    "blue": (40, 80, 200),
    "green": (40, 150, 70),
    "yellow": (230, 200, 50),
    "purple": (120, 60, 170),
    "orange": (235, 130, 40),
    "white": (235, 235, 235),
    "black": (35, 35, 40),
    "grey": (120, 120, 125),
    "teal": (30, 140, 140),
    "pink": (230, 120, 170),
    "navy": (30, 40, 90),
    "brown": (110, 70, 40),
    "khaki": (190, 170, 120),
}


@dataclass(frozen=True)
class Appearance:
    skin: tuple
    hair: tuple
    shirt: str
    trousers: str
    shoes: tuple
    long_sleeves: bool
    shorts: bool
    long_hair: bool

    @staticmethod
    def sample(rng: np.random.Generator) -> "Appearance":
        skin = SKIN_TONES[rng.integers(len(SKIN_TONES))]
        # Clothes far from the skin tone, so that a shirt never reads as bare skin.
        cloth = [n for n in sorted(CLOTH_NAMES) if np.abs(np.subtract(CLOTH_NAMES[n], skin)).sum() > 120]
        shirt, trousers = rng.choice(cloth, size=2, replace=False)
        return Appearance(
            skin=skin,
            hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))],
            shirt=str(shirt),
            trousers=str(trousers),
            shoes=tuple(int(c) for c in rng.integers(20, 90, 3)),
            long_sleeves=bool(rng.random() < 0.4),
            shorts=bool(rng.random() < 0.25),
            long_hair=bool(rng.random() < 0.4),
        )

    def describe(self) -> str:
        top = f"a {self.shirt} {'long-sleeved shirt' if self.long_sleeves else 't-shirt'}"
        bottom = f"{self.trousers} {'shorts' if self.shorts else 'trousers'}"
        hair = "long" if self.long_hair else "short"
        return f"a person with {hair} hair in {top} and {bottom}"

    def to_dict(self) -> dict:
        return asdict(self)


class _Canvas:
    """Paints each shape on the colour image and on the mask together."""

    def __init__(self, image: np.ndarray):
        self.image = image
        self.mask = np.zeros(image.shape[:2], np.uint8)

    def _p(self, point) -> tuple[int, int]:
        return tuple(int(round(c * SUPERSAMPLE * (1 << _SHIFT))) for c in point[:2])

    def _r(self, radius: float) -> int:
        return max(1, int(round(radius * SUPERSAMPLE * (1 << _SHIFT))))

    def limb(self, a, b, width: float, colour) -> None:
        t = max(1, int(round(width * SUPERSAMPLE)))
        for target, c in ((self.image, colour), (self.mask, 255)):
            cv2.line(target, self._p(a), self._p(b), c, t, cv2.LINE_AA, _SHIFT)
        self.disc(a, width / 2, colour)
        self.disc(b, width / 2, colour)

    def disc(self, centre, radius: float, colour, mask: bool = True) -> None:
        cv2.circle(self.image, self._p(centre), self._r(radius), colour, -1, cv2.LINE_AA, _SHIFT)
        if mask:
            cv2.circle(self.mask, self._p(centre), self._r(radius), 255, -1, cv2.LINE_AA, _SHIFT)

    def ellipse(self, centre, axes, angle_deg: float, colour, mask: bool = True, arc=(0, 360)) -> None:
        ax = (self._r(axes[0]), self._r(axes[1]))
        cv2.ellipse(self.image, self._p(centre), ax, angle_deg, arc[0], arc[1], colour, -1, cv2.LINE_AA, _SHIFT)
        if mask:
            cv2.ellipse(self.mask, self._p(centre), ax, angle_deg, arc[0], arc[1], 255, -1, cv2.LINE_AA, _SHIFT)

    def polygon(self, points, colour) -> None:
        pts = np.array([self._p(p) for p in points], np.int32)
        cv2.fillPoly(self.image, [pts], colour, cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(self.mask, [pts], 255, cv2.LINE_AA, _SHIFT)

    def line(self, a, b, width: float, colour) -> None:
        t = max(1, int(round(width * SUPERSAMPLE)))
        cv2.line(self.image, self._p(a), self._p(b), colour, t, cv2.LINE_AA, _SHIFT)


def _shade(colour, factor: float) -> tuple:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in colour)


def draw_puppet(
    background: np.ndarray, kp: np.ndarray, look: Appearance, height_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one figure over ``background`` (H, W, 3 uint8). Returns the image and its bool mask."""
    big = cv2.resize(background, None, fx=SUPERSAMPLE, fy=SUPERSAMPLE, interpolation=cv2.INTER_NEAREST)
    canvas = _Canvas(np.ascontiguousarray(big))
    h = height_px
    p = {name: kp[j, :2] for name, j in J.items()}
    shirt, trousers = CLOTH_NAMES[look.shirt], CLOTH_NAMES[look.trousers]
    skin = look.skin

    _draw_legs(canvas, p, h, look, trousers, skin)
    _draw_torso(canvas, p, h, shirt)
    _draw_arms(canvas, p, h, look, shirt, skin)
    _draw_head(canvas, p, h, look, skin)

    image = cv2.resize(canvas.image, background.shape[1::-1], interpolation=cv2.INTER_AREA)
    mask = cv2.resize(canvas.mask, background.shape[1::-1], interpolation=cv2.INTER_AREA) >= 128
    return image, mask


def _draw_legs(c: _Canvas, p, h, look: Appearance, trousers, skin) -> None:
    for side in ("right", "left"):
        hip, knee, ankle = p[f"{side}_hip"], p[f"{side}_knee"], p[f"{side}_ankle"]
        c.limb(hip, knee, 0.085 * h, trousers)
        c.limb(knee, ankle, 0.065 * h, skin if look.shorts else trousers)
        if look.shorts:
            c.disc(knee, 0.034 * h, trousers)
        outward = -1.0 if side == "right" else 1.0
        c.ellipse(ankle + np.array([outward * 0.018 * h, 0.022 * h]), (0.042 * h, 0.022 * h), 0, look.shoes)


def _draw_torso(c: _Canvas, p, h, shirt) -> None:
    rs, ls, rh, lh = p["right_shoulder"], p["left_shoulder"], p["right_hip"], p["left_hip"]
    across = (ls - rs) / (np.linalg.norm(ls - rs) + 1e-6)
    widen_hip = 0.03 * h * across
    c.polygon([rs - 0.01 * h * across, ls + 0.01 * h * across, lh + widen_hip, rh - widen_hip], shirt)
    c.disc(rs, 0.04 * h, shirt)
    c.disc(ls, 0.04 * h, shirt)
    c.limb((rh + lh) / 2 - widen_hip * 1.3, (rh + lh) / 2 + widen_hip * 1.3, 0.05 * h, shirt)


def _draw_arms(c: _Canvas, p, h, look: Appearance, shirt, skin) -> None:
    for side in ("right", "left"):
        shoulder, elbow, wrist = p[f"{side}_shoulder"], p[f"{side}_elbow"], p[f"{side}_wrist"]
        c.limb(shoulder, elbow, 0.05 * h, shirt)
        c.limb(elbow, wrist, 0.04 * h, shirt if look.long_sleeves else skin)
        if not look.long_sleeves:
            c.disc(elbow + 0.3 * (shoulder - elbow), 0.027 * h, shirt)
        direction = (wrist - elbow) / (np.linalg.norm(wrist - elbow) + 1e-6)
        c.ellipse(
            wrist + 0.03 * h * direction,
            (0.03 * h, 0.022 * h),
            float(np.degrees(np.arctan2(direction[1], direction[0]))),
            skin,
        )


def _draw_head(c: _Canvas, p, h, look: Appearance, skin) -> None:
    nose, neck = p["nose"], p["neck"]
    up = (nose - neck) / (np.linalg.norm(nose - neck) + 1e-6)
    across = np.array([-up[1], up[0]])
    angle = float(np.degrees(np.arctan2(across[1], across[0])))
    c.limb(neck, neck + 0.55 * (nose - neck), 0.045 * h, _shade(skin, 0.92))
    for side in ("right", "left"):
        c.ellipse(p[f"{side}_ear"], (0.012 * h, 0.02 * h), angle, _shade(skin, 0.9))
    centre = nose + 0.012 * h * up
    if look.long_hair:
        c.ellipse(centre - 0.02 * h * up, (0.065 * h, 0.08 * h), angle, look.hair)
    c.ellipse(centre, (0.05 * h, 0.066 * h), angle, skin)
    # Hair cap: the upper half of an ellipse a little larger than the face.
    c.ellipse(centre + 0.012 * h * up, (0.054 * h, 0.062 * h), angle, look.hair, arc=(180, 360))
    for side in ("right", "left"):
        eye = p[f"{side}_eye"]
        c.ellipse(eye, (0.011 * h, 0.007 * h), angle, (250, 250, 250), mask=False)
        c.disc(eye, 0.005 * h, (40, 30, 25), mask=False)
        c.line(
            eye + 0.014 * h * up - 0.01 * h * across,
            eye + 0.016 * h * up + 0.01 * h * across,
            0.004 * h,
            _shade(look.hair, 0.8),
        )
    c.line(nose + 0.01 * h * up, nose - 0.004 * h * up, 0.006 * h, _shade(skin, 0.75))
    mouth = nose - 0.024 * h * up
    c.line(mouth - 0.014 * h * across, mouth + 0.014 * h * across, 0.005 * h, (150, 60, 60))


def make_background(rng: np.random.Generator, width: int, height: int, ground: float) -> tuple[np.ndarray, str]:
    """A room-like scene: a gradient wall with framed shapes, a floor, and a fine texture.

    Returns the image and a short description of the wall colour for prompts.
    """
    names = sorted(CLOTH_NAMES)
    wall_name = names[rng.integers(len(names))]
    wall = np.array(CLOTH_NAMES[wall_name], np.float32) * 0.55 + 100
    floor = np.array(rng.integers(60, 200, 3), np.float32)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    image = np.empty((height, width, 3), np.float32)
    image[:] = wall * (1.05 - 0.2 * y)
    ground_px = int(ground * height) - int(0.02 * height)
    image[ground_px:] = floor * (0.9 + 0.2 * y[ground_px:])
    for _ in range(rng.integers(3, 7)):
        colour = tuple(float(v) for v in np.clip(wall + rng.normal(0, 60, 3), 0, 255))
        cx, cy = int(rng.uniform(0, width)), int(rng.uniform(0, ground_px))
        w, hh = int(rng.uniform(0.06, 0.22) * width), int(rng.uniform(0.06, 0.2) * height)
        if rng.random() < 0.6:
            cv2.rectangle(image, (cx - w // 2, cy - hh // 2), (cx + w // 2, cy + hh // 2), colour, -1)
            cv2.rectangle(
                image,
                (cx - w // 2, cy - hh // 2),
                (cx + w // 2, cy + hh // 2),
                tuple(v * 0.6 for v in colour),
                max(1, width // 128),
            )
        else:
            cv2.circle(image, (cx, cy), min(w, hh) // 2, colour, -1)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), max(1.0, width / 256))
    image += (noise * 10)[..., None]
    return np.clip(image, 0, 255).astype(np.uint8), wall_name

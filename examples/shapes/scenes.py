"""Generated scenes for the segmentation example: shapes on textured backgrounds.

Each scene is a ``size`` x ``size`` RGB image with one or two solid shapes (circle,
square, triangle) over a random texture (stripes, checks or blotches), never
overlapping and in colours that stand out from the texture, and the mask of each
pixel's class. Everything comes from one ``numpy.random.Generator``, so a seed gives
the same scenes on every machine.
"""

from __future__ import annotations

import numpy as np

CLASSES = ["background", "circle", "square", "triangle"]
SIZE = 32
MIN_CONTRAST = 90.0
MAX_TRIES = 20


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    return xs, ys


def _distinct_colour(rng: np.random.Generator, others: list[np.ndarray]) -> np.ndarray:
    """A colour at least MIN_CONTRAST away from each of ``others`` (so shapes are visible)."""
    while True:
        colour = rng.uniform(0, 255, 3)
        if all(np.linalg.norm(colour - o) >= MIN_CONTRAST for o in others):
            return colour


def _blend(weight: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return weight[..., None] * a + (1 - weight[..., None]) * b


def texture(rng: np.random.Generator, a: np.ndarray, b: np.ndarray,
            size: int = SIZE) -> np.ndarray:
    """A float RGB background: stripes, checks or smooth blotches in colours a and b."""
    xs, ys = _grid(size)
    kind = rng.integers(3)
    if kind == 0:
        angle, period = rng.uniform(0, np.pi), rng.uniform(3, 10)
        phase = (xs * np.cos(angle) + ys * np.sin(angle)) * 2 * np.pi / period
        weight = 0.5 + 0.5 * np.sin(phase)
    elif kind == 1:
        cell = int(rng.integers(2, 7))
        weight = (((xs // cell) + (ys // cell)) % 2).astype(np.float64)
    else:
        coarse = rng.uniform(0, 1, (size // 4 + 2, size // 4 + 2))
        weight = np.kron(coarse, np.ones((4, 4)))[:size, :size]
    image = _blend(weight, a, b)
    return image + rng.normal(0, 8, image.shape)


def _shape_mask(kind: int, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    xs, ys = _grid(size)
    if kind == 1:
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    if kind == 2:
        return (np.abs(xs - cx) <= r) & (np.abs(ys - cy) <= r)
    top, left, right = (cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)
    inside = np.ones((size, size), dtype=bool)
    for (x1, y1), (x2, y2) in ((top, right), (right, left), (left, top)):
        inside &= (x2 - x1) * (ys - y1) - (y2 - y1) * (xs - x1) >= 0
    return inside


def _place(rng: np.random.Generator, kind: int, taken: np.ndarray, size: int) -> np.ndarray:
    """A shape's pixels, away from those already taken (empty if no room was found)."""
    for _ in range(MAX_TRIES):
        r = rng.uniform(size * 0.16, size * 0.3)
        cx, cy = rng.uniform(r, size - r, 2)
        inside = _shape_mask(kind, cx, cy, r, size)
        if not (inside & taken).any():
            return inside
    return np.zeros_like(taken)


def scene(rng: np.random.Generator, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 ``[H, W, 3]``) and its class mask (int64 ``[H, W]``)."""
    a = rng.uniform(0, 255, 3)
    b = _distinct_colour(rng, [a])
    image = texture(rng, a, b, size)
    mask = np.zeros((size, size), dtype=np.int64)
    for _ in range(int(rng.integers(1, 3))):
        kind = int(rng.integers(1, len(CLASSES)))
        inside = _place(rng, kind, mask > 0, size)
        colour = _distinct_colour(rng, [a, b])
        image[inside] = colour + rng.normal(0, 8, (int(inside.sum()), 3))
        mask[inside] = kind
    return np.clip(image, 0, 255).round().astype(np.uint8), mask


def scenes(seed: int, count: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``count`` scenes from ``seed``: images ``[N, H, W, 3]`` and masks ``[N, H, W]``."""
    rng = np.random.default_rng(seed)
    pairs = [scene(rng, size) for _ in range(count)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def mean_iou(predicted: np.ndarray, truth: np.ndarray, classes: int = len(CLASSES)) -> float:
    """Mean over classes of intersection / union, counted over all the pixels given."""
    ious = []
    for c in range(classes):
        union = np.logical_or(predicted == c, truth == c).sum()
        if union:
            ious.append(np.logical_and(predicted == c, truth == c).sum() / union)
    return float(np.mean(ious))

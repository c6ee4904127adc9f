"""The renderer behind the ``shapes`` dataset: vectorised numpy, deterministic from a seed.

Every image is 32 x 32 RGB with one object of one of ten classes on a cluttered background:

1. a background: two dark-to-middle greys with a slight tint, mixed by a linear gradient,
   stripes, a checkerboard or smooth blotches, plus low-frequency colour noise;
2. 2-5 distractors that belong to no class, drawn behind the object: strokes (thick line
   segments with round caps) and irregular blobs (unions of three small discs), half of them
   in a colour close to the object's;
3. the object, 8-22 px across, at a random position (always entirely inside the image) and
   rotation. Its colour is usually light and tinted, but in a quarter of the images it is only
   0.15-0.3 (RGB distance) away from the mean background colour around it: those objects are
   hard to see, as in real photographs;
4. in about 30% of the images, a thin stroke drawn *across* the object (occluding part of it);
5. per-pixel noise.

Shapes are signed-distance functions evaluated on rotated, scaled pixel-centre coordinates; the
coverage ``clip(0.5 - distance_px, 0, 1)`` anti-aliases every edge. The object's mask holds the
pixels whose centre is inside the object and not covered by an occluding stroke.

The whole generator is a pure function of ``(seed, split)``: images are rendered in chunks of
:data:`CHUNK` images, each from its own ``numpy`` generator seeded with
``(seed, split code, chunk index)``, so the same seed always gives the same bytes (on a given
machine and numpy version). Change :data:`GENERATOR_VERSION` whenever the output changes: it is
part of the cache file name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GENERATOR_VERSION = "2"
SIZE = 32
CHUNK = 500
CLASS_NAMES = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "ellipse",
    "hexagon",
    "heart",
    "arrow",
)
SPLIT_CODES = {"train": 0, "test": 1}

MIN_OBJECT_PX, MAX_OBJECT_PX = 8.0, 22.0  # object diameter (its circumscribed circle)
MIN_DISTRACTORS, MAX_DISTRACTORS = 2, 5
LOW_CONTRAST_SHARE = 0.25  # objects coloured close to the background beneath them
LOW_CONTRAST_DISTANCE = (0.15, 0.3)  # how close (RGB distance, in [0, 1] units)
SIMILAR_DISTRACTOR_SHARE = 0.5  # distractors coloured close to the object
OCCLUDER_SHARE = 0.3  # images with a thin stroke across the object
# Colours: backgrounds are dark-to-middle greys with a slight tint; contrasting objects are
# lighter, with a stronger tint (grey level range, tint standard deviation).
BACKGROUND_GREY, BACKGROUND_TINT = (0.05, 0.6), 0.06
OBJECT_GREY, OBJECT_TINT = (0.65, 1.0), 0.18

_GRID_Y, _GRID_X = (g.astype(np.float32) + 0.5 for g in np.mgrid[0:SIZE, 0:SIZE])


@dataclass(frozen=True)
class ShapesArrays:
    """Rendered images and what was drawn: ``images`` N x 32 x 32 x 3 uint8, ``masks``
    N x 32 x 32 bool, ``labels`` N int64, and each object's ``centers`` (x, y in pixels, N x 2),
    ``sizes`` (diameter in pixels) and ``angles`` (radians), all float32."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    centers: np.ndarray
    sizes: np.ndarray
    angles: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


# --- signed distances, in units of the object's radius (negative inside) -------------------


def _sdf_circle(u, v):
    return np.sqrt(u * u + v * v) - 1.0


def _sdf_square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) - 0.7


def _sdf_triangle(u, v):
    # Equilateral, circumradius 1: three half-planes at distance 0.5 (the inradius).
    d = -v - 0.5
    for angle in (math.pi / 6, 5 * math.pi / 6):
        d = np.maximum(d, math.cos(angle) * u + math.sin(angle) * v - 0.5)
    return d


def _sdf_folded_edge(u, v, sides: int, outer: float, inner: float):
    """Distance to a star-shaped polygon with ``sides`` points at radius ``outer`` and notches
    at ``inner``: fold the angle into one half-sector and measure against its edge."""
    half = math.pi / sides
    rho = np.sqrt(u * u + v * v)
    a = np.abs(np.mod(np.arctan2(v, u) + half, 2 * half) - half)
    qx, qy = rho * np.cos(a), rho * np.sin(a)
    p0 = (outer, 0.0)
    p1 = (inner * math.cos(half), inner * math.sin(half))
    nx, ny = p1[1] - p0[1], p0[0] - p1[0]  # outward normal of the edge p0 -> p1
    norm = math.hypot(nx, ny)
    return ((qx - p0[0]) * nx + (qy - p0[1]) * ny) / norm


def _sdf_star(u, v):
    return _sdf_folded_edge(u, v, 5, 1.0, 0.45)


def _sdf_cross(u, v):
    au, av = np.abs(u), np.abs(v)
    return np.minimum(np.maximum(au - 1.0, av - 0.28), np.maximum(au - 0.28, av - 1.0))


def _sdf_ring(u, v):
    return np.abs(np.sqrt(u * u + v * v) - 0.75) - 0.25


def _sdf_ellipse(u, v):
    b = 0.5
    f = u * u + (v / b) ** 2 - 1.0
    grad = 2.0 * np.sqrt(u * u + (v / (b * b)) ** 2) + 1e-6
    return f / grad


def _sdf_hexagon(u, v):
    d = np.abs(u)
    for angle in (math.pi / 3, 2 * math.pi / 3):
        d = np.maximum(d, np.abs(math.cos(angle) * u + math.sin(angle) * v))
    return d - math.sqrt(3) / 2


def _sdf_heart(u, v):
    # A square standing on a corner with two discs on its upper edges, centred vertically.
    h, y0 = 0.8, -0.083
    w = v - y0
    diamond = (np.abs(u) + np.abs(w) - h) / math.sqrt(2)
    radius = h / math.sqrt(2)
    lobes = np.sqrt((np.abs(u) - h / 2) ** 2 + (w - h / 2) ** 2) - radius
    return np.minimum(diamond, lobes)


def _sdf_arrow(u, v):
    av = np.abs(v)
    shaft = np.maximum(np.maximum(av - 0.2, -1.0 - u), u - 0.2)
    head = np.maximum(0.1 - u, (0.6 * (u - 1.0) + 0.9 * av) / math.hypot(0.6, 0.9))
    return np.minimum(shaft, head)


SDFS = (
    _sdf_circle,
    _sdf_square,
    _sdf_triangle,
    _sdf_star,
    _sdf_cross,
    _sdf_ring,
    _sdf_ellipse,
    _sdf_hexagon,
    _sdf_heart,
    _sdf_arrow,
)


def object_distance(
    label: int, centers: np.ndarray, sizes: np.ndarray, angles: np.ndarray
) -> np.ndarray:
    """Signed distance in pixels (negative inside) from every pixel centre to objects of class
    ``label`` with the given ``centers`` (n x 2, x then y), ``sizes`` (diameters) and
    ``angles``: an n x 32 x 32 float32 array."""
    radius = (sizes / 2).astype(np.float32)[:, None, None]
    cos = np.cos(angles).astype(np.float32)[:, None, None]
    sin = np.sin(angles).astype(np.float32)[:, None, None]
    dx = _GRID_X - centers[:, 0].astype(np.float32)[:, None, None]
    dy = _GRID_Y - centers[:, 1].astype(np.float32)[:, None, None]
    u = (dx * cos + dy * sin) / radius
    v = (dy * cos - dx * sin) / radius
    return SDFS[label](u, v) * radius


def object_mask(label: int, center: tuple[float, float], size: float, angle: float) -> np.ndarray:
    """The 32 x 32 boolean mask of one unoccluded object (pixel centres inside it)."""
    distance = object_distance(
        label,
        np.asarray([center], dtype=np.float32),
        np.asarray([size], dtype=np.float32),
        np.asarray([angle], dtype=np.float32),
    )
    return distance[0] <= 0


# --- rendering ------------------------------------------------------------------------------


def _upsample_matrix(cells: int) -> np.ndarray:
    """SIZE x cells bilinear interpolation weights (edge-clamped)."""
    pos = np.clip((np.arange(SIZE) + 0.5) * cells / SIZE - 0.5, 0, cells - 1)
    low = np.floor(pos).astype(int)
    high = np.minimum(low + 1, cells - 1)
    frac = pos - low
    matrix = np.zeros((SIZE, cells), dtype=np.float32)
    matrix[np.arange(SIZE), low] += 1 - frac
    matrix[np.arange(SIZE), high] += frac
    return matrix


_UP4, _UP5 = _upsample_matrix(4), _upsample_matrix(5)


def _coverage(distance_px: np.ndarray) -> np.ndarray:
    return np.clip(0.5 - distance_px, 0.0, 1.0)


def _blend(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """In place: ``canvas = canvas * (1 - alpha) + colour * alpha`` (alpha n x H x W)."""
    a = alpha[..., None]
    canvas += a * (colour[:, None, None, :] - canvas)


def _uniform(rng, low, high, n):
    return rng.uniform(low, high, n).astype(np.float32)


def _muted(rng: np.random.Generator, n: int) -> np.ndarray:
    """Background colours: a dark-to-middle grey level with a slight tint (n x 3)."""
    grey = rng.uniform(*BACKGROUND_GREY, (n, 1))
    return np.clip(grey + rng.normal(0, BACKGROUND_TINT, (n, 3)), 0, 1)


def _light(rng: np.random.Generator, n: int) -> np.ndarray:
    """Contrasting object colours: a light grey level with a strong tint (n x 3)."""
    grey = rng.uniform(*OBJECT_GREY, (n, 1))
    return np.clip(grey + rng.normal(0, OBJECT_TINT, (n, 3)), 0, 1)


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    kind = rng.integers(0, 4, n)
    c0 = _muted(rng, n).astype(np.float32)
    c1 = np.where(
        rng.uniform(0, 1, (n, 1)) < 0.5,
        _muted(rng, n),
        np.clip(c0 + rng.normal(0, 0.15, (n, 3)), 0, 1),
    ).astype(np.float32)
    angle = _uniform(rng, 0, 2 * math.pi, n)[:, None, None]
    period = _uniform(rng, 3, 11, n)[:, None, None]
    phase = _uniform(rng, 0, 2 * math.pi, n)[:, None, None]
    cells = rng.uniform(0, 1, (n, 5, 5)).astype(np.float32)  # drawn for all: fixed stream
    t = np.empty((n, SIZE, SIZE), dtype=np.float32)
    for k in range(4):
        idx = np.flatnonzero(kind == k)
        if idx.size == 0:
            continue
        a, p, ph = angle[idx], period[idx], phase[idx]
        along = _GRID_X * np.cos(a) + _GRID_Y * np.sin(a)
        if k == 0:  # linear gradient
            t[idx] = np.clip(0.5 + (along - along.mean(axis=(1, 2), keepdims=True)) / 28, 0, 1)
        elif k == 1:  # stripes
            t[idx] = 0.5 + 0.5 * np.sin(along * (2 * math.pi) / p + ph)
        elif k == 2:  # checkerboard
            across = _GRID_Y * np.cos(a) - _GRID_X * np.sin(a)
            s = np.sin(along * (2 * math.pi) / p + ph) * np.sin(across * (2 * math.pi) / p)
            t[idx] = 0.5 + 0.5 * np.clip(4 * s, -1, 1)
        else:  # smooth blotches
            t[idx] = _UP5 @ cells[idx] @ _UP5.T
    canvas = c0[:, None, None, :] + t[..., None] * (c1 - c0)[:, None, None, :]
    amplitude = _uniform(rng, 0, 0.15, n)[:, None, None, None]
    low_freq = _UP4 @ rng.standard_normal((n, 3, 4, 4), dtype=np.float32) @ _UP4.T
    canvas += amplitude * low_freq.transpose(0, 2, 3, 1)
    return canvas


def _stroke_distance(a: np.ndarray, b: np.ndarray, half_width: np.ndarray) -> np.ndarray:
    """Distance in pixels to capsules from ``a`` to ``b`` (n x 2 each)."""
    ax, ay = (a[:, i].astype(np.float32)[:, None, None] for i in (0, 1))
    bx, by = (b[:, i].astype(np.float32)[:, None, None] for i in (0, 1))
    ex, ey = bx - ax, by - ay
    px, py = _GRID_X - ax, _GRID_Y - ay
    h = np.clip((px * ex + py * ey) / (ex * ex + ey * ey + 1e-6), 0, 1)
    dx, dy = px - h * ex, py - h * ey
    return np.sqrt(dx * dx + dy * dy) - half_width.astype(np.float32)[:, None, None]


def _blob_distance(centers: np.ndarray, offsets: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Distance in pixels to unions of discs: ``offsets`` n x k x 2 around ``centers``."""
    d = None
    for j in range(offsets.shape[1]):
        cx = (centers[:, 0] + offsets[:, j, 0]).astype(np.float32)[:, None, None]
        cy = (centers[:, 1] + offsets[:, j, 1]).astype(np.float32)[:, None, None]
        dj = np.sqrt((_GRID_X - cx) ** 2 + (_GRID_Y - cy) ** 2) - radii[:, j, None, None]
        d = dj if d is None else np.minimum(d, dj)
    return d


def _random_strokes(rng: np.random.Generator, n: int, length: tuple, width: tuple):
    start = rng.uniform(0, SIZE, (n, 2))
    direction = rng.uniform(0, 2 * math.pi, n)
    span = rng.uniform(*length, n)
    end = start + span[:, None] * np.stack([np.cos(direction), np.sin(direction)], axis=1)
    return start, end, rng.uniform(*width, n)


def _local_mean(canvas: np.ndarray, centers: np.ndarray, half: int) -> np.ndarray:
    """Mean colour of each image in the (2 half + 1)^2 window around its centre (n x 3)."""
    n = len(canvas)
    x = np.clip(centers[:, 0].astype(int), half, SIZE - 1 - half)
    y = np.clip(centers[:, 1].astype(int), half, SIZE - 1 - half)
    offsets = np.arange(-half, half + 1)
    rows = (y[:, None] + offsets)[:, :, None]
    cols = (x[:, None] + offsets)[:, None, :]
    return canvas[np.arange(n)[:, None, None], rows, cols].mean(axis=(1, 2))


def _object_colours(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """Object colours: in :data:`LOW_CONTRAST_SHARE` of the images a colour at a distance in
    :data:`LOW_CONTRAST_DISTANCE` from the mean background colour around the object's centre
    (in any direction); otherwise a light colour (:func:`_light`)."""
    n = len(under)
    direction = rng.normal(0, 1, (n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-9
    close = np.clip(under + direction * rng.uniform(*LOW_CONTRAST_DISTANCE, (n, 1)), 0, 1)
    contrasting = _light(rng, n)
    low_contrast = rng.uniform(0, 1, (n, 1)) < LOW_CONTRAST_SHARE
    return np.where(low_contrast, close, contrasting)


def _render_chunk(rng: np.random.Generator, labels: np.ndarray):
    n = len(labels)
    canvas = _background(rng, n)

    # Object parameters are drawn first so that distractors can share the object's colour.
    sizes = _uniform(rng, MIN_OBJECT_PX, MAX_OBJECT_PX, n)
    margin = sizes[:, None] / 2 + 0.5
    centers = (margin + rng.uniform(0, 1, (n, 2)) * (SIZE - 2 * margin)).astype(np.float32)
    angles = _uniform(rng, 0, 2 * math.pi, n)
    under = _local_mean(canvas, centers, 3)
    colour = _object_colours(rng, under).astype(np.float32)

    # Distractors, behind the object.
    count = rng.integers(MIN_DISTRACTORS, MAX_DISTRACTORS + 1, n)
    for slot in range(MAX_DISTRACTORS):
        is_stroke = rng.uniform(0, 1, n) < 0.5
        similar = rng.uniform(0, 1, (n, 1)) < SIMILAR_DISTRACTOR_SHARE
        tint = np.where(
            similar,
            np.clip(colour + rng.normal(0, 0.08, (n, 3)), 0, 1),
            rng.uniform(0, 1, (n, 3)),
        ).astype(np.float32)
        start, end, width = _random_strokes(rng, n, (5, 16), (0.5, 1.4))
        blob_center = rng.uniform(0, SIZE, (n, 2))
        offsets = rng.normal(0, 1.5, (n, 3, 2))
        radii = rng.uniform(1.0, 2.5, (n, 3)).astype(np.float32)
        active = slot < count
        for stroke in (True, False):
            idx = np.flatnonzero(active & (is_stroke == stroke))
            if idx.size == 0:
                continue
            if stroke:
                distance = _stroke_distance(start[idx], end[idx], width[idx])
            else:
                distance = _blob_distance(blob_center[idx], offsets[idx], radii[idx])
            sub = canvas[idx]
            _blend(sub, _coverage(distance), tint[idx])
            canvas[idx] = sub

    # The object.
    masks = np.zeros((n, SIZE, SIZE), dtype=bool)
    for label in range(len(CLASS_NAMES)):
        idx = np.flatnonzero(labels == label)
        if idx.size == 0:
            continue
        distance = object_distance(label, centers[idx], sizes[idx], angles[idx])
        sub = canvas[idx]
        _blend(sub, _coverage(distance), colour[idx])
        canvas[idx] = sub
        masks[idx] = distance <= 0

    # Thin occluding strokes in front of the object: they take pixels out of its mask.
    occluded = rng.uniform(0, 1, n) < OCCLUDER_SHARE
    # Each crosses the object: its midpoint lies within 0.7 radius of the object's centre.
    mid = centers + rng.uniform(-0.7, 0.7, (n, 2)) * (sizes[:, None] / 2)
    heading = rng.uniform(0, 2 * math.pi, n)
    half = rng.uniform(3, 9, n)[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    start, end, width = mid - half, mid + half, rng.uniform(0.4, 0.8, n)
    occluder_colour = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    idx = np.flatnonzero(occluded)
    if idx.size:
        alpha = _coverage(_stroke_distance(start[idx], end[idx], width[idx]))
        sub = canvas[idx]
        _blend(sub, alpha, occluder_colour[idx])
        canvas[idx] = sub
        masks[idx] &= alpha < 0.5

    sigma = _uniform(rng, 0.01, 0.07, n)[:, None, None, None]
    canvas += sigma * rng.standard_normal((n, SIZE, SIZE, 3), dtype=np.float32)
    images = np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return images, masks, centers, sizes, angles


def render_shapes(count: int, seed: int = 0, split: str = "train") -> ShapesArrays:
    """Render the first ``count`` images of ``split`` for ``seed`` (class-balanced within each
    chunk of :data:`CHUNK` images)."""
    code = SPLIT_CODES[split]
    parts = []
    for chunk, start in enumerate(range(0, count, CHUNK)):
        rng = np.random.default_rng([seed, code, chunk])
        labels = rng.permutation(np.arange(CHUNK) % len(CLASS_NAMES)).astype(np.int64)
        keep = min(CHUNK, count - start)  # whole chunks are rendered: prefixes agree
        parts.append(tuple(a[:keep] for a in (*_render_chunk(rng, labels), labels)))
    if not parts:
        empty = np.zeros((0,), dtype=np.float32)
        return ShapesArrays(
            np.zeros((0, SIZE, SIZE, 3), np.uint8),
            np.zeros((0, SIZE, SIZE), bool),
            np.zeros((0,), np.int64),
            np.zeros((0, 2), np.float32),
            empty,
            empty,
        )
    images, masks, centers, sizes, angles, labels = (
        np.concatenate(p) for p in zip(*parts, strict=False)
    )
    return ShapesArrays(images, masks, labels, centers, sizes, angles)

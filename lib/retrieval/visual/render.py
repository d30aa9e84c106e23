"""Product photos of the synthetic catalogue, drawn procedurally from an offer's ``image_ref``.

``image_ref`` is ``synth://img/<product key, 16 hex>/<shot>`` (retrieval.synth.offers): the product key
decides what the product looks like (one of seven silhouettes, its proportions, colours, a pattern
among solid / stripes / dots / checks / gradient, and a printed logo), the shot how this offer
photographed it (scale, offset, a small rotation, light, the studio background's tint). Offers of one
product are therefore different shots of the same object, as on a real marketplace, and nothing is
stored: any machine renders the same pixels from the reference.
"""

from __future__ import annotations

import re

import numpy as np

KINDS = ("tshirt", "bag", "bottle", "shoe", "watch", "box", "hat")
PATTERNS = ("solid", "stripes", "dots", "checks", "gradient")
LOGOS = ("circle", "square", "triangle", "ring")
_REF = re.compile(r"^synth://img/([0-9a-f]{16})/(\d+)$")


def parse_ref(ref: str) -> tuple[int, int]:
    """``synth://img/<key>/<shot>`` -> (product key, shot).

    Raises:
        ValueError: not a synthetic image reference.
    """
    m = _REF.match(ref or "")
    if not m:
        raise ValueError(f"not a synthetic image reference: {ref!r}")
    return int(m.group(1), 16), int(m.group(2))


def is_synthetic(ref: str | None) -> bool:
    return bool(ref) and _REF.match(ref or "") is not None


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], np.float32)


def _shape(kind: str, x: np.ndarray, y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Membership of object coordinates (x right, y down, both in about [-1, 1]) in the silhouette."""
    a, b = 0.75 + 0.2 * g[0], 0.75 + 0.2 * g[1]
    if kind == "box":
        return (np.abs(x) < 0.55 * a) & (np.abs(y) < 0.7 * b)
    if kind == "watch":
        face = (x / (0.45 * a)) ** 2 + (y / (0.45 * a)) ** 2 < 1
        strap = (np.abs(x) < 0.22 * b) & (np.abs(y) < 0.95)
        return face | strap
    if kind == "tshirt":
        body = (np.abs(x) < 0.42 * a) & (y > -0.62) & (y < 0.8 * b)
        sleeves = (
            (np.abs(x) < 0.85 * a) & (y > -0.62) & (y < -0.62 + 0.45 * b) & (np.abs(x) - 0.4 < -(y + 0.2))
        )
        neck = x**2 + (y + 0.66) ** 2 < (0.16 + 0.05 * g[2]) ** 2
        return (body | sleeves) & ~neck
    if kind == "bottle":
        shoulder = (x / (0.32 * a)) ** 2 + ((y + 0.15) / 0.3) ** 2 < 1
        body = (np.abs(x) < 0.32 * a) & (y > -0.15) & (y < 0.85)
        neck = (np.abs(x) < 0.11 + 0.03 * g[2]) & (y > -0.85) & (y < -0.2)
        return shoulder | body | neck
    if kind == "shoe":
        sole = ((x - 0.05) / (0.85 * a)) ** 2 + ((y - 0.3) / (0.28 * b)) ** 2 < 1
        ankle = ((x + 0.35) / 0.33) ** 2 + ((y - 0.02) / (0.45 * b)) ** 2 < 1
        return (sole | ankle) & (y < 0.45)
    if kind == "bag":
        body = (y > -0.2) & (y < 0.75) & (np.abs(x) < 0.55 * a + 0.15 * (y + 0.2))
        r = np.sqrt(x**2 + (y + 0.2) ** 2)
        handle = (r > 0.3 * b) & (r < 0.3 * b + 0.08) & (y < -0.2)
        return body | handle
    # hat
    dome = (x / (0.5 * a)) ** 2 + ((y - 0.2) / (0.6 * b)) ** 2 < 1
    brim = (x / (0.9 * a)) ** 2 + ((y - 0.2) / 0.12) ** 2 < 1
    return (dome & (y < 0.2)) | brim


def _texture(
    pattern: str, x: np.ndarray, y: np.ndarray, c1: np.ndarray, c2: np.ndarray, g: np.ndarray
) -> np.ndarray:
    one = np.ones_like(x)[..., None]
    if pattern == "solid":
        return one * c1
    if pattern == "gradient":
        t = np.clip((y + 1.0) / 2.0, 0, 1)[..., None]
        return (1 - t) * c1 + t * c2
    freq = 6.0 + 10.0 * g[3]
    if pattern == "stripes":
        theta = np.pi * g[4]
        on = np.sin((x * np.cos(theta) + y * np.sin(theta)) * freq) > 0.0
    elif pattern == "dots":
        fx, fy = np.sin(x * freq), np.sin(y * freq)
        on = (fx**2 + fy**2) < 0.35
    else:  # checks
        on = np.sin(x * freq) * np.sin(y * freq) > 0
    return np.where(on[..., None], c2, c1)


def _logo(kind: str, x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    dx, dy = x - cx, y - cy
    if kind == "circle":
        return dx**2 + dy**2 < r**2
    if kind == "ring":
        d = np.sqrt(dx**2 + dy**2)
        return (d < r) & (d > 0.55 * r)
    if kind == "square":
        return (np.abs(dx) < 0.8 * r) & (np.abs(dy) < 0.8 * r)
    return (dy < 0.7 * r) & (dy > -r + 1.7 * np.abs(dx))  # triangle


def render(key: int, shot: int, size: int = 64) -> np.ndarray:
    """The photo of product ``key`` in ``shot``: float32 (size, size, 3) in [0, 1], studio background."""
    prod = np.random.default_rng([key & 0xFFFFFFFF, key >> 32, 7])
    kind = KINDS[int(prod.integers(len(KINDS)))]
    pattern = PATTERNS[int(prod.integers(len(PATTERNS)))]
    logo = LOGOS[int(prod.integers(len(LOGOS)))]
    g = prod.random(8)
    hue = float(prod.random())
    c1 = _hsv(hue, 0.35 + 0.6 * float(prod.random()), 0.3 + 0.6 * float(prod.random()))
    c2 = _hsv((hue + 0.25 + 0.5 * float(prod.random())) % 1.0, 0.3 + 0.6 * float(prod.random()), 0.9)
    c3 = _hsv(float(prod.random()), 0.8, 0.25 + 0.7 * float(prod.random()))
    logo_at = (0.3 * (float(prod.random()) - 0.5), 0.3 * (float(prod.random()) - 0.3))
    logo_r = 0.1 + 0.08 * float(prod.random())

    sh = np.random.default_rng([key & 0xFFFFFFFF, key >> 32, 11, shot])
    scale = 0.82 + 0.14 * float(sh.random())
    ox, oy = 0.08 * (sh.random(2) - 0.5)
    angle = np.deg2rad(10.0 * (float(sh.random()) - 0.5))
    light = 0.9 + 0.15 * float(sh.random())
    lx, ly = sh.random(2) - 0.5
    bg = 0.93 + 0.06 * sh.random(3).astype(np.float32)

    ss = 2  # supersampling: anti-aliased edges
    n = size * ss
    v, u = np.mgrid[0:n, 0:n].astype(np.float32)
    u = (u + 0.5) / n * 2.0 - 1.0
    v = (v + 0.5) / n * 2.0 - 1.0
    u, v = (u - ox) / scale, (v - oy) / scale
    x = np.cos(angle) * u + np.sin(angle) * v
    y = -np.sin(angle) * u + np.cos(angle) * v
    inside = _shape(kind, x, y, g)
    colour = _texture(pattern, x, y, c1, c2, g)
    mark = _logo(logo, x, y, logo_at[0], logo_at[1], logo_r) & inside
    colour = np.where(mark[..., None], c3, colour)
    shade = np.clip(light * (1.0 - 0.25 * (x * lx + y * ly)), 0.4, 1.2)[..., None]
    colour = np.clip(colour * shade, 0.0, 1.0)
    img = np.where(inside[..., None], colour, bg[None, None, :])
    img = img.reshape(size, ss, size, ss, 3).mean(axis=(1, 3))
    return img.astype(np.float32)


def render_ref(ref: str, size: int = 64) -> np.ndarray:
    key, shot = parse_ref(ref)
    return render(key, shot, size)

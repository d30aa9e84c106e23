"""Synthetic "street" photos from shop photos, as the production team made them.

A shop photo shows the product on a near-uniform studio background. :func:`object_mask` cuts the
product out (distance to the background colour estimated on the border, cleaned up morphologically);
:func:`street_photo` pastes it onto a background with

- ``seamless``: Poisson blending (:func:`poisson_blend`: the object's gradients, the background's
  values on the mask's boundary; Pérez et al. 2003), or
- ``blur``: a Gaussian-blurred mask as alpha (:func:`alpha_blend`),

onto a ``natural`` background (random crops of real photos that ship inside installed packages:
scikit-learn's two sample photos and matplotlib's; nothing is downloaded) or a ``uniform`` texture (a
flat colour with low-frequency noise), with random scale, position, rotation, perspective, colour
jitter, blur and JPEG compression. Everything is drawn from a ``numpy.random.Generator``: the same
seed gives the same photo.

Train and test use disjoint parts of each natural photo (:func:`natural_backgrounds` ``split``), so a
test street photo never sits on a background crop seen in training.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import splu

from retrieval.visual.images import decode, jpeg_roundtrip, resize

BLENDS = ("seamless", "blur")
BACKGROUNDS = ("natural", "uniform")


def object_mask(img: np.ndarray, threshold: float = 0.08) -> np.ndarray:
    """Boolean (H, W) mask of the object on a near-uniform background.

    The background colour is the median of the image's border pixels; a pixel is object when its
    colour is farther than ``threshold`` from it. Small specks are opened away, holes filled (a white
    logo on a shirt is still shirt), and only components touching the largest one's bounding box kept.
    An image whose mask is empty or covers the whole frame gets an empty mask (see filtering).
    """
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    bg = np.median(border, axis=0)
    dist = np.sqrt(((img - bg) ** 2).sum(axis=-1))
    mask = dist > threshold
    mask = ndimage.binary_opening(mask, iterations=1)
    mask = ndimage.binary_closing(mask, iterations=2)
    mask = ndimage.binary_fill_holes(mask)
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(img.shape[:2], bool)
    sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
    keep = np.flatnonzero(sizes >= 0.05 * sizes.max()) + 1
    mask = np.isin(labels, keep)
    if mask.mean() > 0.97:
        return np.zeros(img.shape[:2], bool)
    return mask


def _laplacian_system(mask: np.ndarray) -> tuple[sparse.csc_matrix, np.ndarray]:
    """The 5-point Laplacian over the pixels of ``mask`` (which must not touch the image border)."""
    idx = -np.ones(mask.shape, np.int64)
    ys, xs = np.nonzero(mask)
    idx[ys, xs] = np.arange(len(ys))
    rows, cols, vals = [np.arange(len(ys))], [np.arange(len(ys))], [np.full(len(ys), 4.0)]
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        nb = idx[ys + dy, xs + dx]
        ok = nb >= 0
        rows.append(np.flatnonzero(ok))
        cols.append(nb[ok])
        vals.append(-np.ones(int(ok.sum())))
    a = sparse.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(ys), len(ys))
    )
    return a, np.stack([ys, xs], axis=1)


def poisson_blend(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Seamless cloning: inside ``mask`` the result has ``src``'s gradients and meets ``dst`` on the
    mask's boundary (Dirichlet); outside it is ``dst``. ``src`` and ``dst`` are aligned (H, W, 3).

    The mask should enclose the object with a margin of its own background: the gradients across the
    object's edge are what carry its colour (a flat object under a tight mask takes the destination's
    colour); :func:`street_photo` dilates the object mask for this."""
    mask = mask.copy()
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = False
    if not mask.any():
        return dst.copy()
    a, pix = _laplacian_system(mask)
    solve = splu(a).solve
    ys, xs = pix[:, 0], pix[:, 1]
    out = dst.astype(np.float64).copy()
    for c in range(dst.shape[2]):
        s, d = src[..., c].astype(np.float64), dst[..., c].astype(np.float64)
        b = 4.0 * s[ys, xs]
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            ny, nx = ys + dy, xs + dx
            b -= s[ny, nx]  # guidance: the source's gradient on every edge
            outside = ~mask[ny, nx]
            b[outside] += d[ny[outside], nx[outside]]  # boundary values: the destination
        out[ys, xs, c] = solve(b)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def alpha_blend(src: np.ndarray, dst: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Pastes ``src`` over ``dst`` with the mask's edges softened by a Gaussian of ``sigma`` pixels."""
    alpha = ndimage.gaussian_filter(mask.astype(np.float32), sigma)[..., None]
    alpha = np.clip(alpha * mask.any(), 0.0, 1.0)
    return (alpha * src + (1.0 - alpha) * dst).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _natural_photos() -> tuple[np.ndarray, ...]:
    """Real photos that ship inside installed packages (no download): float (H, W, 3) arrays."""
    import os

    import matplotlib
    import sklearn.datasets

    paths = [
        os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", "china.jpg"),
        os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", "flower.jpg"),
        os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"),
    ]
    photos = []
    for p in paths:
        if os.path.exists(p):
            with open(p, "rb") as f:
                photos.append(decode(f.read()))
    if not photos:
        raise FileNotFoundError(f"no natural background photos found (looked for {paths})")
    return tuple(photos)


def natural_backgrounds(split: str) -> tuple[np.ndarray, ...]:
    """The natural photos' left 70% (``train``) or right 30% (``test``): disjoint background crops."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test; got {split!r}")
    out = []
    for p in _natural_photos():
        cut = int(p.shape[1] * 0.7)
        out.append(p[:, :cut] if split == "train" else p[:, cut:])
    return tuple(out)


def natural_background(rng: np.random.Generator, size: int, split: str) -> np.ndarray:
    photo = natural_backgrounds(split)[int(rng.integers(len(natural_backgrounds(split))))]
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.3, 1.0))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = photo[y : y + side, x : x + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return resize(np.ascontiguousarray(crop), size)


def uniform_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A flat random colour with low-frequency noise (a wall, a table, a sheet)."""
    base = rng.uniform(0.1, 0.9, size=3).astype(np.float32)
    noise = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), size / 12.0)
    noise = noise / (np.abs(noise).max() + 1e-9)
    return np.clip(base[None, None, :] + 0.08 * noise[..., None], 0, 1).astype(np.float32)


def _warp(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator, size: int, scale: float) -> tuple:
    """Object scaled by ``scale``, rotated, with a mild perspective, at a random place in a size x size frame.

    Returns the warped image and mask (zeros outside the object)."""
    h = img.shape[0]
    angle = np.deg2rad(rng.uniform(-25, 25))
    persp = rng.uniform(-0.35, 0.35, size=2) / h  # projective terms of the homography
    s = scale * size / h
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return np.zeros((size, size, 3), np.float32), np.zeros((size, size), bool)
    cy, cx = ys.mean(), xs.mean()
    free = size * (1 - scale) / 2
    ty = size / 2 + rng.uniform(-free, free) * 0.8
    tx = size / 2 + rng.uniform(-free, free) * 0.8
    # output pixel (v, u) -> source pixel: inverse of translate . rotate . scale . perspective
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    dv, du = (v - ty) / s, (u - tx) / s
    ry = np.cos(angle) * dv + np.sin(angle) * du
    rx = -np.sin(angle) * dv + np.cos(angle) * du
    w = 1.0 + persp[0] * rx + persp[1] * ry
    sy, sx = cy + ry / w, cx + rx / w
    coords = np.stack([sy, sx])
    out = np.stack(
        [ndimage.map_coordinates(img[..., c], coords, order=1, mode="nearest") for c in range(3)], -1
    )
    m = ndimage.map_coordinates(mask.astype(np.float32), coords, order=1, mode="constant") > 0.5
    return out.astype(np.float32), m


@dataclass
class StreetStyle:
    """What kind of street photo to make: the blend, the background, and the photo's degradations."""

    blend: str = "seamless"  # seamless | blur | mixed (either, at random)
    background: str = "natural"  # natural | uniform | mixed
    split: str = "train"  # which part of the natural photos the backgrounds come from
    min_scale: float = 0.6  # the object's size relative to its size in the shop photo
    max_scale: float = 1.0


def street_photo(
    shop: np.ndarray, rng: np.random.Generator, style: StreetStyle, mask: np.ndarray | None = None
) -> np.ndarray:
    """A synthetic street photo of the object in ``shop`` (same size), drawn from ``rng``."""
    size = shop.shape[0]
    mask = object_mask(shop) if mask is None else mask
    blend = style.blend if style.blend != "mixed" else BLENDS[int(rng.integers(2))]
    back = style.background if style.background != "mixed" else BACKGROUNDS[int(rng.integers(2))]
    if blend not in BLENDS or back not in BACKGROUNDS:
        raise ValueError(f"unknown street style {style}")
    bg = natural_background(rng, size, style.split) if back == "natural" else uniform_background(rng, size)
    obj, m = _warp(shop, mask, rng, size, rng.uniform(style.min_scale, style.max_scale))
    # colour jitter of the object (another camera, another light) before it meets the background
    gain = rng.uniform(0.75, 1.2) * rng.uniform(0.9, 1.1, size=3)
    obj = np.clip((obj - 0.5) * rng.uniform(0.8, 1.15) + 0.5, 0, 1) * gain
    if blend == "seamless":
        margin = ndimage.binary_dilation(m, iterations=max(2, size // 24))
        out = poisson_blend(np.clip(obj, 0, 1).astype(np.float32), bg, margin)
    else:
        out = alpha_blend(np.clip(obj, 0, 1).astype(np.float32), bg, m, sigma=rng.uniform(0.6, 1.8))
    if rng.random() < 0.6:
        out = ndimage.gaussian_filter(out, sigma=(rng.uniform(0.3, 1.2),) * 2 + (0,))
    out = np.clip(out + rng.normal(0, 0.015, out.shape), 0, 1).astype(np.float32)
    return jpeg_roundtrip(out, int(rng.integers(35, 90)))


def shop_augment(shop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ``shop_only`` variant's positives: the shop photo itself, lightly re-photographed (crop,
    flip, colour jitter, blur) on its own studio background: augmentation, no street synthesis."""
    size = shop.shape[0]
    crop = int(size * rng.uniform(0.8, 1.0))
    y, x = int(rng.integers(0, size - crop + 1)), int(rng.integers(0, size - crop + 1))
    out = resize(np.ascontiguousarray(shop[y : y + crop, x : x + crop]), size)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = np.clip((out - 0.5) * rng.uniform(0.8, 1.2) + 0.5, 0, 1) * rng.uniform(0.8, 1.15, size=3)
    if rng.random() < 0.5:
        out = ndimage.gaussian_filter(out, sigma=(rng.uniform(0.3, 1.0),) * 2 + (0,))
    return np.clip(out, 0, 1).astype(np.float32)

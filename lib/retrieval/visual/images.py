"""Images as float arrays (H, W, 3) in [0, 1], and their bytes (PNG for shop images, JPEG for street)."""

from __future__ import annotations

import io
import warnings

import numpy as np

# visual.max_pixels' default: an image whose header says more is not decoded (a 27 KB PNG can say 15000 x 15000)
MAX_PIXELS = 40_000_000


class ImageTooLarge(ValueError):
    """The image's header declares more pixels than the bound: it is not decoded."""


def decode(data: bytes, size: int | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """JPEG/PNG bytes -> float32 (H, W, 3) in [0, 1]; resized to ``size`` x ``size`` if given.

    The pixel count is read from the header before anything is decoded.

    Raises:
        ImageTooLarge: the header declares more than ``max_pixels`` pixels.
        ValueError: the bytes are not an image Pillow can read.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # Pillow warns on big headers; here they are an error, below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
        w, h = opened.size
        if w * h > max_pixels:
            raise ImageTooLarge(f"{w} x {h} pixels, over the bound of {max_pixels:,} (visual.max_pixels)")
        opened.load()
    except Image.DecompressionBombError as e:  # Pillow's own bound, checked when the header is read
        raise ImageTooLarge(str(e)) from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"not a readable image ({len(data)} bytes): {e}") from None
    img = opened.convert("RGB")
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def encode(img: np.ndarray, fmt: str = "PNG", quality: int = 90) -> bytes:
    """Float (H, W, 3) in [0, 1] -> PNG or JPEG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    kwargs = {"quality": int(quality)} if fmt.upper() == "JPEG" else {}
    Image.fromarray(to_uint8(img)).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Square resize (bilinear) of a float image."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    from PIL import Image

    out = Image.fromarray(to_uint8(img)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.float32) / 255.0


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """The image after JPEG compression at ``quality`` (the artefacts of a phone upload)."""
    return decode(encode(img, "JPEG", quality))


def grid(rows: list[list[np.ndarray]], pad: int = 2, borders: list[list[str]] | None = None) -> np.ndarray:
    """Tiles equally sized images into one picture; ``borders`` colours a frame per tile
    (``"g"`` green, ``"r"`` red, ``""`` none), e.g. hits and misses of a query's results."""
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    out = np.ones(((h + pad) * len(rows) + pad, (w + pad) * ncol + pad, 3), np.float32)
    colours = {"g": (0.1, 0.7, 0.2), "r": (0.85, 0.1, 0.1)}
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y : y + h, x : x + w] = img[:h, :w, :3]
            c = borders[i][j] if borders else ""
            if c:
                b = max(1, h // 24)
                col = np.asarray(colours[c], np.float32)
                out[y : y + b, x : x + w] = col
                out[y + h - b : y + h, x : x + w] = col
                out[y : y + h, x : x + b] = col
                out[y : y + h, x + w - b : x + w] = col
    return out

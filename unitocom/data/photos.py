"""A few real photographs for image-reconstruction demos, from the samples scikit-image ships inside its wheel.

Only samples stored in the installed package are listed: others (`skimage.data.eagle`, `kidney`, ...) would be
fetched from the internet, which this testbed never does at run time.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

PHOTO_NAMES: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle",
                                "immunohistochemistry", "hubble_deep_field", "retina")


def _raw(name: str) -> np.ndarray:
    import skimage.data  # imported here: scikit-image is slow to import and only this module needs it

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    if name not in PHOTO_NAMES:
        raise ValueError(f"unknown photo {name!r}; choose one of {PHOTO_NAMES}")
    return getattr(skimage.data, name)()


def load_photo(name: str, size_px: int) -> np.ndarray:
    """uint8 RGB [size_px, size_px, 3]: the largest centred square of the photo, resized with Lanczos."""
    img = _raw(name)
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(np.ascontiguousarray(img[top:top + side, left:left + side, :3]))
    return np.asarray(square.resize((size_px, size_px), Image.LANCZOS))


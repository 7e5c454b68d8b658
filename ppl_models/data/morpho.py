"""Stroke thickness and slant of a digit image, as Morpho-MNIST measures them (Castro et al. 2019).

The image is upsampled (``scale``, 4 by default, cubic), binarised at half its range, and thinned to
its skeleton (scikit-image). Then::

    length    = the skeleton's length: neighbouring skeleton pixels 1 apart, diagonal ones sqrt(2)
    thickness = area / length                      (pixels; area = the binarised digit's pixel count)
    slant     = arctan(-mu_11 / mu_02)             (radians; mu: the binarised image's central moments,
                                                    x = column, y = row, rows counted downwards)

A stroke of width w and length L has area w L and skeleton length about L: thickness w. A digit that
leans right (its top to the right of its bottom) has x falling as y grows, mu_11 < 0: positive slant;
an upright digit has slant 0. Lengths are reported in the original image's pixels.
"""
import numpy as np
from scipy import ndimage

_LENGTH_KERNEL = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [np.sqrt(2.0), 1.0, np.sqrt(2.0)]])


def _binary(image, scale):
    img = np.asarray(image, dtype=np.float64)
    side = int(round(np.sqrt(img.size)))
    img = img.reshape(side, side) if img.ndim == 1 else img
    if scale > 1:
        img = ndimage.zoom(img, scale, order=3)
    lo, hi = img.min(), img.max()
    return img >= lo + 0.5 * (hi - lo) if hi > lo else np.zeros_like(img, dtype=bool)


def skeleton_length(skel):
    """Each pair of neighbouring skeleton pixels counted once: 1 across, sqrt(2) diagonally."""
    s = skel.astype(np.float64)
    return float((s * ndimage.correlate(s, _LENGTH_KERNEL, mode="constant")).sum())


def thickness(image, scale=4):
    """Mean stroke thickness in pixels: area / skeleton length (``nan`` for an empty image)."""
    from skimage.morphology import skeletonize
    b = _binary(image, scale)
    length = skeleton_length(skeletonize(b))
    return float(b.sum() / length / scale) if length > 0 else float("nan")


def slant(image, scale=4):
    """Slant in radians from the second-order central moments (positive: leaning right)."""
    b = _binary(image, scale)
    rows, cols = np.nonzero(b)
    if len(rows) < 2:
        return float("nan")
    y, x = rows - rows.mean(), cols - cols.mean()
    mu11, mu02 = (x * y).mean(), (y * y).mean()
    return float(np.arctan(-mu11 / mu02)) if mu02 > 0 else float("nan")


MEASURES = {"thickness": thickness, "slant": slant}


def measure(images, name, scale=4):
    """One measure of every image in ``images`` (``[N, 784]`` or ``[N, 28, 28]``, array or tensor)."""
    a = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    return np.array([MEASURES[name](im, scale) for im in a])

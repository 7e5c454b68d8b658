"""Codes and attribute vectors in a trained model's latent space (attribute walks, the explorer page).

For attribute a, with codes c(x) = the guide's representative code of q(z | x) (its mean)::

    v_a = mean of c(x) over the images that have a  -  mean of c(x) over those that do not

On MNIST "has" and "has not" are the top and bottom quartiles of a Morpho-MNIST measure
(``ppl_models/data/morpho.py``); CelebA's attributes come from its attribute file.
"""
import numpy as np
import torch

from ppl_models.data.morpho import measure


def codes(encode, x, batch=1000):
    """``encode`` (e.g. ``guide.encode``) over ``x`` in batches, without gradients: ``[N, z_dim]``."""
    with torch.no_grad():
        return torch.cat([encode(x[i:i + batch]) for i in range(0, len(x), batch)])


def vector(c, has, has_not=None):
    """Mean code of the images with the attribute minus the mean code of those without (``has_not``,
    by default all the others)."""
    return c[has].mean(0) - c[~has if has_not is None else has_not].mean(0)


def measured_vector(c, x, name):
    """The vector of a measured attribute (``thickness``, ``slant``): codes ``c`` of images ``x``, the
    top against the bottom quartile of the measure. Returns ``(vector, (lower, upper quartile), values)``."""
    values = measure(x, name)
    lo, hi = np.nanpercentile(values, [25, 75])
    top, bottom = torch.from_numpy(values >= hi).to(c.device), torch.from_numpy(values <= lo).to(c.device)
    return vector(c, top, bottom), (float(lo), float(hi)), values


def walk(decode, c, v, ks):
    """Decoded images along ``c + k v`` for each k in ``ks``: ``[len(ks), n, D]`` for codes ``c`` ``[n, z_dim]``."""
    with torch.no_grad():
        return torch.stack([decode(c + float(k) * v) for k in ks])

"""Figures: sample grids, reconstructions, 2-D latent scatter, manifold grid, interpolation, loss curves.

Every function takes tensors/arrays and a ``path`` and writes one PNG (matplotlib; the Agg backend outside a notebook).
"""
import csv
import os
import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules and "MPLBACKEND" not in os.environ:
    matplotlib.use("Agg")  # files only, no window; a notebook keeps its inline figures
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402


def _np(t):
    return t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)


def save_figure(fig, path, dpi=100):
    """Write ``fig`` as a PNG with a 128-colour palette (small enough to commit), and close it."""
    from PIL import Image

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    Image.open(path).convert("RGB").quantize(colors=128, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    return path


MNIST = (1, 28, 28)


def tile(images, rows, cols, pad=1, shape=MNIST):
    """``[rows * cols, C * H * W]`` (channel-major) -> one ``[rows * (H + 1) - 1, cols * (W + 1) - 1]``
    array (with a last axis of 3 for RGB)."""
    c, h, w = shape
    imgs = _np(images).reshape(-1, c, h, w).transpose(0, 2, 3, 1)
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, c), 0.3)
    for i, img in enumerate(imgs[: rows * cols]):
        r, k = divmod(i, cols)
        out[r * (h + pad): r * (h + pad) + h, k * (w + pad): k * (w + pad) + w] = img
    return out[..., 0] if c == 1 else np.clip(out, 0, 1)


def image_grid(images, path, rows=None, cols=10, title=None, shape=MNIST, invert=True):
    """A grid of images. Grey ones are drawn dark on light (``invert``, MNIST's ink) or as they are."""
    rows = rows or -(-len(images) // cols)
    scale = 0.6 * max(1.0, shape[1] / 28)
    fig, ax = plt.subplots(figsize=(cols * scale, rows * scale))
    ax.imshow(tile(images, rows, cols, shape=shape), cmap="gray_r" if invert else "gray", vmin=0, vmax=1)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def reconstructions(x, x_rec, path, n=10, **grid):
    """Originals (top row) above their reconstructions (bottom row)."""
    both = torch.cat([torch.as_tensor(_np(x[:n])), torch.as_tensor(_np(x_rec[:n]))])
    return image_grid(both, path, rows=2, cols=n, title="data (top) / reconstruction (bottom)", **grid)


def latent_scatter(z, labels, path, title="latent codes of the test set", circle=None):
    """2-D scatter of codes coloured by digit label; ``circle`` = radius to draw around the origin."""
    z, labels = _np(z), _np(labels)
    fig, ax = plt.subplots(figsize=(6, 5.5))
    sc = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=2, alpha=0.6, vmin=-0.5, vmax=9.5)
    fig.colorbar(sc, ax=ax, ticks=range(10), label="digit")
    if circle is not None:
        ax.add_patch(plt.Circle((0, 0), circle, fill=False, color="k", lw=1.5, ls="--"))
        lim = 1.1 * circle
        ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("z[0]"), ax.set_ylabel("z[1]"), ax.set_title(title)
    return save_figure(fig, path)


def manifold(decode, path, prior, n=15, title="manifold through the prior's inverse CDF", **grid):
    """Decode a grid of the prior's quantiles 0.05..0.95 in the first two latent dimensions (the others
    at their medians). ``prior``: the model's p(z), factorised over the coordinates with an inverse CDF
    (a Normal, Laplace, ... wrapped in ``to_event(1)``)."""
    marginals = prior.base_dist if isinstance(prior, dist.Independent) else prior
    try:
        levels = torch.linspace(0.05, 0.95, n, device=marginals.mean.device)
        shape = marginals.batch_shape
        q = torch.stack([marginals.icdf(p.expand(shape)) for p in levels]).cpu()  # [n, z_dim]
        median = marginals.icdf(torch.full(shape, 0.5, device=levels.device)).cpu()
    except (NotImplementedError, AttributeError):
        raise ValueError(f"the manifold figure needs a prior with an inverse CDF per coordinate, "
                         f"got {type(prior).__name__}") from None
    z = median.expand(n * n, -1).clone()
    for i in range(n):
        for j in range(n):
            z[i * n + j, 0], z[i * n + j, 1] = q[j, 0], q[n - 1 - i, 1]
    with torch.no_grad():
        imgs = decode(z)
    return image_grid(imgs, path, rows=n, cols=n, title=title, **grid)


def interpolation(decode, z_a, z_b, path, steps=10, title="interpolation between two encoded digits", **grid):
    """Decode the straight line from ``z_a`` to ``z_b``."""
    t = torch.linspace(0, 1, steps).unsqueeze(1)
    with torch.no_grad():
        imgs = decode((1 - t) * z_a.reshape(1, -1).cpu() + t * z_b.reshape(1, -1).cpu())
    return image_grid(imgs, path, rows=1, cols=steps, title=title, **grid)


def loss_curves(metrics_csv, path, keys=("loss", "valid_loss"), title="negative ELBO per image (nats)"):
    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    fig, ax = plt.subplots(figsize=(6, 4))
    values = []
    for k in keys:
        pts = [(int(r["epoch"]), float(r[k])) for r in rows if r.get(k) not in (None, "")]
        if pts:
            ax.plot(*zip(*pts), marker="." if len(pts) < 30 else None, label=k)
            values += [v for _, v in pts]
    if len(values) > 20:  # leave the first epochs' steep drop out of the frame
        lo, hi = np.percentile(values, [0, 95])
        ax.set_ylim(lo - 0.05 * (hi - lo), hi)
    ax.set_xlabel("epoch"), ax.set_title(title), ax.legend(), ax.grid(alpha=0.3)
    return save_figure(fig, path)

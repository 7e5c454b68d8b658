"""Sample quality beside the likelihood: how close a generator's samples are to the data as a whole.

Both measures compare *features* of images, here the judge CNN's (``classifier.py``): the 128 units
after its hidden layer's ReLU, the layer below the digit logits. No Inception weights can be fetched
on this project's machines, and MNIST is not ImageNet: the judge is the project's own network,
trained on MNIST, so the figures are comparable within the collection (and with other work only if
it uses the same network).

    Fréchet distance  ||mu_r - mu_g||^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2))        (the FID's formula)
                      between Gaussians fitted to the features of real and generated images
    precision         the share of generated images inside the real images' manifold
    recall            the share of real images inside the generated images' manifold
                      (Kynkäänniemi et al. 2019: a manifold is the union of balls around its points,
                      each of radius the distance to that point's k-th nearest neighbour, k = 3)

``sample_quality`` scores 10,000 samples against the 10,000 test images (for label-conditioned
generators also per class, against that class's test images).
"""
import warnings

import numpy as np
import torch
from scipy import linalg

K_NEAREST = 3


@torch.no_grad()
def features(classifier, images, batch_size=1000):
    """The judge's penultimate features ``[N, 128]`` (float64, on the CPU) of ``[N, 784]`` images."""
    body = classifier.net[:-1]  # every layer but the logits
    was = classifier.training
    classifier.eval()
    out = torch.cat([body(images[i:i + batch_size].reshape(-1, 1, 28, 28).float()).double().cpu()
                     for i in range(0, len(images), batch_size)])
    classifier.train(was)
    return out


def frechet_from_stats(mu1, cov1, mu2, cov2):
    """The Fréchet distance between N(mu1, cov1) and N(mu2, cov2)."""
    mu1, mu2, cov1, cov2 = (np.asarray(a, dtype=np.float64) for a in (mu1, mu2, cov1, cov2))
    eps = 1e-6 * np.eye(len(cov1))  # features that never fire (a dead ReLU) make the covariances singular
    cov1, cov2 = cov1 + eps, cov2 + eps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov1 @ cov2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(root))


def frechet_distance(f1, f2):
    """The Fréchet distance between Gaussians fitted to two sets of features ``[N, D]``, ``[M, D]``."""
    f1, f2 = (np.asarray(f, dtype=np.float64) for f in (f1, f2))
    return frechet_from_stats(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))


def _radii(f, k, chunk=2000):
    """Each point's distance to its k-th nearest other point of the same set."""
    return torch.cat([torch.cdist(f[i:i + chunk], f).kthvalue(k + 1, dim=1).values for i in range(0, len(f), chunk)])


def _inside(points, centres, radii, chunk=2000):
    """Whether each point lies in some ball (centre, radius)."""
    return torch.cat([(torch.cdist(points[i:i + chunk], centres) <= radii).any(1) for i in range(0, len(points), chunk)])


def precision_recall(real, fake, k=K_NEAREST):
    """Kynkäänniemi et al.'s precision and recall of ``fake`` against ``real`` features ``[N, D]``."""
    real, fake = torch.as_tensor(real, dtype=torch.float64), torch.as_tensor(fake, dtype=torch.float64)
    precision = _inside(fake, real, _radii(real, k)).double().mean().item()
    recall = _inside(real, fake, _radii(fake, k)).double().mean().item()
    return precision, recall


def scores(real_features, fake_features, k=K_NEAREST):
    """Fréchet distance, precision and recall; NaN where a set has no more than k points (too few)."""
    if min(len(real_features), len(fake_features)) <= k:
        return {"fid": float("nan"), "precision": float("nan"), "recall": float("nan")}
    precision, recall = precision_recall(real_features, fake_features, k)
    return {"fid": frechet_distance(real_features, fake_features), "precision": precision, "recall": recall}


def sample_quality(generate, classifier, real, labels=None, n=10_000, device="cpu", chunk=250):
    """The Fréchet distance, precision and recall of ``n`` samples of ``generate(y)`` (images
    ``[len(y), 784]``) against the ``real`` images. With ``labels`` (the real images' classes) the
    generator is label-conditioned: ``n / 10`` samples per class, scored overall and per class."""
    classes = 10 if labels is not None else 1
    y = torch.arange(classes, device=device).repeat_interleave(n // classes)
    with torch.no_grad():
        fake = torch.cat([generate(y[i:i + chunk]).to(device).reshape(-1, 784) for i in range(0, len(y), chunk)])
    f_real, f_fake = features(classifier, real.to(device)), features(classifier, fake)
    out = scores(f_real, f_fake)
    out["samples"], out["real_images"], out["features"] = len(fake), len(real), "judge CNN penultimate layer (128)"
    if labels is not None:
        labels, y = labels.cpu(), y.cpu()
        out["per_class"] = [scores(f_real[labels == c], f_fake[y == c]) for c in range(classes)]
    return out

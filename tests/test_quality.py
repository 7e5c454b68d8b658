"""Sample quality with known answers: the Fréchet distance against its closed form on Gaussians, the
test set against itself, against its other half and against noise; precision and recall of a set
against itself, and against a set that covers only part of it."""
import numpy as np
import pytest
import torch

from ppl_models.data import load_raw
from ppl_models.judge.classifier import load_classifier
from ppl_models.judge.quality import features, frechet_distance, frechet_from_stats, precision_recall, scores


def test_the_frechet_distance_is_the_closed_form_on_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 0.5])
    s1, s2 = np.array([1.0, 0.5, 2.0]), np.array([0.3, 0.5, 1.0])
    # diagonal covariances commute: ||mu1 - mu2||^2 + sum (s1 - s2)^2 with s the standard deviations
    exact = ((mu1 - mu2) ** 2).sum() + ((s1 - s2) ** 2).sum()
    assert frechet_from_stats(mu1, np.diag(s1 ** 2), mu2, np.diag(s2 ** 2)) == pytest.approx(exact, abs=1e-5)
    rot = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]  # the same rotation of both: invariant
    assert frechet_from_stats(rot @ mu1, rot @ np.diag(s1 ** 2) @ rot.T, rot @ mu2, rot @ np.diag(s2 ** 2) @ rot.T) \
        == pytest.approx(exact, abs=1e-5)
    g = np.random.default_rng(1)  # and from samples, up to sampling error
    f1, f2 = g.normal(mu1, s1, size=(200_000, 3)), g.normal(mu2, s2, size=(200_000, 3))
    assert frechet_distance(f1, f2) == pytest.approx(exact, rel=0.02)


def test_precision_and_recall_of_a_set_against_itself_are_one_and_a_half_covered_set_has_recall_near_half():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(2000, 4, generator=g)
    assert precision_recall(real, real) == (1.0, 1.0)
    half = real[real[:, 0] > 0]  # samples from one half of the data: precise, but recalling only that half
    precision, recall = precision_recall(real, half)
    assert precision == 1.0 and 0.4 < recall < 0.65


@pytest.fixture(scope="module")
def judged():
    classifier, _ = load_classifier("cpu", smoke=True)
    _, _, images, labels = load_raw("mnist")
    x = torch.from_numpy(images.reshape(-1, 784).astype("float32") / 255.0)
    return classifier, features(classifier, x[:4000])


def test_the_test_set_is_at_distance_zero_from_itself_close_to_its_other_half_and_far_from_noise(judged):
    classifier, f = judged
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-3)
    halves = frechet_distance(f[:2000], f[2000:])
    noise = frechet_distance(f, features(classifier, torch.rand(2000, 784, generator=torch.Generator().manual_seed(0))))
    assert halves < 0.05 * noise and noise > 10 * halves
    s = scores(f[:2000], f[2000:])
    assert s["precision"] > 0.9 and s["recall"] > 0.9

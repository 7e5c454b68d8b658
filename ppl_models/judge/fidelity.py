"""Does a conditional generator draw the digit it is asked for? Label fidelity, measured.

For a generator ``generate(y) -> images`` (``y``: ``[n]`` requested digits; images ``[n, 784]`` or
``[n, 28, 28]`` intensities in [0, 1]; pen strokes are drawn onto the canvas first with
``ppl_models.data.strokes.render``), draw ``per_class`` samples of every digit and let the project's digit
classifier (``ppl_models.judge.classifier``) read them::

    fidelity(c) = #{samples asked to be c and classified as c} / per_class
    fidelity    = mean over the ten digits

A generator that ignores the label scores about 10%; one that always draws real digits of the class
asked for scores about the classifier's own accuracy. For an unconditional generator the same
classifier gives the class histogram of its samples (a good generator covers all ten digits in about
equal shares).
"""
import torch

from ppl_models.data import load_raw
from ppl_models.data.strokes import render
from ppl_models.judge.classifier import load_classifier
from ppl_models.judge.quality import sample_quality

N_CLASSES = 10


def _predict(classifier, images):
    return classifier.predict(images.reshape(len(images), 784).float())


def _draw(generate, y, device, chunk=250):
    """``generate`` called on chunks of ``y``: ``[len(y), 784]`` images on ``device``."""
    with torch.no_grad():
        return torch.cat([generate(y[i:i + chunk]).to(device).reshape(-1, 784) for i in range(0, len(y), chunk)])


def label_fidelity(generate, classifier, per_class=100, n_classes=N_CLASSES, device="cpu"):
    """Share of samples classified as the digit requested, per class and overall, and the confusion
    matrix (rows: requested, columns: classified)."""
    y = torch.arange(n_classes, device=device).repeat_interleave(per_class)
    pred = _predict(classifier, _draw(generate, y, device))
    confusion = torch.bincount(y * n_classes + pred, minlength=n_classes ** 2).reshape(n_classes, n_classes)
    per = (confusion.diagonal().float() / per_class).tolist()
    return {"overall": sum(per) / n_classes, "per_class": per, "samples_per_class": per_class,
            "confusion": confusion.tolist()}


def class_histogram(images, classifier, n_classes=N_CLASSES):
    """How many of ``images`` the classifier puts in each class, and how many classes are covered."""
    with torch.no_grad():
        counts = torch.bincount(_predict(classifier, images), minlength=n_classes).tolist()
    return {"counts": counts, "n": len(images), "classes_covered": sum(c > 0 for c in counts),
            "largest_share": max(counts) / len(images)}


def strokes_to_images(sequences, absolute_coords=False):
    """``[n, T, 4]`` stroke sequences (tensor or array) -> ``[n, 784]`` rendered images (a tensor)."""
    seqs = sequences.detach().cpu().numpy() if torch.is_tensor(sequences) else sequences
    return torch.stack([torch.from_numpy(render(s, absolute_coords)).float().reshape(784) for s in seqs])


def real_test_images(device, n=None):
    """MNIST's test images as grey values ``[N, 784]`` and their labels: what samples are compared to."""
    _, _, images, labels = load_raw("mnist")
    x = torch.from_numpy(images.reshape(-1, 784).astype("float32") / 255.0)[:n]
    return x.to(device), torch.from_numpy(labels)[:n].to(device)


def judge(run, generate, conditional, per_class=100, smoke_per_class=5, reference=None, quality_samples=10_000):
    """For an example's run: load the classifier (the smoke-sized one for ``--smoke``), measure label
    fidelity (``conditional``) or the class histogram of ``10 * per_class`` samples, and the sample
    quality of ``quality_samples`` samples (``quality.py``: Fréchet distance, precision and recall in the
    judge's features, against the grey test images, per class too when ``conditional``); print them,
    and return ``(metrics, details)``: scalars for ``results.json``'s ``metrics`` and the full record.
    Sampling is seeded with the run's seed. ``reference=(images, labels)``: real images drawn the way
    the samples are (e.g. strokes rendered); the judge's error on them is the ceiling of the figure,
    and the samples' quality is measured against them instead of the test images."""
    smoke = run.args.smoke
    per_class = smoke_per_class if smoke else per_class
    classifier, info = load_classifier(run.device, smoke=smoke)
    torch.manual_seed(run.args.seed)
    err = info["test_error"]
    if conditional:
        r = label_fidelity(generate, classifier, per_class, device=run.device)
        print(f"label fidelity {100 * r['overall']:.1f}% of {10 * per_class} samples "
              f"(per digit 0-9: {' '.join(f'{100 * p:.0f}' for p in r['per_class'])}); "
              f"the judge's own test error {100 * err:.2f}%")
        metrics = {"label_fidelity": r["overall"]}
    else:
        y = torch.zeros(10 * per_class, dtype=torch.long, device=run.device)
        r = class_histogram(_draw(generate, y, run.device), classifier)
        print(f"classes of {r['n']} samples (digits 0-9): {' '.join(map(str, r['counts']))}; "
              f"the judge's own test error {100 * err:.2f}%")
        metrics = {"classes_covered": r["classes_covered"], "largest_class_share": r["largest_share"]}
    metrics["judge_test_error"] = err
    if reference is not None:
        images, labels = reference
        metrics["judge_error_on_reference"] = (_predict(classifier, images) != labels).float().mean().item()
        print(f"the judge misreads {100 * metrics['judge_error_on_reference']:.1f}% of {len(images)} real "
              "images drawn the same way (the ceiling of the figure)")
    real = reference if reference is not None else real_test_images(run.device, 1000 if smoke else None)
    q = sample_quality(generate, classifier, real[0], real[1] if conditional else None,
                       n=200 if smoke else quality_samples, device=run.device)
    metrics.update(fid=q["fid"], precision=q["precision"], recall=q["recall"])
    print(f"sample quality of {q['samples']} samples against {q['real_images']} real images, in the judge's "
          f"features: Fréchet distance {q['fid']:.2f}, precision {q['precision']:.3f}, recall {q['recall']:.3f}")
    return metrics, {**r, "sample_quality": q,
                     "judge": {k: info[k] for k in ("version", "smoke", "test_error", "test_images")}}

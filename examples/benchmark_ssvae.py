"""Benchmark: the Pyro M2 training step (``TraceEnum_ELBO`` summing out the label, plus the
classification term) against a hand-written PyTorch M2 loss of the same networks that sums over the
ten labels explicitly, timed in one run (interleaved blocks, median).

    python examples/benchmark_ssvae.py

One "step" is one unlabelled batch and one labelled batch, as in ``examples/ssvae.py``.

    python examples/benchmark_ssvae.py --from-run results/ssvae/RUN --denormals

times the Pyro step of a trained run (from its checkpoint: model, guide and Adam state) with denormal
floats kept against flushed to zero, which every example does (``experiment.device_of``): a trained
decoder's saturated outputs make gradients and Adam moments denormal, and the CPU slows down on them.
"""
import argparse
import copy
import math
from pathlib import Path

import pyro
import torch
from torch.nn.functional import binary_cross_entropy_with_logits, cross_entropy, log_softmax, softplus

from guides.ssvae import make_guide
from ppl_models.data import N_TRAIN, labeled_indices, load_mnist
from ppl_models.inference.train import read_checkpoint, resolve_device
from ppl_models.runs.benchmark import LOG_2PI, compare
from ppl_models.runs.experiment import cli, device_name
from ppl_models.ssvae import N_CLASSES, SSVAE, M2Objective, cat_label


def hand_elbo_terms(model, guide, x, labels, eps=None):
    """log p(x, y, z) - log q(z | x, y) for each row of ``labels`` (``[K, B]`` or ``[K, 1]``): ``[K, B]``."""
    loc, scale = guide.z_params(x, labels)
    scale = softplus(scale) + 1e-4
    eps = torch.randn_like(loc) if eps is None else eps
    z = loc + scale * eps
    logits = model.decoder(cat_label(z, labels))
    log_px = -binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
    log_pz = -0.5 * (z ** 2 + LOG_2PI).sum(-1)
    log_qz = (-0.5 * (((z - loc) / scale) ** 2 + LOG_2PI) - scale.log()).sum(-1)
    return log_px - math.log(N_CLASSES) + log_pz - log_qz


def hand_m2_loss(model, guide, x, y=None, alpha=0.0):
    """The M2 loss written out: labelled -ELBO + alpha * CE, or the unlabelled -ELBO with the sum
    over the ten labels done explicitly, sum_y q(y|x) (ELBO(x, y) - log q(y|x))."""
    if y is not None:
        return -hand_elbo_terms(model, guide, x, y[None]).sum() + alpha * cross_entropy(
            guide.classifier(x), y, reduction="sum")
    log_q = log_softmax(guide.classifier(x), -1).T  # [10, B]
    terms = hand_elbo_terms(model, guide, x, torch.arange(N_CLASSES, device=x.device)[:, None])
    return -(log_q.exp() * (terms - log_q)).sum()


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--guide", default="mlp", choices=["mlp", "conv"])
    p.add_argument("--z-dim", type=int, default=50)
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--alpha", type=float, default=50.0)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--steps", type=int, default=20, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", type=device_name, default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--from-run", help="a trained ssvae run folder: start from its checkpoint (its settings "
                   "replace --guide, --z-dim, --hidden and --alpha)")
    p.add_argument("--denormals", action="store_true", help="time the Pyro step with denormals kept against "
                   "flushed to zero (instead of Pyro against hand-written)")
    p.add_argument("--out", default="results/benchmark_ssvae")
    p.add_argument("--smoke", action="store_true")
    return p


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = read_checkpoint(Path(args.from_run) / "checkpoint.pt") if args.from_run else None
    if checkpoint:
        settings = checkpoint["settings"]
        args.guide, args.z_dim, args.hidden, args.alpha = (settings[k] for k in ("guide", "z_dim", "hidden", "alpha"))
    if args.smoke:
        args.steps, args.repeats = 2, 1
    device = resolve_device(args.device)
    pyro.set_rng_seed(0)
    train, _, _ = load_mnist("mnist", device, "dynamic")
    bs = args.batch_size
    x = torch.bernoulli(train.x[:2 * bs * args.steps]).reshape(args.steps, 2, bs, 784)
    y = train.y[:2 * bs * args.steps].reshape(args.steps, 2, bs)
    pairs = [(x[i, 0], x[i, 1], y[i, 1]) for i in range(args.steps)]  # (unlabelled, labelled, labels)
    if checkpoint:  # the run's own labelled images (a trained classifier is sure of them), cycled
        lab, _ = labeled_indices(train.y[:N_TRAIN], checkpoint["settings"]["labeled"], seed=checkpoint["settings"]["seed"])
        lab = lab.to(device)[torch.arange(bs * args.steps, device=device) % len(lab)].reshape(args.steps, bs)
        pairs = [(xu, torch.bernoulli(train.x[i]), train.y[i]) for (xu, _, _), i in zip(pairs, lab)]
    model = SSVAE(args.z_dim, (args.hidden,)).to(device)
    guide = make_guide(args.guide, model).to(device)
    opt = torch.optim.Adam(list(model.parameters()) + list(guide.parameters()), lr=1e-3)
    objective = M2Objective(guide.classifier, args.alpha)
    if checkpoint:
        model.load_state_dict(checkpoint["model"]), guide.load_state_dict(checkpoint["guide"])
        opt.load_state_dict(checkpoint["optimizer"])
    if args.denormals:
        return time_denormals((model, guide, opt), pairs, args, device)

    pyro_step = m2_step(model, guide, opt, objective)

    def torch_step(xu, xl, yl):
        for x, y in ((xu, None), (xl, yl)):
            hand_m2_loss(model, guide, x, y, args.alpha).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    xu, xl, yl = pairs[0]
    with torch.no_grad():
        a = [sum(objective.loss(model.model, guide.guide, *b) for _ in range(10)) / 10 for b in ((xu,), (xl, yl))]
        b = [sum(hand_m2_loss(model, guide, *bb, alpha=args.alpha).item() for _ in range(10)) / 10
             for bb in ((xu,), (xl, yl))]
    print(f"loss of one unlabelled / labelled batch, mean of 10 draws: Pyro {a[0]:.0f} / {a[1]:.0f}, "
          f"hand-written {b[0]:.0f} / {b[1]:.0f}")
    return compare({"pyro": pyro_step, "torch": torch_step}, pairs, args.repeats, device,
                   f"M2 step (unlabelled + labelled batch of {bs}), guide {args.guide}",
                   ("Pyro (TraceEnum_ELBO + classifier)", "hand-written explicit sum"), Path(args.out) / "benchmark.json")


def m2_step(model, guide, opt, objective):
    def step(xu, xl, yl):
        with pyro.validation_enabled(False):
            for batch in ((xu,), (xl, yl)):
                objective.loss_and_grads(model.model, guide.guide, *batch)
                opt.step()
                opt.zero_grad(set_to_none=True)
    return step


def time_denormals(trained, pairs, args, device):
    """Each variant trains its own copy of the run (once flushed, a copy holds no denormals to time)."""
    def with_flush(flush):
        model, guide, opt = copy.deepcopy(trained)
        step = m2_step(model, guide, opt, M2Objective(guide.classifier, args.alpha))

        def flushed_or_not(*batch):
            torch.set_flush_denormal(flush)
            step(*batch)
        return flushed_or_not

    return compare({"kept": with_flush(False), "flushed": with_flush(True)}, pairs, args.repeats, device,
                   f"M2 step of {args.from_run or 'an untrained model'}, guide {args.guide}",
                   ("denormals kept", "denormals flushed to 0"), Path(args.out) / "denormals.json",
                   extra={"run": args.from_run}, ratio_label="ratio kept / flushed")


if __name__ == "__main__":
    cli(main, parser().parse_args)

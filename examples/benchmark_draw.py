"""Benchmark: the Pyro DRAW training step (``Trace_ELBO`` over T glimpse sites) against a hand-written
PyTorch DRAW loss of the same networks, timed in one run (interleaved blocks, median).

    python examples/benchmark_draw.py                          # no attention, T = 64
    python examples/benchmark_draw.py --attention filterbank

The hand-written loss runs encoder and decoder once, side by side, with the same single-sample
estimator (log p(x | z) + log p(z) - log q(z | x), reparameterised). The Pyro pair runs the decoder
twice, once in the guide (the encoder needs h^dec_{t-1}) and once in the model: that is the price of
writing the story and the variational family as two programs.
"""
import argparse
from pathlib import Path

import pyro
import torch
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

from guides.draw import make_guide
from ppl_models.data import load_mnist
from ppl_models.draw import DRAW
from ppl_models.inference.train import resolve_device
from ppl_models.runs.benchmark import LOG_2PI, pyro_against_hand
from ppl_models.runs.experiment import device_name


def hand_draw_loss(model, guide, x, eps=None):
    """-ELBO of a batch, summed, with the networks of ``model`` and ``guide`` called directly."""
    batch = x.shape[0]
    label = model.condition(None, batch, x)
    state, canvas = model.initial_state(batch, x)
    zeros = x.new_zeros(batch, guide.encoder.hidden_size)
    enc, log_w = (zeros, zeros), 0.0
    for t in range(model.glimpses):
        images = [x, x - torch.sigmoid(canvas)] if guide.error_image else [x]
        enc = guide.encoder(torch.cat([guide.read(images, state[0]), state[0], label], -1), enc)
        loc, scale = guide.q(enc[0]).chunk(2, -1)
        scale = softplus(scale) + 1e-4
        e = torch.randn_like(loc) if eps is None else eps[t]
        z = loc + scale * e
        log_w = log_w + (-0.5 * (z ** 2 + LOG_2PI)).sum(-1) - (-0.5 * (e ** 2 + LOG_2PI) - scale.log()).sum(-1)
        state, canvas = model.step(z, label, state, canvas)
    log_px = -binary_cross_entropy_with_logits(canvas, x, reduction="none").sum(-1)
    return -(log_px + log_w).sum()


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attention", default="none", choices=["none", "filterbank"])
    p.add_argument("--glimpses", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--z-dim", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--steps", type=int, default=5, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", type=device_name, default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="results/benchmark_draw")
    p.add_argument("--smoke", action="store_true")
    return p


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.steps, args.repeats, args.glimpses, args.hidden = 2, 1, 4, 32
    device = resolve_device(args.device)
    pyro.set_rng_seed(0)
    train, _, _ = load_mnist("mnist", device, "dynamic")
    bs = args.batch_size
    x = torch.bernoulli(train.x[:bs * args.steps]).reshape(args.steps, bs, 784)
    batches = [(x[i],) for i in range(args.steps)]
    attention = args.attention == "filterbank"
    model = DRAW(args.glimpses, args.z_dim, args.hidden, 5 if attention else None).to(device)
    guide = make_guide("draw", model, read_n=2 if attention else None).to(device)
    return pyro_against_hand(model, guide, hand_draw_loss, batches, args.repeats, device,
                             f"DRAW step (batch {bs}, T={args.glimpses}, hidden {args.hidden}, attention {args.attention})",
                             ("Pyro (Trace_ELBO, model + guide)", "hand-written PyTorch loss"),
                             Path(args.out) / f"benchmark_{args.attention}.json", {"args": vars(args)})


if __name__ == "__main__":
    main(parser().parse_args())

"""Benchmark: the Pyro VRNN training step (``Trace_ELBO`` over T latent and T observed sites, the
filtering guide) against a hand-written PyTorch VRNN loss of the same networks, timed in one run
(interleaved blocks, median), on MNIST rows (28 steps of 28 binarised pixels).

    python examples/benchmark_vrnn.py
    python examples/benchmark_vrnn.py --hidden 256

The hand-written loss runs the recurrence once; the Pyro pair runs it twice (in the guide, which
needs h_{t-1}, and in the model), the price of writing story and variational family apart.
"""
import argparse
from pathlib import Path

import pyro
import torch
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

from guides.vrnn import make_guide
from ppl_models.data import load_mnist
from ppl_models.inference.train import resolve_device
from ppl_models.runs.benchmark import LOG_2PI, pyro_against_hand
from ppl_models.runs.experiment import device_name
from ppl_models.vrnn import VRNN


def hand_vrnn_loss(model, guide, x, eps=None):
    """-ELBO of a batch of rows ``[B, T, 28]``, summed, with the filtering guide's networks."""
    batch, steps = x.shape[:2]
    label = x.new_zeros(batch, 0)
    state = model.initial_state(label)
    fx_all = model.phi_x(x)  # batched over the steps, as in the model and the guide
    log_w = 0.0
    for t in range(steps):
        h = state[0]
        p_loc, p_scale = model.prior_net(torch.cat([h, label], -1)).chunk(2, -1)
        p_scale = softplus(p_scale) + 1e-4
        fx = fx_all[:, t]
        q_loc, q_scale = guide.enc(torch.cat([fx, h, label], -1)).chunk(2, -1)
        q_scale = softplus(q_scale) + 1e-4
        e = torch.randn_like(q_loc) if eps is None else eps[t]
        z = q_loc + q_scale * e
        log_pz = (-0.5 * (((z - p_loc) / p_scale) ** 2 + LOG_2PI) - p_scale.log()).sum(-1)
        log_qz = (-0.5 * (e ** 2 + LOG_2PI) - q_scale.log()).sum(-1)
        fz = model.phi_z(z)
        logits = model.emit_net(torch.cat([fz, h, label], -1))
        log_px = -binary_cross_entropy_with_logits(logits, x[:, t], reduction="none").sum(-1)
        log_w = log_w + log_px + log_pz - log_qz
        state = model.recur(fx, fz, label, state)
    return -log_w.sum()


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--z-dim", type=int, default=16)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--steps", type=int, default=10, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", type=device_name, default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="results/benchmark_vrnn")
    p.add_argument("--smoke", action="store_true")
    return p


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.steps, args.repeats, args.hidden = 2, 1, 16
    device = resolve_device(args.device)
    pyro.set_rng_seed(0)
    train, _, _ = load_mnist("mnist", device, "dynamic")
    bs = args.batch_size
    x = torch.bernoulli(train.x[:bs * args.steps]).reshape(args.steps, bs, 28, 28)
    batches = [(x[i],) for i in range(args.steps)]
    model = VRNN("bernoulli", "learned", args.z_dim, args.hidden).to(device)
    guide = make_guide("filtering", model).to(device)
    return pyro_against_hand(model, guide, hand_vrnn_loss, batches, args.repeats, device,
                             f"VRNN step (batch {bs}, T=28 rows, hidden {args.hidden}, z {args.z_dim})",
                             ("Pyro (Trace_ELBO, model + filtering guide)", "hand-written PyTorch loss"),
                             Path(args.out) / "benchmark.json", {"args": vars(args)})


if __name__ == "__main__":
    main(parser().parse_args())

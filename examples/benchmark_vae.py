"""Benchmark: the Pyro training step of the MLP VAE against a hand-written PyTorch ELBO step of the very
same networks, timed in one run (interleaved blocks, median), and the importance-sampling throughput.

    python examples/benchmark_vae.py                   # prints the Pyro / PyTorch time ratio

Both steps do the same work: encode, reparameterised sample, decode, Bernoulli log-likelihood,
log p(z) - log q(z|x), backward, Adam update. The Pyro step is exactly what ``ppl_models.inference.train.fit``
runs (``Trace_ELBO.loss_and_grads`` with argument validation off, then ``optimizer.step()``).
"""
import argparse
import json
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

from guides.vae import make_guide
from ppl_models.data import load_mnist
from ppl_models.inference.evaluate import evaluate
from ppl_models.inference.train import resolve_device
from ppl_models.runs.benchmark import LOG_2PI, time_interleaved
from ppl_models.runs.experiment import device_name
from ppl_models.vae import VAE


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--z-dim", type=int, default=50)
    p.add_argument("--hidden", type=int, nargs="+", default=[500, 500])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--steps", type=int, default=50, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=7, help="interleaved blocks per method")
    p.add_argument("--eval-images", type=int, default=100)
    p.add_argument("--eval-samples", type=int, default=1000)
    p.add_argument("--device", type=device_name, default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="results/benchmark_vae")
    p.add_argument("--smoke", action="store_true")
    return p


def torch_elbo_loss(model, guide, x):
    """-ELBO of the VAE with the diag guide, written out by hand: one reparameterised sample per
    image and the same Monte Carlo estimate as Trace_ELBO, log p(x|z) + log p(z) - log q(z|x)."""
    h = guide.encoder(x)
    loc, scale = guide.head.loc(h), softplus(guide.head.scale(h)) + 1e-4
    z = loc + scale * torch.randn_like(loc)
    log_lik = -binary_cross_entropy_with_logits(model.decoder(z), x, reduction="none").sum(-1)
    log_pz = -0.5 * (z ** 2 + LOG_2PI).sum(-1)
    log_qz = (-0.5 * (((z - loc) / scale) ** 2 + LOG_2PI) - scale.log()).sum(-1)
    return -(log_lik + log_pz - log_qz).sum()


def torch_elbo_loss_analytic(model, guide, x):
    """The same with the Gaussian KL in closed form (what TraceMeanField_ELBO computes)."""
    h = guide.encoder(x)
    loc, scale = guide.head.loc(h), softplus(guide.head.scale(h)) + 1e-4
    z = loc + scale * torch.randn_like(loc)
    log_lik = -binary_cross_entropy_with_logits(model.decoder(z), x, reduction="none").sum(-1)
    kl = 0.5 * (loc ** 2 + scale ** 2 - 1 - 2 * scale.log()).sum(-1)
    return -(log_lik - kl).sum()


PAIRS = {  # name -> (Pyro ELBO, hand-written loss)
    "Monte Carlo KL": (Trace_ELBO, torch_elbo_loss),
    "analytic KL": (TraceMeanField_ELBO, torch_elbo_loss_analytic),
}


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.steps, args.repeats, args.eval_images, args.eval_samples = 2, 1, 5, 10
    device = resolve_device(args.device)
    pyro.set_rng_seed(0)
    train, _, test = load_mnist("mnist", device, "dynamic")
    batches = [torch.bernoulli(train.x[i * args.batch_size:(i + 1) * args.batch_size]) for i in range(args.steps)]
    model = VAE(args.z_dim, tuple(args.hidden)).to(device)
    guide = make_guide("diag", model).to(device)
    opt = torch.optim.Adam(list(model.parameters()) + list(guide.parameters()), lr=1e-3)

    print(f"training step, batch {args.batch_size}, MLP {args.hidden}, z={args.z_dim}, {device}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} interleaved blocks of {args.steps} steps:")
    result = {"device": str(device), "threads": torch.get_num_threads()}
    for name, (elbo_class, hand_loss) in PAIRS.items():
        elbo = elbo_class()

        def pyro_step(x):
            opt.zero_grad(set_to_none=True)
            with pyro.validation_enabled(False):
                elbo.loss_and_grads(model.model, guide.guide, x)
            opt.step()

        def torch_step(x):
            opt.zero_grad(set_to_none=True)
            loss = hand_loss(model, guide, x)
            loss.backward()
            loss.item()
            opt.step()

        with torch.no_grad():  # the two losses agree in expectation
            x = batches[0]
            a = sum(elbo.loss(model.model, guide.guide, x) for _ in range(20)) / 20
            b = sum(hand_loss(model, guide, x).item() for _ in range(20)) / 20
        timed = time_interleaved({"pyro": pyro_step, "torch": torch_step}, [(x,) for x in batches],
                                 args.repeats, device)
        med = {k: v["median"] for k, v in timed.items()}
        ratio = med["pyro"] / med["torch"]
        print(f"  {name:15s} Pyro {elbo_class.__name__:19s} {1e3 * med['pyro']:7.2f} ms/step | hand-written "
              f"{1e3 * med['torch']:7.2f} ms/step | ratio {ratio:.3f}   (-ELBO of one batch, 20 draws: "
              f"{a:.0f} vs {b:.0f})")
        result[name] = {"ms_pyro": 1e3 * med["pyro"], "ms_torch": 1e3 * med["torch"], "ratio": ratio,
                        "times": {k: v["times"] for k, v in timed.items()}}

    x = test.x[: args.eval_images]
    t0 = time.perf_counter()
    evaluate(model, guide, x, num_samples=args.eval_samples, particles="plate", khat=False)
    dt = time.perf_counter() - t0
    rate = len(x) * args.eval_samples / dt
    print(f"IS evaluation: {len(x)} images x S={args.eval_samples} in {dt:.2f} s = {rate:,.0f} weights/s "
          f"(S=5000 on the 10,000 test images: ~{1e4 * 5000 / rate / 60:.0f} min)")
    result["is_weights_per_second"] = rate
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(parser().parse_args())

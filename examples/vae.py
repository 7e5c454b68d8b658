"""Train a VAE on MNIST with a swappable guide, report the importance-sampled test NLL, draw figures.

    python examples/vae.py                                  # MLP VAE, diag guide, z=50
    python examples/vae.py --guide iaf
    python examples/vae.py --decoder conv --guide conv --z-dim 2
    python examples/vae.py --guide delta --beta 0           # the plain autoencoder
    python examples/vae.py --binarize grey --likelihood gaussian
"""
import argparse
import json
import sys
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from guides.vae import GUIDES, make_guide  # noqa: E402
from ppl_models import plots  # noqa: E402
from ppl_models.data import BINARIZE_MODES, Minibatches, check_images, load_mnist  # noqa: E402
from ppl_models.evaluate import evaluate  # noqa: E402
from ppl_models.train import BEST, fit, load_checkpoint, resolve_device  # noqa: E402
from ppl_models.vae import DECODERS, LIKELIHOODS, VAE  # noqa: E402


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    p.add_argument("--binarize", default="dynamic", choices=BINARIZE_MODES)
    p.add_argument("--likelihood", default=None, choices=LIKELIHOODS,
                   help="default: bernoulli for binarised data, gaussian for grey")
    p.add_argument("--sigma", type=float, default=None, help="fixed Gaussian scale (default: learned)")
    p.add_argument("--decoder", default="mlp", choices=DECODERS)
    p.add_argument("--guide", default="diag", help=f"one of {sorted(GUIDES)}")
    p.add_argument("--z-dim", type=int, default=50)
    p.add_argument("--hidden", type=int, nargs="+", default=[500, 500], help="MLP hidden sizes")
    p.add_argument("--beta", type=float, default=1.0, help="KL weight (0 with --guide delta: autoencoder)")
    p.add_argument("--epochs", type=int, default=244)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-decay", type=float, default=1.0, help="learning rate of epoch e: lr * decay^(e-1)")
    p.add_argument("--lr-steps", nargs="*", default=["117:3e-4", "185:1e-4"], metavar="EPOCH:LR",
                   help="step schedule: from EPOCH on use LR (default: the measured diag run's; "
                        "pass --lr-steps with nothing for a constant rate)")
    p.add_argument("--optim", default="adam", choices=["adam", "rmsprop"])
    p.add_argument("--elbo", default="trace", choices=["trace", "meanfield"],
                   help="Trace_ELBO (Monte Carlo KL) or TraceMeanField_ELBO (analytic KL where it exists)")
    p.add_argument("--valid-every", type=int, default=5)  # validation draws from the RNG stream too
    p.add_argument("--eval-samples", type=int, default=5000, help="importance samples S for the test NLL")
    p.add_argument("--eval-images", type=int, default=10000, help="test images used for the NLL")
    p.add_argument("--out", default="results/vae")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--smoke", action="store_true", help="a few hundred images, one epoch, tiny evaluation")
    return p


def main(args):
    if args.guide not in GUIDES:
        raise SystemExit(f"unknown guide {args.guide!r}; choose one of {sorted(GUIDES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.epochs, args.eval_samples, args.eval_images, args.valid_every = 1, 10, 20, 1
    likelihood = args.likelihood or ("gaussian" if args.binarize == "grey" else "bernoulli")
    if likelihood == "bernoulli" and args.binarize == "grey":
        raise SystemExit("a Bernoulli likelihood needs binarised data: use --binarize dynamic or static")
    device = resolve_device(args.device)
    pyro.set_rng_seed(args.seed)  # network initialisation; fit() seeds again for training
    out = Path(args.out)
    t_start = time.time()

    train, valid, test = load_mnist(args.dataset, device, args.binarize, seed=args.seed)
    if args.smoke:
        train, valid = train.subset(slice(0, 300)), valid.subset(slice(0, 100))
    check_images(train.x)
    model = VAE(args.z_dim, tuple(args.hidden), args.decoder, likelihood, args.sigma).to(device)
    guide = make_guide(args.guide, args.z_dim, tuple(args.hidden)).to(device)
    elbo = TraceMeanField_ELBO() if args.elbo == "meanfield" else Trace_ELBO()
    score = args.guide != "delta"  # a point-mass guide has no density to importance-sample with

    def validate():
        if not score:
            return {}
        r = evaluate(model, guide, valid.x, num_samples=1, batch_size=1000, khat=False, check=False,
                     particles="plate")
        return {"valid_loss": r["neg_elbo"]}

    print(f"VAE: decoder={args.decoder} likelihood={likelihood} z={args.z_dim} guide={args.guide} "
          f"beta={args.beta} on {device}, {len(train)} training images ({args.binarize})")
    history = fit(model, guide, elbo, Minibatches(train, args.batch_size, args.binarize), epochs=args.epochs, out=out,
        optim=args.optim, lr=step_schedule(args.lr, args.lr_steps), lr_decay=args.lr_decay, validate=validate, valid_every=args.valid_every,
        resume=args.resume, best=("valid_loss", "min") if score else None,
        seed=args.seed, progress=not args.no_progress, step_kwargs=lambda e: {"beta": args.beta})
    results = {"args": vars(args), "device": str(device), "epochs_trained": len(history),
               "train_seconds": sum(h["seconds"] for h in history)}  # over all resumed runs
    if (out / BEST).exists():  # early stopping: evaluate the parameters of the best validation epoch
        results["eval_epoch"] = load_checkpoint(out / BEST, model, guide, map_location=device)["epoch"]
        print(f"evaluating the best validation epoch, {results['eval_epoch']} of {len(history)}")
    model.eval(), guide.eval()
    if score:
        t0 = time.time()
        x_test = test.x[: args.eval_images]
        r = evaluate(model, guide, x_test, num_samples=args.eval_samples, particles="plate",
                     progress=not args.no_progress)
        results.update(test_nll=r["nll"], test_neg_elbo=r["neg_elbo"], test_images=len(x_test),
                       eval_samples=args.eval_samples, mean_ess=float(r["ess"].mean()),
                       khat_above_0_7=float((r["khat"] > 0.7).mean()), eval_seconds=time.time() - t0)
        print(f"test NLL {r['nll']:.2f} nats (IS, S={args.eval_samples}, {len(x_test)} test images), "
              f"-ELBO {r['neg_elbo']:.2f}, mean ESS {results['mean_ess']:.1f}, "
              f"k-hat > 0.7 for {100 * results['khat_above_0_7']:.1f}% of images")
    figures(model, guide, test, out, args)
    results["total_seconds"] = time.time() - t_start
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"figures and results in {out}/ (total {results['total_seconds']:.0f} s)")
    return results


def step_schedule(lr, steps):
    """``lr`` until the first ``EPOCH:LR`` step, then that step's rate, and so on."""
    try:
        table = sorted((int(e), float(v)) for e, v in (s.split(":") for s in steps))
    except ValueError:
        raise SystemExit(f"--lr-steps takes EPOCH:LR pairs such as 100:3e-4, got {steps}")
    return lambda epoch: next((v for e, v in reversed(table) if epoch >= e), lr)


def figures(model, guide, test, out, args):
    device = test.x.device
    decode = lambda z: model.decode(z.to(device)).cpu()  # noqa: E731
    with torch.no_grad():
        z = torch.randn(100, args.z_dim, device=device)
        plots.image_grid(decode(z), out / "samples.png", cols=10, title="samples from p(z) p(x|z)")
        codes = guide.encode(test.x[:2000])
        plots.reconstructions(test.x[:10], decode(codes[:10]), out / "reconstructions.png")
        a, b = (test.y == 3).nonzero()[0, 0], (test.y == 8).nonzero()[0, 0]
        plots.interpolation(decode, codes_of(guide, test.x[a]), codes_of(guide, test.x[b]), out / "interpolation.png")
        if args.z_dim == 2:
            plots.latent_scatter(codes, test.y[:2000], out / "latent.png")
            plots.manifold(decode, out / "manifold.png", z_dim=2)
    plots.loss_curves(out / "metrics.csv", out / "loss.png")


def codes_of(guide, x):
    return guide.encode(x.reshape(1, -1))[0]


if __name__ == "__main__":
    main(parser().parse_args())

"""Train a VAE on MNIST with a swappable guide, report the importance-sampled test NLL, draw figures.

    python examples/vae.py                                  # MLP VAE, diag guide, z=50
    python examples/vae.py --guide iaf                      # another run folder: nothing overwritten
    python examples/vae.py --decoder conv --guide conv --z-dim 2
    python examples/vae.py --guide delta --beta 0           # the plain autoencoder
    python examples/vae.py --binarize grey --likelihood gaussian
    python examples/vae.py --guide iaf --eval-only --eval-samples 5000   # score a run again
"""
import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO  # noqa: E402

from guides.vae import GUIDES, make_guide  # noqa: E402
from ppl_models import experiment, fidelity, plots  # noqa: E402
from ppl_models.data import BINARIZE_MODES, Minibatches, load_mnist  # noqa: E402
from ppl_models.evaluate import evaluate  # noqa: E402
from ppl_models.experiment import nonnegative_float, positive_float, positive_int  # noqa: E402
from ppl_models.vae import DECODERS, LIKELIHOODS, VAE  # noqa: E402

RUN_NAME = "{decoder}-{guide}-z{z_dim}-{likelihood}-beta{beta:g}"


def parse_args(argv=None):
    p = experiment.parser(__doc__, epochs=244, eval_samples=5000, eval_images=10000)
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    p.add_argument("--binarize", default="dynamic", choices=BINARIZE_MODES)
    p.add_argument("--likelihood", default=None, choices=LIKELIHOODS,
                   help="default: bernoulli for binarised data, gaussian for grey")
    p.add_argument("--sigma", type=positive_float, default=None, help="fixed Gaussian scale (default: learned)")
    p.add_argument("--decoder", default="mlp", choices=DECODERS)
    p.add_argument("--guide", default="diag", choices=sorted(GUIDES))
    p.add_argument("--z-dim", type=positive_int, default=50)
    p.add_argument("--hidden", type=positive_int, nargs="+", default=[500, 500], help="MLP hidden sizes")
    p.add_argument("--beta", type=nonnegative_float, default=1.0,
                   help="KL weight (0 with --guide delta: autoencoder)")
    p.add_argument("--lr-decay", type=positive_float, default=1.0, help="learning rate of epoch e: lr * decay^(e-1)")
    p.add_argument("--lr-steps", nargs="*", default=["117:3e-4", "185:1e-4"], metavar="EPOCH:LR",
                   help="step schedule: from EPOCH on use LR (default: the measured diag run's; "
                        "pass --lr-steps with nothing for a constant rate)")
    p.add_argument("--optim", default="adam", choices=["adam", "rmsprop"])
    p.add_argument("--elbo", default="trace", choices=["trace", "meanfield"],
                   help="Trace_ELBO (Monte Carlo KL) or TraceMeanField_ELBO (analytic KL where it exists)")
    p.add_argument("--valid-every", type=positive_int, default=5)  # validation draws from the RNG stream too
    args = p.parse_args(argv)
    args.likelihood = args.likelihood or ("gaussian" if args.binarize == "grey" else "bernoulli")
    if args.likelihood == "bernoulli" and args.binarize == "grey":
        p.error("a Bernoulli likelihood needs binarised data: use --binarize dynamic or static")
    return args


def step_schedule(lr, steps):
    """``lr`` until the first ``EPOCH:LR`` step, then that step's rate, and so on."""
    try:
        table = sorted((int(e), float(v)) for e, v in (s.split(":") for s in steps))
    except ValueError:
        raise experiment.Refused(f"--lr-steps takes EPOCH:LR pairs such as 100:3e-4, got {steps}") from None
    return lambda epoch: next((v for e, v in reversed(table) if epoch >= e), lr)


def main(args):
    lr_schedule = step_schedule(args.lr, args.lr_steps)
    if args.smoke:
        args.valid_every = 1
    run = experiment.start(args, "vae", RUN_NAME)
    train, valid, test = load_mnist(args.dataset, run.device, args.binarize, seed=args.seed)
    if args.smoke:
        train, valid = train.subset(slice(0, 300)), valid.subset(slice(0, 100))
    model = VAE(args.z_dim, tuple(args.hidden), args.decoder, args.likelihood, args.sigma).to(run.device)
    guide = make_guide(args.guide, model).to(run.device)
    elbo = TraceMeanField_ELBO() if args.elbo == "meanfield" else Trace_ELBO()
    has_density = args.guide != "delta"  # a point-mass guide has no density to importance-sample with

    def validate():
        if not has_density:
            return {}
        r = evaluate(model, guide, valid.x, num_samples=1, batch_size=1000, khat=False, particles="plate")
        return {"valid_loss": r["neg_elbo"]}

    history = experiment.train(run, model, guide, elbo, Minibatches(train, args.batch_size, args.binarize),
                               optim=args.optim, lr=lr_schedule, lr_decay=args.lr_decay, validate=validate,
                               valid_every=args.valid_every, best=("valid_loss", "min") if has_density else None,
                               step_kwargs=lambda e: {"beta": args.beta})
    eval_epoch = experiment.load_best(run, model, guide)
    metrics = {}
    if has_density:
        metrics = experiment.score(run, model, guide, test.x, particles="plate")
    figures(model, guide, test, run.out, args)
    details = None
    if args.dataset == "mnist":  # the digit classifier reads what the samples look like
        judged, details = fidelity.judge(run, lambda y: model.decode(model.prior(test.x).sample((len(y),))),
                                         conditional=False)
        metrics.update(judged)
    return experiment.finish(run, metrics, history, eval_epoch, samples_judged=details)


def figures(model, guide, test, out, args):
    device = test.x.device
    decode = lambda z: model.decode(z.to(device)).cpu()  # noqa: E731
    with torch.no_grad():
        z = model.prior(test.x).sample((100,))
        plots.image_grid(decode(z), out / "samples.png", cols=10, title="samples from p(z) p(x|z)")
        codes = guide.encode(test.x[:2000])
        plots.reconstructions(test.x[:10], decode(codes[:10]), out / "reconstructions.png")
        a, b = (test.y == 3).nonzero()[0, 0], (test.y == 8).nonzero()[0, 0]
        plots.interpolation(decode, codes[a], codes[b], out / "interpolation.png")
        if args.z_dim == 2:
            plots.latent_scatter(codes, test.y[:2000], out / "latent.png")
            plots.manifold(decode, out / "manifold.png", prior=model.prior(test.x))
    plots.loss_curves(out / "metrics.csv", out / "loss.png")


if __name__ == "__main__":
    experiment.cli(main, parse_args)

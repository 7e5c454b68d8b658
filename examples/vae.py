"""Train a VAE with a swappable guide, report the importance-sampled test NLL, draw figures.

    python examples/vae.py                                  # MNIST: MLP VAE, diag guide, z=50
    python examples/vae.py --guide iaf                      # another run folder: nothing overwritten
    python examples/vae.py --decoder conv --guide conv --z-dim 2
    python examples/vae.py --guide delta --beta 0           # the plain autoencoder
    python examples/vae.py --binarize grey --likelihood gaussian
    python examples/vae.py --objective iwae --particles 50          # the IWAE bound (or dreg, stl, renyi)
    python examples/vae.py --prior vamp                             # the VampPrior (or mog, flow)
    python examples/vae.py --prior vamp --warmup-epochs 100        # its paper's KL warm-up
    python examples/vae.py --hidden 200 200 --activation tanh --objective iwae --particles 5   # IWAE paper, 1 layer
    python examples/vae.py --layers 2 --hidden 200 200 --activation tanh --objective iwae --particles 5   # 2 layers
    python examples/vae.py --guide iaf --eval-only --eval-samples 5000   # score a run again
    python examples/vae.py --dataset folder:~/pictures --image-size 32 --channels 3 --decoder conv --guide conv
    python examples/vae.py --dataset celeba:~/celeba --image-size 64 --decoder conv --guide conv

Data: ``mnist`` (default), ``fashion-mnist``, ``folder:PATH`` (every PNG/JPEG under PATH, centre-cropped
and resized to ``--image-size``, grey or RGB by ``--channels``, split 80/10/10 with a fixed seed) or
``celeba:PATH`` (CelebA's official layout and splits); see ``ppl_models/data/images.py``. Likelihoods:
Bernoulli for binarised grey images (``--binarize dynamic|static``, MNIST's default), and for grey or
RGB values (``--binarize grey``, the default for folders) a Gaussian N(sigmoid(decoder(z)), sigma^2)
with one learned sigma: its mean is the picture and its density is a proper one in nats per image
(the continuous Bernoulli was not taken: its mean is not its parameter, so the decoder's output would
not be the picture it draws).
"""
import torch

from guides.vae import GUIDES, make_guide
from guides.vae2 import GUIDES as GUIDES2
from guides.vae2 import make_guide as make_guide2
from ppl_models.data import BINARIZE_MODES, Minibatches, binarize_splits, load_mnist
from ppl_models.data.images import load_celeba, load_folder, parse_dataset
from ppl_models.inference.objectives import OBJECTIVES, make_objective
from ppl_models.judge import fidelity
from ppl_models.nets import ACTIVATIONS, check_conv_shape
from ppl_models.priors import COMPONENTS, PRIORS
from ppl_models.runs import experiment, plots
from ppl_models.runs.experiment import Refused, nonnegative_float, nonnegative_int, positive_float, positive_int
from ppl_models.vae import DECODERS, LIKELIHOODS, VAE
from ppl_models.vae2 import TwoLayerVAE

RUN_NAME = "{decoder}-{guide}-z{z_dim}-{likelihood}-beta{beta:g}"
GAUSSIAN_GUIDES = ("diag", "conv", "lowrank", "fullcov")  # whose q(z | x) the VampPrior can mix
DEFAULT_SIZE = {"folder": 32, "celeba": 64}


def dataset(spec):
    parse_dataset(spec)  # a bad one is refused here, with the forms allowed
    return spec


def parse_args(argv=None):
    p = experiment.parser(__doc__, epochs=100, eval_samples=5000, eval_images=10000, objectives=OBJECTIVES)
    p.add_argument("--dataset", default="mnist", type=dataset, help="mnist, fashion-mnist, folder:PATH, celeba:PATH")
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="folder: and celeba: images are resized to this (default 32 and 64)")
    p.add_argument("--channels", type=int, default=None, choices=[1, 3],
                   help="folder: and celeba: 1 grey, 3 RGB (default 3)")
    p.add_argument("--binarize", default=None, choices=BINARIZE_MODES,
                   help="default: dynamic for MNIST-style data, grey (the values) for folder: and celeba:")
    p.add_argument("--likelihood", default=None, choices=LIKELIHOODS,
                   help="default: bernoulli for binarised data, gaussian for grey")
    p.add_argument("--sigma", type=positive_float, default=None, help="fixed Gaussian scale (default: learned)")
    p.add_argument("--decoder", default="mlp", choices=DECODERS)
    p.add_argument("--guide", default="diag", choices=sorted(GUIDES))  # --layers 2: those of guides/vae2.py
    p.add_argument("--z-dim", type=positive_int, default=50)
    p.add_argument("--hidden", type=positive_int, nargs="+", default=[500, 500], help="MLP hidden sizes")
    p.add_argument("--beta", type=nonnegative_float, default=1.0,
                   help="KL weight (0 with --guide delta: autoencoder)")
    p.add_argument("--warmup-epochs", type=nonnegative_int, default=0,
                   help="KL warm-up: the KL weight rises linearly to --beta over the first N epochs "
                        "(epoch e: beta * e / N); the best epoch is still chosen on the unweighted ELBO")
    p.add_argument("--lr-decay", type=positive_float, default=1.0, help="learning rate of epoch e: lr * decay^(e-1)")
    experiment.add_lr_steps(p)
    p.add_argument("--optim", default="adam", choices=["adam", "rmsprop"])
    p.add_argument("--layers", type=int, default=1, choices=[1, 2],
                   help="stochastic layers: 1, or 2 (the IWAE paper's model, ppl_models/vae2.py: z1 of 2 x --z-dim, "
                        "its own 2 x z-dim hidden units between z2 and z1)")
    p.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS), help="the MLPs' (tanh: the IWAE paper)")
    p.add_argument("--prior", default="standard", choices=PRIORS, help="p(z): N(0, I), a learned mixture, the "
                   "VampPrior, or a flow (ppl_models/priors.py)")
    p.add_argument("--prior-components", type=positive_int, default=None,
                   help="mog: components (default 10), vamp: pseudo-inputs (500), flow: layers (2)")
    p.add_argument("--vamp-init", default=None, choices=["data"],
                   help="--prior vamp: start the pseudo-inputs at training images drawn with the seed (the VampPrior "
                        "code's --use_training_data_init; default: every pixel near 0.1)")
    p.add_argument("--valid-every", type=positive_int, default=5)  # validation draws from the RNG stream too
    args = p.parse_args(argv)
    kind, _ = parse_dataset(args.dataset)
    if kind in ("mnist", "fashion-mnist") and (args.image_size or args.channels):
        p.error("--image-size and --channels apply to folder: and celeba: data (MNIST is 1x28x28)")
    args.binarize = args.binarize or ("dynamic" if kind in ("mnist", "fashion-mnist") else "grey")
    if args.binarize != "grey" and (args.channels or 3 if kind in DEFAULT_SIZE else 1) != 1:
        p.error(f"--binarize {args.binarize} draws binary grey pixels: it needs --channels 1 "
                "(RGB values take --binarize grey)")
    args.likelihood = args.likelihood or ("gaussian" if args.binarize == "grey" else "bernoulli")
    if args.likelihood == "bernoulli" and args.binarize == "grey":
        p.error("a Bernoulli likelihood needs binarised data: use --binarize dynamic or static")
    if args.vamp_init and args.prior != "vamp":
        p.error("--vamp-init starts the VampPrior's pseudo-inputs: it needs --prior vamp")
    if args.prior == "vamp" and args.guide not in GAUSSIAN_GUIDES:
        p.error(f"--prior vamp mixes the guide's Gaussian posteriors: use --guide {' or '.join(GAUSSIAN_GUIDES)}")
    if args.layers == 2 and (args.decoder != "mlp" or args.likelihood != "bernoulli" or kind not in ("mnist", "fashion-mnist")
                             or args.guide not in GUIDES2 or args.prior == "vamp"):
        p.error(f"--layers 2 is the IWAE paper's MLP model of binarised 28x28 images: --decoder mlp, a Bernoulli "
                f"likelihood, MNIST or Fashion-MNIST, --guide {' or '.join(GUIDES2)}, --prior standard, mog or flow")
    if args.guide == "delta" and (args.objective != "elbo" or args.particles > 1):
        p.error("--guide delta is a point mass (the autoencoder): it trains with --objective elbo and one particle")
    return args


def shape_of(args):
    kind, _ = parse_dataset(args.dataset)
    if kind not in DEFAULT_SIZE:
        return (1, 28, 28)
    size = args.image_size or DEFAULT_SIZE[kind]
    return (args.channels or 3, size, size)


def run_template(args):
    """The run folder's name: MNIST's as it always was; other data prefix theirs; two stochastic layers,
    hidden sizes other than 500-500, tanh, a prior other than N(0, I) and a KL warm-up add theirs (and the runner an
    objective other than the one-particle ELBO)."""
    variant = ("" if args.layers == 1 else "-L2") + ("" if args.hidden == [500, 500] else
                                                    "-h" + "-".join(map(str, args.hidden)))
    variant += ("" if args.activation == "relu" else f"-{args.activation}") + (
        "" if args.prior == "standard" else f"-{args.prior}{args.prior_components or COMPONENTS[args.prior]}")
    variant += ("-init-data" if args.vamp_init else "") + (f"-warmup{args.warmup_epochs}" if args.warmup_epochs else "")
    kind, path = parse_dataset(args.dataset)
    c, size, _ = shape_of(args)
    if kind in ("mnist", "fashion-mnist"):
        return {"mnist": "", "fashion-mnist": "fashion-"}[kind] + RUN_NAME + variant
    name = path.resolve().name if kind == "folder" else "celeba"
    return f"{kind}-{name}-s{size}-c{c}-".replace("{", "(").replace("}", ")") + RUN_NAME + variant


def load_data(args, device):
    """``train, valid, test`` Splits of flattened images on ``device`` (their shape: :func:`shape_of`)."""
    kind, path = parse_dataset(args.dataset)
    shape = shape_of(args)
    if kind in ("mnist", "fashion-mnist"):
        return load_mnist(kind, device, args.binarize, seed=args.seed)
    if kind == "folder":
        splits = load_folder(path, shape[1], shape[0], device)
    else:
        splits, names = load_celeba(path, shape[1], shape[0], device)
        print(f"CelebA: {' / '.join(str(len(s)) for s in splits)} train / valid / test images, "
              f"{len(names)} attributes")
    return binarize_splits(*splits, args.binarize, args.seed)


def build(args, device):
    """The VAE and its guide from the run's settings (also what rebuilds a run from its folder)."""
    if args.layers == 2:
        z1 = 2 * args.z_dim
        model = TwoLayerVAE(args.z_dim, z1, tuple(args.hidden), (z1, z1), args.activation, args.prior,
                            args.prior_components).to(device)
        return model, make_guide2(args.guide, model).to(device)
    model = VAE(args.z_dim, tuple(args.hidden), args.decoder, args.likelihood, args.sigma, shape_of(args),
                args.prior, args.prior_components, args.activation).to(device)
    guide = make_guide(args.guide, model).to(device)
    if args.prior == "vamp":
        model.p_z.attach(guide.posterior)
    return model, guide


def main(args):
    lr_schedule = experiment.step_schedule(args.lr, args.lr_steps)
    if args.smoke:
        args.valid_every = 1
    shape = shape_of(args)
    if args.decoder == "conv" or args.guide == "conv":
        try:
            check_conv_shape(shape)
        except ValueError as e:
            raise Refused(f"--image-size {shape[1]}: {e}") from None
    run = experiment.start(args, "vae", run_template(args))
    train, valid, test = load_data(args, run.device)
    train, valid = experiment.smoke_subsets(args, train, valid)
    if len(train) < args.batch_size:
        raise Refused(f"{args.dataset}: {len(train)} training images, fewer than --batch-size {args.batch_size}; "
                      "use a smaller --batch-size or more images")
    model, guide = build(args, run.device)
    if args.vamp_init:  # a resumed run's checkpoint then replaces them with the trained ones
        k = len(model.p_z.raw_inputs)
        if k > len(train.x):
            raise Refused(f"--vamp-init data: {k} pseudo-inputs, {len(train.x)} training images; "
                          "use fewer --prior-components")
        pick = torch.randperm(len(train.x), generator=torch.Generator().manual_seed(args.seed))[:k]
        model.p_z.start_at(train.x[pick.to(train.x.device)])
    elbo = make_objective(args.objective, args.particles, args.renyi_alpha, jit=args.jit)
    has_density = args.guide != "delta"  # a point-mass guide has no density to importance-sample with
    validate = experiment.validation(model, guide, valid.x, particles="plate") if has_density else dict
    history = experiment.train(run, model, guide, elbo, Minibatches(train, args.batch_size, args.binarize),
                               optim=args.optim, lr=lr_schedule, lr_decay=args.lr_decay, validate=validate,
                               valid_every=args.valid_every, best=("valid_loss", "min") if has_density else None,
                               step_kwargs=lambda e: {"beta": args.beta * min(1.0, e / args.warmup_epochs)
                                                      if args.warmup_epochs else args.beta})
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
    digits = parse_dataset(args.dataset)[0] in ("mnist", "fashion-mnist")
    grid = {"shape": model.shape, "invert": digits}  # MNIST's ink dark on light; photos as they are
    with torch.no_grad():
        z = model.prior(test.x).sample((100,))
        plots.image_grid(decode(z), out / "samples.png", cols=10, title="samples from p(z) p(x|z)", **grid)
        codes = guide.encode(test.x[:2000])
        plots.reconstructions(test.x[:10], decode(codes[:10]), out / "reconstructions.png", **grid)
        a, b = ((test.y == 3).nonzero()[0, 0], (test.y == 8).nonzero()[0, 0]) if digits else (0, min(1, len(codes) - 1))
        plots.interpolation(decode, codes[a], codes[b], out / "interpolation.png",
                            title="interpolation between two encoded test images", **grid)
        if args.z_dim == 2:
            if digits:
                plots.latent_scatter(codes, test.y[:2000], out / "latent.png")
            plots.manifold(decode, out / "manifold.png", prior=model.prior(test.x), **grid)
    plots.loss_curves(out / "metrics.csv", out / "loss.png")


if __name__ == "__main__":
    experiment.cli(main, parse_args)

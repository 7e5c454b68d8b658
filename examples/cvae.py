"""Structured output prediction with the conditional VAE (Sohn et al. 2015): quadrant completion.

    python examples/cvae.py                          # 1, 2 and 3 observed quadrants (our protocol)
    python examples/cvae.py --protocol pyro --quadrants 1 --baseline-epochs 14 --epochs 75   # as Pyro's example
    python examples/cvae.py --quadrants 2 --guide gsnn
    python examples/cvae.py --quadrants 1 --generation-input xz  # p(y | x, z), Sohn et al.'s generation network
    python examples/cvae.py --quadrants 1 --recognition-input xy # q(z | x, y) on the input beside the image
    python examples/cvae.py --quadrants 1 --objective hybrid --hybrid 0.5   # Sohn et al.'s hybrid objective
    python examples/cvae.py --condition label        # y = image, x = digit label: samples per class

Each number of observed quadrants is one run (its own folder): it trains the baseline NN
(784-500-500-784, masked BCE, which is the log-likelihood of a latent-free model trained by the same
loop), then the CVAE on top of the frozen baseline, then reports on the test set the conditional
log-likelihood log p(y | x) in nats: the NN's (exact), the CVAE's by importance sampling with
q(z | x, y) as proposal (S = ``--eval-samples``), and the CVAE's ELBO (estimated with the same S
particles; Pyro's CVAE tutorial reports it with 10).

Targets (``--targets grey``, Pyro's): grey pixel values as Bernoulli targets (the "likelihood" is
then minus the binary cross-entropy), inputs grey, missing pixels -1. ``--targets binary``: each
training batch binarised afresh, validation and test binarised once with a fixed seed.

Protocols: ``--protocol ours`` (the default) trains on the first 50,000 training images, picks the
epoch on the last 10,000 (early stopping with ``--patience``), and touches the test set once at the
end. ``--protocol pyro`` is the protocol of Pyro's CVAE example but for its stopping rule: all 60,000
training images, no validation, a fixed number of epochs (``--baseline-epochs`` and ``--epochs``,
chosen from the validation curves of an ``ours`` run, where Pyro's example stops early on the test
set), then the test set once.
"""

import torch
from pyro.infer import Trace_ELBO
from torch.nn.functional import one_hot

from guides.cvae import GUIDES, RECOGNITION_INPUTS, GSNNGuide, make_guide
from ppl_models.cvae import CVAE, GENERATION_INPUTS, Baseline, Hybrid, missing_mask, observe
from ppl_models.data import Batches, load_mnist
from ppl_models.data.mnist import Split
from ppl_models.inference.evaluate import evaluate
from ppl_models.inference.objectives import OBJECTIVES, make_objective
from ppl_models.judge import fidelity
from ppl_models.runs import experiment, plots
from ppl_models.runs.experiment import positive_int, ranged

hybrid_weight = ranged(float, lambda v: 0 < v < 1,
                       "strictly between 0 and 1 (for 1 use --objective elbo, for 0 --guide gsnn)")
RUN_NAMES = {"quadrants": "q{quadrants}-{targets}-{guide}-z{z_dim}", "label": "label-{targets}-{guide}-z{z_dim}"}
PROTOCOLS = ("ours", "pyro")
GENERATION = {"quadrants": "z", "label": "xz"}  # the default generation input of each task (validation)
RECOGNITION = {"quadrants": "y", "label": "xy"}  # and what the recognition network sees (for labels, x is not in y)


def parse_args(argv=None):
    p = experiment.parser(__doc__, epochs=100, batch_size=128, eval_samples=1000, eval_images=10000,
                          objectives=(*OBJECTIVES, "hybrid"))
    p.add_argument("--condition", default="quadrants", choices=["quadrants", "label"])
    p.add_argument("--quadrants", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3],
                   help="observed quadrants, one run each")
    p.add_argument("--targets", default="grey", choices=["grey", "binary"])
    p.add_argument("--guide", default="recognition", choices=list(GUIDES))
    p.add_argument("--hybrid", type=hybrid_weight, default=0.5,
                   help="--objective hybrid: the weight of the CVAE term (the GSNN term takes the rest)")
    p.add_argument("--generation-input", default=None, choices=GENERATION_INPUTS,
                   help="what the generation network sees: z alone (p(y | z), as Pyro's example; the default for "
                        "quadrants, 1.35 nats better on validation), or xz, the input and z (p(y | x, z), Sohn et "
                        "al.; the default for --condition label)")
    p.add_argument("--recognition-input", default=None, choices=RECOGNITION_INPUTS,
                   help="what q(z | x, y)'s network sees: y, the whole target image (as Pyro's example; the default "
                        "for quadrants, where x is y with pixels hidden: 4.4 nats better on validation), or xy, the "
                        "input beside it (the default for --condition label)")
    p.add_argument("--z-dim", type=positive_int, default=200)
    p.add_argument("--hidden", type=positive_int, default=500)
    p.add_argument("--baseline-epochs", type=positive_int, default=50, help="baseline epochs at most (early stopping)")
    p.add_argument("--patience", type=positive_int, default=10,
                   help="stop after this many epochs without improvement (the NN's and the CVAE's): the CVAE's "
                        "validation -ELBO keeps improving slowly past short flat stretches (one quadrant: patience 3 "
                        "stopped at 72.47 after epoch 41, patience 10 reached 71.14 at epoch 75)")
    p.add_argument("--protocol", default="ours", choices=PROTOCOLS,
                   help="ours: 50,000 images, early stopping on 10,000; pyro: all 60,000, fixed epochs")
    args = p.parse_args(argv)
    args.generation_input = args.generation_input or GENERATION[args.condition]
    args.recognition_input = args.recognition_input or RECOGNITION[args.condition]
    if args.jit and args.condition == "label":
        p.error("argument --jit: not with --condition label (Pyro's JitTrace_ELBO cannot trace its missing = None)")
    if args.objective == "hybrid" and args.guide != "recognition":
        p.error("--objective hybrid mixes the recognition guide's ELBO with the GSNN's: use --guide recognition")
    return args


def make_inputs(y, labels, missing, condition):
    """The model's arguments ``(x, y, missing)`` for target images ``y``."""
    if condition == "label":
        return one_hot(labels, 10).to(y.dtype), y, None
    miss = missing.expand(len(y), 784)
    return observe(y, miss), y, miss


def batches(args, train, missing, condition):
    """Shuffled ``(x, y, missing)`` minibatches; a fresh binarisation of each batch with ``binary``."""
    binary = args.targets == "binary"

    def make(images, labels):
        return make_inputs(torch.bernoulli(images) if binary else images, labels, missing, condition)
    return Batches(train.x, train.y, batch_size=args.batch_size, make=make)


def load_data(args, device):
    """MNIST's ``train, valid, test`` Splits on ``device``: grey targets, or binarised per batch."""
    return load_mnist("mnist", device, "dynamic" if args.targets == "binary" else "grey")


def build(args, device, baseline=None):
    """The CVAE and its guide from the run's settings (also what rebuilds a run from its folder). With
    observed quadrants the CVAE holds the baseline network (a trained one, or a fresh one whose weights
    come with the CVAE's checkpoint)."""
    if args.condition == "quadrants" and baseline is None:
        baseline = Baseline(784, (args.hidden, args.hidden)).to(device)
    cvae = CVAE(10 if args.condition == "label" else 784, args.z_dim, (args.hidden, args.hidden), baseline,
                args.generation_input)
    cvae = cvae.to(device)
    return cvae, make_guide(args.guide, cvae, inputs=args.recognition_input).to(device)


def train_baseline(run, data, missing):
    args, (train, valid, _) = run.args, data
    baseline = Baseline(784, (args.hidden, args.hidden)).to(run.device)
    validate = best = None
    if valid is not None:
        vx, vy, vm = make_inputs(valid.x, valid.y, missing, "quadrants")

        def validate():  # exact: the baseline has no latent
            return {"valid_nll": evaluate(baseline, baseline, vx, vy, vm, num_samples=1, batch_size=500,
                                          khat=False)["nll"]}
        best = ("valid_nll", "min")

    out = run.out / "baseline"
    experiment.train(run, baseline, baseline, Trace_ELBO(), batches(args, train, missing, "quadrants"), out=out,
                     epochs=args.baseline_epochs, validate=validate, best=best, patience=args.patience)
    experiment.load_best(run, baseline, baseline, out=out)
    return baseline


def train_cvae(run, data, missing, baseline):
    args, (train, valid, _) = run.args, data
    cvae, guide = build(args, run.device, baseline)
    if args.objective == "hybrid":
        loss = Hybrid(args.hybrid, GSNNGuide(cvae).guide, make_objective("elbo", args.particles))
    else:
        loss = make_objective(args.objective, args.particles, args.renyi_alpha, jit=args.jit)
    validate = best = None
    if valid is not None:
        vx, vy, vm = make_inputs(valid.x, valid.y, missing, args.condition)
        # one-particle -ELBO of the guide being trained (for gsnn: of the prior)
        validate = experiment.validation(cvae, guide, vx, vy, vm, key="valid_neg_elbo", batch_size=500,
                                         particles="plate")
        best = ("valid_neg_elbo", "min")
    history = experiment.train(run, cvae, guide, loss, batches(args, train, missing, args.condition),
                               validate=validate, best=best, patience=args.patience)
    return cvae, guide, history, experiment.load_best(run, cvae, guide)


def completion_figure(test, missing, baseline, cvae, path, n_digits=8, n_samples=5):
    x, y, miss = make_inputs(test.x[:n_digits], test.y[:n_digits], missing, "quadrants")
    with torch.no_grad():
        nn_pred = torch.where(miss, baseline.predict(x), x)
        samples = torch.where(miss, cvae.predict(x, miss, n_samples), x)  # [S, n, 784]
    shown = torch.where(miss, torch.full_like(x, 0.35), x)  # missing pixels grey
    rows = torch.stack([shown, y, nn_pred, *samples], 1).reshape(-1, 784)  # one row per digit
    plots.image_grid(rows.cpu(), path, rows=n_digits, cols=3 + n_samples,
                     title=f"input | truth | NN | {n_samples} CVAE completions (z ~ p(z|x))")


def label_figure(cvae, path, n_samples=10):
    device = next(cvae.parameters()).device
    x = one_hot(torch.arange(10, device=device), 10).float()
    with torch.no_grad():
        imgs = cvae.predict(x, None, n_samples).transpose(0, 1).reshape(-1, 784)  # row = class
    plots.image_grid(imgs.cpu(), path, rows=10, cols=n_samples, title="p(y | label): samples per class")


def run_template(args):
    """The run folder's name; it says the network inputs that are not the task's default."""
    gen, rec = args.generation_input, args.recognition_input
    return (RUN_NAMES[args.condition] + ("" if gen == GENERATION[args.condition] else f"-gen-{gen}")
            + ("" if rec == RECOGNITION[args.condition] else f"-rec-{rec}")
            + ("-pyro" if args.protocol == "pyro" else ""))


def run_setting(args, data):
    run = experiment.start(args, "cvae", run_template(args), free=("baseline_epochs",),
                           serial_only="it trains the baseline network and then the CVAE, one after another")
    label = args.condition == "label"
    missing = None if label else missing_mask(args.quadrants).to(run.device)
    baseline = None if label else train_baseline(run, data, missing)
    cvae, guide, history, eval_epoch = train_cvae(run, data, missing, baseline)
    test = data[2]
    x, y, miss = make_inputs(test.x, test.y, missing, args.condition)
    metrics = experiment.score(run, cvae, guide, x, y, miss, particles="plate")
    if baseline is not None:
        n = metrics["eval_images"]
        metrics["nn_log_px"] = evaluate(baseline, baseline, x[:n], y[:n], miss[:n], num_samples=1)["log_px_mean"]
        print(f"baseline NN: test log p(y | x) {metrics['nn_log_px']:.2f} nats (exact)")
        completion_figure(test, missing, baseline, cvae, run.out / "completions.png")
        return experiment.finish(run, metrics, history, eval_epoch)
    label_figure(cvae, run.out / "samples_per_class.png")
    judged, details = fidelity.judge(run, lambda digits: cvae.predict(one_hot(digits, 10).float())[0],
                                     conditional=True)
    return experiment.finish(run, {**metrics, **judged}, history, eval_epoch, samples_judged=details)


def main(args):
    if args.smoke:
        args.baseline_epochs = 1
    data = experiment.smoke_subsets(args, *load_data(args, experiment.device_of(args)))
    if args.protocol == "pyro":  # all the training images, no validation split
        train, valid, test = data
        data = (Split(torch.cat([train.x, valid.x]), torch.cat([train.y, valid.y])), None, test)
    settings = args.quadrants if args.condition == "quadrants" else [None]
    runs = experiment.each(args, "quadrants", settings, lambda one: run_setting(one, data), folder="q{}")
    print(f"\ntest log p(y | x), nats per image ({args.targets} targets, guide {args.guide}):")
    print(f"{'run':40} {'NN (exact)':>12} {'CVAE IS':>12} {'CVAE ELBO':>12}")
    for r in runs:
        m = r["metrics"]
        nn = f"{m['nn_log_px']:12.2f}" if "nn_log_px" in m else f"{'-':>12}"
        print(f"{r['run']:40} {nn} {m['test_log_px']:12.2f} {m['test_elbo']:12.2f}")
    return runs


if __name__ == "__main__":
    experiment.cli(main, parse_args)

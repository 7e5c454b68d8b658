"""Semi-supervised MNIST with the M2 model (Kingma et al. 2014), the label enumerated, or with the
auxiliary deep generative models of Maaløe et al. (2016).

    python examples/ssvae.py --labeled 5000              # N/10 labelled images per class
    python examples/ssvae.py --labeled 100 --seeds 3     # three label draws (one run folder each)
    python examples/ssvae.py --guide sample              # sample y instead of enumerating it
    python examples/ssvae.py --form adgm --labeled 100   # the auxiliary DGM (or sdgm, the skip DGM)
    python examples/ssvae.py --labeled 100 --binarize grey   # grey pixels, as Pyro's SS-VAE tutorial
    python examples/ssvae.py --labeled 100 --decoder-layers 2 --classifier-hidden 500   # M2 with the ADGM's layers

Forms (``--form``): ``m2`` (``ppl_models/ssvae.py``: ``--decoder-layers`` hidden layers of ``--hidden`` units
in its decoder, one by default) and
``adgm`` / ``sdgm`` (``ppl_models/adgm.py``: an auxiliary a of ``--a-dim``, two hidden layers of
``--hidden`` units in every network, as in the paper); their guides are in ``guides/ssvae.py`` and
``guides/adgm.py``.

The first 50,000 training images are the pool: ``--labeled N`` of them (N/10 per class, drawn with
the seed) keep their label, the rest are unlabelled; the last 10,000 are the validation set, used to
pick the epoch; the test set is touched once, at the best validation epoch, for the error of
``argmax q(y|x)`` (all 10,000 images) and the importance-sampled log p(x) with y summed out
(``--eval-images``, S = ``--eval-samples``).
Each training step pairs one unlabelled batch (label summed out by ``TraceEnum_ELBO``) with one
labelled batch (ELBO plus ``alpha`` times the classifier's cross-entropy). Each run also reports, on
the first 500 validation images, the error of the story's own label posterior argmax_y p(y | x)
(each p(x, y) by importance sampling) beside the classifier's: which of the two lags.
"""
import statistics
import time

import torch
from pyro.infer import JitTrace_ELBO, JitTraceEnum_ELBO, JitTraceGraph_ELBO, TraceEnum_ELBO, TraceGraph_ELBO

import guides.adgm
import guides.ssvae
from ppl_models.adgm import FORMS, AuxiliaryDGM
from ppl_models.data import N_TRAIN, binarize, labeled_indices, load_mnist
from ppl_models.inference import distributed
from ppl_models.inference.evaluate import label_log_posterior
from ppl_models.judge import fidelity
from ppl_models.runs import experiment, plots
from ppl_models.runs.experiment import nonnegative_float, nonnegative_int, positive_int
from ppl_models.runs.plots import plt
from ppl_models.ssvae import N_CLASSES, SSVAE, M2Objective

RUN_NAME = "{guide}-labeled{labeled}-z{z_dim}-alpha{alpha:g}"
DIAGNOSE_IMAGES = 500  # the story's own label posterior, on the first validation images (S = --eval-samples)
GUIDES = {"m2": guides.ssvae.GUIDES, "adgm": guides.adgm.GUIDES, "sdgm": guides.adgm.GUIDES}


def parse_args(argv=None):
    p = experiment.parser(__doc__, epochs=50, eval_samples=100, eval_images=1000, objectives=("elbo",),
                          why="the label is summed out by TraceEnum_ELBO; the multi-particle bounds need "
                              "reparameterised latents only")
    p.add_argument("--labeled", type=positive_int, default=5000, help="labelled images, a multiple of 10 up to 50000")
    p.add_argument("--form", default="m2", choices=list(GUIDES), help="M2, or the auxiliary (skip) DGM")
    p.add_argument("--guide", default="conv", choices=sorted(set().union(*GUIDES.values())))
    p.add_argument("--z-dim", type=positive_int, default=50)
    p.add_argument("--a-dim", type=positive_int, default=None,
                   help="adgm, sdgm: the auxiliary variable's size (default 100)")
    p.add_argument("--hidden", type=positive_int, default=500)
    p.add_argument("--decoder-layers", type=positive_int, default=1,
                   help="m2: hidden layers of --hidden units in p(x | y, z) (the auxiliary models have two)")
    p.add_argument("--classifier-hidden", type=nonnegative_int, default=0,
                   help="m2: a hidden layer of this many softplus units in q(y | x)'s head (0: a linear head; "
                        "the auxiliary models' guides have one of --hidden units)")
    p.add_argument("--labeled-batch-size", type=positive_int, default=None,
                   help="labelled images in the batch that follows each unlabelled one (default: --batch-size, "
                        "or all the labelled images where there are fewer)")
    p.add_argument("--alpha", type=nonnegative_float, default=50.0, help="weight of the classification term per image")
    p.add_argument("--optim", default="adam", choices=["adam", "rmsprop"])
    p.add_argument("--binarize", default="dynamic", choices=["dynamic", "grey"],
                   help="dynamic: a fresh binary draw of every training batch, validation and test drawn once; "
                        "grey: the grey values themselves everywhere, scored by the Bernoulli's cross-entropy "
                        "(Pyro's SS-VAE tutorial; not a normalised density, so log p(x) is not comparable)")
    experiment.add_lr_steps(p)
    p.add_argument("--seeds", type=positive_int, default=1, help="run this many label draws (seeds --seed.. --seed+K-1)")
    args = p.parse_args(argv)
    if args.labeled % 10 or args.labeled > N_TRAIN:
        p.error(f"--labeled must be a positive multiple of 10 up to {N_TRAIN}, got {args.labeled}")
    if args.form == "m2" and args.a_dim is not None:
        p.error("--a-dim is the auxiliary variable's size of --form adgm or sdgm; M2 has none")
    if args.form != "m2" and (args.decoder_layers != 1 or args.classifier_hidden):
        p.error("--decoder-layers and --classifier-hidden size M2's networks; --form adgm and sdgm have two "
                "hidden layers everywhere and a hidden layer in the classifier's head")
    if args.form != "m2" and args.a_dim is None:
        args.a_dim = 100
    if args.guide not in GUIDES[args.form]:
        p.error(f"--guide {args.guide}: --form {args.form} has the guides {', '.join(sorted(GUIDES[args.form]))}")
    return args


class PairedBatches:
    """One epoch: every unlabelled batch once, each followed by a labelled batch of ``labeled_batch_size``
    (default ``batch_size``; at most the labelled set), the labelled set cycled in fresh orders. Every
    batch goes through ``binarize`` with ``binarization``: a fresh draw when ``dynamic``, as it is when ``grey``."""

    def __init__(self, x_lab, y_lab, x_unlab, batch_size, labeled_batch_size=None, binarization="dynamic"):
        self.x_lab, self.y_lab, self.x_unlab, self.bs = x_lab, y_lab, x_unlab, batch_size
        self.bs_l = min(labeled_batch_size or batch_size, len(x_lab))
        self.binarization = binarization

    def __len__(self):
        return 2 * -(-len(self.x_unlab) // self.bs)

    def __iter__(self):
        dev = self.x_unlab.device
        perm_u = torch.randperm(len(self.x_unlab), device=dev)
        n_lab_batches = len(self) // 2
        bs_l = self.bs_l
        reps = -(-n_lab_batches * bs_l // len(self.x_lab))
        perm_l = torch.cat([torch.randperm(len(self.x_lab), device=dev) for _ in range(reps)])
        for i in range(n_lab_batches):
            iu = perm_u[i * self.bs:(i + 1) * self.bs]
            yield (binarize(self.x_unlab[iu], self.binarization), None)
            il = perm_l[i * bs_l:(i + 1) * bs_l]
            yield (binarize(self.x_lab[il], self.binarization), self.y_lab[il])


def error_rate(guide, x, y, batch_size=2000):
    guide.eval()
    with torch.no_grad():
        pred = torch.cat([guide.classifier(x[i:i + batch_size]).argmax(-1) for i in range(0, len(x), batch_size)])
    return (pred != y).float().mean().item(), pred


def load_data(args, device):
    """MNIST's ``train, valid, test`` Splits on ``device``: grey values, binarised per batch (valid and
    test once) with ``--binarize dynamic``, left grey with ``grey``."""
    return load_mnist("mnist", device, args.binarize)


def build(args, device):
    """M2 (or ADGM, SDGM) and its guide from the run's settings (also what rebuilds a run from its folder)."""
    if args.form in FORMS:
        model = AuxiliaryDGM(args.z_dim, args.a_dim, (args.hidden, args.hidden), form=args.form).to(device)
        return model, guides.adgm.make_guide(args.guide, model).to(device)
    model = SSVAE(args.z_dim, (args.hidden,) * args.decoder_layers).to(device)
    return model, guides.ssvae.make_guide(args.guide, model, classifier_hidden=args.classifier_hidden).to(device)


def run_one(args, data, lr):
    name = (RUN_NAME if args.form == "m2" else "{form}-a{a_dim}-" + RUN_NAME) + ("-lb{labeled_batch_size}"
                                                                               if args.labeled_batch_size else "")
    name += "-grey" if args.binarize == "grey" else ""
    name += f"-dec{args.decoder_layers}" if args.decoder_layers != 1 else ""
    name += f"-ch{args.classifier_hidden}" if args.classifier_hidden else ""
    run = experiment.start(args, "ssvae", name)
    train, valid, test = data
    lab, unlab = labeled_indices(train.y[:N_TRAIN], args.labeled, seed=args.seed)
    lab, unlab = lab.to(run.device), unlab.to(run.device)
    model, guide = build(args, run.device)
    if args.jit:  # Pyro's compiled ELBOs, the same losses (tests/test_objectives.py)
        elbo = JitTraceGraph_ELBO() if args.guide == "sample" else JitTraceEnum_ELBO(max_plate_nesting=1)
    else:
        elbo = TraceGraph_ELBO() if args.guide == "sample" else TraceEnum_ELBO(max_plate_nesting=1)
    objective = M2Objective(guide.classifier, args.alpha, elbo, JitTrace_ELBO() if args.jit else None)
    batches = PairedBatches(train.x[lab], train.y[lab], train.x[unlab], args.batch_size, args.labeled_batch_size,
                            binarization=args.binarize)

    def validate():
        return {"valid_error": error_rate(guide, valid.x, valid.y)[0]}

    history = experiment.train(run, model, guide, objective, batches, optim=args.optim, validate=validate,
                               lr=lr, best=("valid_error", "min"))
    eval_epoch = experiment.load_best(run, model, guide)
    test_error, pred = error_rate(guide, test.x, test.y)
    valid_error = next(h["valid_error"] for h in history if h["epoch"] == eval_epoch)
    print(f"seed {args.seed}: test error {100 * test_error:.2f}% at the best validation epoch {eval_epoch} "
          f"(valid error {100 * valid_error:.2f}%)")
    # y summed out: log p(x) of M2 (or of the ADGM, SDGM); the particles in a plate run the encoders once
    # per image, with the same weights as repeating the images (tests/test_adgm.py)
    if args.binarize == "grey":
        metrics = {}
        print("test log p(x) not scored: grey pixels under a Bernoulli have no normalised density")
    else:
        metrics = experiment.score(run, model, guide, test.x, particles="plate")
    metrics.update(test_error=test_error, valid_error=valid_error, test_images_classified=len(test.x))
    metrics.update(model_posterior(model, guide, valid, args.eval_samples))
    figures(model, guide, test, pred, run.out)
    # the story as a generator of the label asked for (z ~ N(0, I), the SDGM's a ~ p(a | y, z)): fidelity, quality
    judged, details = fidelity.judge(run, lambda y: model.generate(y, test.x), conditional=True)
    metrics.update(judged)
    return experiment.finish(run, metrics, history, eval_epoch, samples_judged=details)


def model_posterior(model, guide, valid, num_samples, n=DIAGNOSE_IMAGES):
    """What the story itself says the digit is, argmax_y p(y | x) with each p(x, y) by importance
    sampling (S = ``num_samples``, the proposal q(z | x, y)), beside the classifier q(y | x), on the
    first ``n`` validation images. The unlabelled images' ELBO pulls q(y | x) toward this posterior
    (up to the bias of the bound), so the two errors say whether the story or the classifier lags."""
    x, y = valid.x[:n], valid.y[:n]
    started = time.perf_counter()
    with torch.no_grad():
        post = label_log_posterior(model, guide, x, N_CLASSES, num_samples=num_samples)
    story = (post.argmax(-1) != y).float().mean().item()
    classifier = error_rate(guide, x, y)[0]
    print(f"on the first {len(x)} validation images: error of the story's own p(y | x) (IS, S = {num_samples}) "
          f"{100 * story:.2f}%, of the classifier q(y | x) {100 * classifier:.2f}% "
          f"({time.perf_counter() - started:.0f} s)")
    return {"valid_error_story_posterior": story, "valid_error_classifier_same_images": classifier,
            "story_posterior_images": len(x), "story_posterior_samples": num_samples}


def figures(model, guide, test, pred, out):
    model.eval()
    with torch.no_grad():
        idx = torch.stack([(test.y == d).nonzero()[0, 0] for d in range(10)])
        z = guide.encode(test.x[idx], test.y[idx])  # the style of one test digit per row
        labels = torch.arange(10, device=z.device)
        grid = model.decode(z[:, None, :].expand(10, 10, z.shape[-1]), labels.expand(10, 10))
        imgs = torch.cat([test.x[idx][:, None, :], grid], 1).reshape(-1, 784).cpu()
    plots.image_grid(imgs, out / "style_content.png", rows=10, cols=11,
                     title="test digit (left) | its style z with y = 0..9")
    conf = torch.zeros(10, 10, dtype=torch.long)
    conf.index_put_((test.y.cpu(), pred.cpu()), torch.ones_like(pred.cpu()), accumulate=True)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(conf.log1p(), cmap="Blues")
    for i in range(10):
        for j in range(10):
            ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_xticks(range(10)), ax.set_yticks(range(10))
    ax.set_title("confusion matrix, test set")
    plots.save_figure(fig, out / "confusion.png")


def main(args):
    if distributed.launched() and args.seeds > 1:
        raise experiment.Refused("under torchrun one command trains one model: --seeds above 1 trains several; "
                                 "run one seed per command, or sweep the seeds with examples/sweep.py")
    lr = experiment.step_schedule(args.lr, args.lr_steps)  # a bad schedule is refused before any data or run
    if args.smoke:
        args.labeled = min(args.labeled, 100)
    data = experiment.smoke_subsets(args, *load_data(args, experiment.device_of(args)))
    runs = experiment.each(args, "seed", range(args.seed, args.seed + args.seeds), lambda one: run_one(one, data, lr),
                           folder="seed{}")
    errors = [100 * r["metrics"]["test_error"] for r in runs]
    std = statistics.stdev(errors) if len(errors) > 1 else 0.0
    print(f"{args.labeled} labels, {args.form}, guide {args.guide}: test error {statistics.mean(errors):.2f}% +- {std:.2f} "
          f"over {len(errors)} seed(s), {runs[0]['epochs']} epochs")
    return runs


if __name__ == "__main__":
    experiment.cli(main, parse_args)

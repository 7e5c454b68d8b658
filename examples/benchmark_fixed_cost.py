"""Benchmark: what a Pyro training step costs beyond its arithmetic, for every model, at the examples'
default sizes and at a small size that stands for the GPU regime on a CPU (there a step's
arithmetic takes well under a millisecond, and what the step costs in Python is most of its time).

    python examples/benchmark_fixed_cost.py --threads 1               # every model, both sizes
    python examples/benchmark_fixed_cost.py --models vae vrnn --sizes small
    python examples/benchmark_fixed_cost.py --device cuda              # on a GPU, the real regime
    python examples/benchmark_fixed_cost.py --models vae --sizes small --profile   # where the time goes

For each model and size: the Pyro step (the loss the example trains with, argument validation off,
then Adam) against a hand-written PyTorch step of the very same networks and estimator (the same
reparameterised samples, the same sums), the two timed interleaved in one run (the median of
``--repeats`` blocks; ``ppl_models/runs/benchmark.py``). Printed and written to ``--out``: ms per step
for each, the ratio, and the overhead (Pyro minus hand-written, ms per step). The hand-written losses
of the VAE, M2, the VRNN and DRAW are those of their own benchmarks (``examples/benchmark_*.py``); the
CVAE's and the sequence VAE's are here; ``vae-meanfield`` is the VAE under ``TraceMeanField_ELBO``
against the hand-written analytic KL. ``--jit`` adds Pyro's compiled ELBO of each (timed after it
has compiled on every batch), or what stops it from compiling. Data: MNIST images (binarised) and rows; random pen
positions of the strokes' shape for the sequence VAE (the time of a step does not depend on values).
``--loop`` adds the project's training loop (``fit``: progress bar, checks, one checkpoint an epoch)
against the bare loop of the same steps. ``--profile`` adds, for each model and size, where the Pyro step's time goes (``cProfile``, grouped:
Pyro's effect handlers, its parameter registration, its ELBO's bookkeeping, the distributions, the
optimiser's and torch.nn's Python, the collection's own code, and the arithmetic).
"""
import argparse
import cProfile
import json
import pstats
import warnings
from functools import lru_cache, partial
from pathlib import Path

import pyro
import torch
from pyro.infer import JitTrace_ELBO, JitTraceEnum_ELBO, Trace_ELBO, TraceMeanField_ELBO
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

import guides.cvae
import guides.draw
import guides.seqvae
import guides.ssvae
import guides.vae
import guides.vrnn
from ppl_models.cvae import CVAE, missing_mask, observe
from ppl_models.data import load_mnist
from ppl_models.draw import DRAW
from ppl_models.inference.objectives import CompiledMeanField
from ppl_models.inference.train import resolve_device
from ppl_models.runs.benchmark import LOG_2PI, joint_optimizer, time_interleaved, training_steps
from ppl_models.runs.experiment import device_name, load_example
from ppl_models.seqvae import CENTRE, SeqVAE
from ppl_models.ssvae import SSVAE, M2Objective
from ppl_models.vae import VAE
from ppl_models.vrnn import VRNN

MODELS = ("vae", "vae-meanfield", "m2", "cvae", "vrnn", "seqvae", "draw")
SIZES = {  # the examples' defaults, and a small size of the same shapes
    "vae": {"default": {"hidden": (500, 500), "z": 50}, "small": {"hidden": (64,), "z": 8}},
    "vae-meanfield": {"default": {"hidden": (500, 500), "z": 50}, "small": {"hidden": (64,), "z": 8}},
    "m2": {"default": {"hidden": 500, "z": 50}, "small": {"hidden": 64, "z": 8}},
    "cvae": {"default": {"hidden": (500, 500), "z": 200}, "small": {"hidden": (64, 64), "z": 8}},
    "vrnn": {"default": {"hidden": 128, "z": 16}, "small": {"hidden": 16, "z": 4}},
    "seqvae": {"default": {"hidden": 512, "z": 64}, "small": {"hidden": 16, "z": 4}},
    "draw": {"default": {"hidden": 256, "z": 100, "glimpses": 64}, "small": {"hidden": 16, "z": 4, "glimpses": 8}},
}


def gaussian_terms(loc, scale, eps):
    """A reparameterised sample z = loc + scale * eps, log N(z; 0, I) and log N(z; loc, scale), summed."""
    z = loc + scale * eps
    return z, -0.5 * (z ** 2 + LOG_2PI).sum(-1), (-0.5 * (eps ** 2 + LOG_2PI) - scale.log()).sum(-1)


def hand_cvae_loss(model, guide, x, y, missing):
    """-ELBO of the CVAE with the recognition guide: log p(y_missing | x, z) + log p(z | x) - log q(z | x, y)."""
    loc, scale = guide.net(torch.cat([x, y], -1)).chunk(2, -1)
    scale = softplus(scale) + 1e-4
    eps = torch.randn_like(loc)
    z = loc + scale * eps
    x_filled = model.fill(x, missing)
    p_loc, p_scale = model.prior_net(x_filled).chunk(2, -1)
    p_scale = softplus(p_scale) + 1e-4
    log_pz = (-0.5 * (((z - p_loc) / p_scale) ** 2 + LOG_2PI) - p_scale.log()).sum(-1)
    log_qz = (-0.5 * (eps ** 2 + LOG_2PI) - scale.log()).sum(-1)
    logits = model.generate(x_filled, z)
    log_py = -(binary_cross_entropy_with_logits(logits, y, reduction="none") * missing).sum(-1)
    return -(log_py + log_pz - log_qz).sum()


def hand_seqvae_loss(model, guide, x):
    """-ELBO of the sequence VAE with the LSTM guide: log N(X; decode(z), sigma) + log p(z) - log q(z | X)."""
    loc, scale = guide.params(x)
    z, log_pz, log_qz = gaussian_terms(loc, scale, torch.randn_like(loc))
    sigma = model.log_sigma.exp()
    log_px = (-0.5 * (((x - model.decode(z)) / sigma) ** 2 + LOG_2PI) - model.log_sigma).sum((-1, -2))
    return -(log_px + log_pz - log_qz).sum()


@lru_cache(maxsize=None)
def training_images(device):
    """MNIST's training images on ``device``, loaded once for every model and size."""
    return load_mnist("mnist", device, "dynamic")[0]


def setups(name, size, device, batch):
    """``(pyro_loss_and_grads, hand_loss, optimizer, batches, (model, guide, loss))`` for one model at one size."""
    s = SIZES[name][size]
    train = training_images(device)
    images = [torch.bernoulli(train.x[i * batch:(i + 1) * batch]) for i in range(8)]
    elbo = Trace_ELBO()
    if name in ("vae", "vae-meanfield"):  # the Monte Carlo KL, or the analytic one (TraceMeanField_ELBO)
        model = VAE(s["z"], s["hidden"]).to(device)
        guide = guides.vae.make_guide("diag", model).to(device)
        vae = load_example("benchmark_vae")
        hand, batches = vae.torch_elbo_loss, [(x,) for x in images]
        if name == "vae-meanfield":
            elbo, hand = TraceMeanField_ELBO(), vae.torch_elbo_loss_analytic
    elif name == "m2":
        model = SSVAE(s["z"], (s["hidden"],)).to(device)
        guide = guides.ssvae.make_guide("mlp", model).to(device)
        m2 = load_example("benchmark_ssvae")
        elbo = M2Objective(guide.classifier, 50.0)
        labels = [train.y[i * batch:(i + 1) * batch] for i in range(8)]
        batches = [(x,) for x in images[:4]] + [(x, y) for x, y in zip(images[4:], labels[4:])]
        hand = lambda model, guide, x, y=None: m2.hand_m2_loss(model, guide, x, y, alpha=50.0)
    elif name == "cvae":
        model = CVAE(784, s["z"], s["hidden"]).to(device)
        guide = guides.cvae.make_guide("recognition", model).to(device)
        miss = missing_mask(1).to(device).expand(batch, 784)
        batches = [(observe(x, miss), x, miss) for x in images]
        hand = hand_cvae_loss
    elif name == "vrnn":
        model = VRNN("bernoulli", "learned", s["z"], s["hidden"]).to(device)
        guide = guides.vrnn.make_guide("filtering", model).to(device)
        hand, batches = load_example("benchmark_vrnn").hand_vrnn_loss, [(x.reshape(-1, 28, 28),) for x in images]
    elif name == "seqvae":
        model = SeqVAE(s["z"], s["hidden"], 60).to(device)
        guide = guides.seqvae.make_guide("lstm", model).to(device)
        g = torch.Generator(device=device).manual_seed(0)
        batches = [(CENTRE + 5 * torch.randn(batch, 60, 2, generator=g, device=device),) for _ in range(8)]
        hand = hand_seqvae_loss
    else:
        model = DRAW(s["glimpses"], s["z"], s["hidden"]).to(device)
        guide = guides.draw.make_guide("draw", model).to(device)
        hand, batches = load_example("benchmark_draw").hand_draw_loss, [(x,) for x in images]
    return (lambda *b: elbo.loss_and_grads(model.model, guide.guide, *b), lambda *b: hand(model, guide, *b),
            joint_optimizer(model, guide), batches, (model, guide, elbo))


WHERE = (  # where a step's own time (profiled) is spent, by the file of the function that spends it
    ("Pyro: parameter registration (pyro.module, pyro.param)", ("pyro/primitives.py", "pyro/params/")),
    ("Pyro: effect handlers (trace, replay, plates, messages)", ("pyro/poutine/",)),
    ("Pyro: the ELBO's bookkeeping (traces to a loss)", ("pyro/infer/", "pyro/util.py", "pyro/ops/")),
    ("distributions (constructors, log_prob, rsample)", ("pyro/distributions/", "torch/distributions/")),
    ("the optimiser (Adam)", ("torch/optim/",)),
    ("torch.nn modules' Python", ("torch/nn/",)),
    ("the collection's stories, guides and checks", ("ppl_models/", "guides/")),
)


def _where(file):
    file = file.replace("\\", "/")
    return next((label for label, parts in WHERE if any(p in file for p in parts)), None)


def profile_step(step, batches, n):
    """The share of a step's time by where it is spent (``WHERE``), from ``cProfile`` over ``n`` steps.
    A built-in's time (a torch kernel, a tensor's method) counts as Pyro's where Pyro's own code calls
    it (the tensors its plates and messages make); every other built-in is "arithmetic", the kernels
    of the networks, the densities, backward and Adam's update, which a hand-written step pays too."""
    prof = cProfile.Profile()
    prof.enable()
    for i in range(n):
        step(*batches[i % len(batches)])
    prof.disable()
    stats = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}
    arithmetic = "arithmetic (torch's kernels: forward, backward, Adam's update)"
    shares = {label: 0.0 for label, _ in WHERE} | {arithmetic: 0.0}
    for (file, _, _), (_, _, own, _, callers) in stats.items():
        if file != "~":  # Python code: where its file is
            shares[_where(file) or arithmetic] += own
            continue
        spent = sum(c[2] for c in callers.values()) or 1.0  # a built-in: split over its callers
        for (caller_file, _, _), c in callers.items():
            place = _where(caller_file)
            shares[place if place and place.startswith("Pyro") else arithmetic] += own * c[2] / spent
    total = sum(shares.values())
    return {k: v / total for k, v in shares.items()}, 1e3 * total / n


def time_loop(step, model, guide, elbo, blocks, repeats):
    """ms per step of the project's training loop (``fit``: one epoch over ``blocks``, the progress
    bar drawn, one checkpoint at the end of the epoch, as in every example) against the bare loop of
    the same Pyro ``step`` (:func:`training_steps`), interleaved ``repeats`` times: what the loop adds."""
    import contextlib
    import io
    import statistics
    import tempfile
    import time

    from ppl_models.inference.train import fit

    def bare():
        t0 = time.perf_counter()
        for batch in blocks:
            step(*batch)
        return time.perf_counter() - t0

    def loop():
        with tempfile.TemporaryDirectory() as out, contextlib.redirect_stderr(io.StringIO()):
            t0 = time.perf_counter()
            fit(model, guide, elbo, blocks, epochs=1, out=out, progress=True, log=lambda *a: None)
            return time.perf_counter() - t0

    times = {"bare": [], "loop": []}
    for _ in range(repeats):
        times["bare"].append(bare())
        times["loop"].append(loop())
    return {k: 1e3 * statistics.median(v) / len(blocks) for k, v in times.items()}


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--sizes", nargs="+", default=["small", "default"], choices=["small", "default"])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--repeats", type=int, default=7, help="interleaved blocks per step function")
    p.add_argument("--seconds", type=float, default=1.0, help="about this long per block (sets its steps)")
    p.add_argument("--device", type=device_name, default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="results/benchmark_fixed_cost")
    p.add_argument("--jit", action="store_true", help="also time the step with Pyro's JIT-compiled ELBO")
    p.add_argument("--profile", action="store_true",
                   help="also print where the Pyro step's time goes (cProfile, grouped by Pyro's parts)")
    p.add_argument("--loop", action="store_true",
                   help="also time the project's training loop (fit, with its progress bar and checkpoint) "
                        "against the bare loop of the same steps")
    p.add_argument("--smoke", action="store_true")
    return p


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.repeats, args.seconds, args.sizes = 1, 0.01, ["small"]
    device = resolve_device(args.device)
    rows = []
    print(f"Pyro step against a hand-written step of the same networks, batch {args.batch_size}, {device}, "
          f"{torch.get_num_threads()} thread(s), median of {args.repeats} interleaved blocks")
    print(f"{'model':13s} {'size':8s} {'Pyro ms':>9s} {'hand ms':>9s} {'ratio':>7s} {'overhead ms':>12s}")
    for name in args.models:
        for size in args.sizes:
            pyro.clear_param_store()
            pyro.set_rng_seed(0)
            pyro_loss, hand_loss, opt, batches, (model, guide, elbo) = setups(name, size, device, args.batch_size)
            with torch.no_grad(), pyro.validation_enabled(False):  # the two compute the same loss (5 draws)
                same = [sum(float(elbo.loss(model.model, guide.guide, *batches[0])) for _ in range(5)) / 5,
                        sum(float(hand_loss(*batches[0])) for _ in range(5)) / 5]
            steps = training_steps(pyro_loss, hand_loss, opt)
            jit_fails = None
            if args.jit:  # Pyro's JIT-compiled ELBO on the same networks and optimiser
                jit = (M2Objective(guide.classifier, 50.0, JitTraceEnum_ELBO(max_plate_nesting=1), JitTrace_ELBO())
                       if name == "m2"
                       else CompiledMeanField() if name == "vae-meanfield" else JitTrace_ELBO())
                jit_loss = partial(jit.loss_and_grads, model.model, guide.guide)
                try:
                    with warnings.catch_warnings():  # the tracer's notes on Python values in the graph
                        warnings.simplefilter("ignore")
                        with pyro.validation_enabled(False):
                            for batch in batches:  # compiles (M2: an unlabelled and a labelled batch)
                                jit_loss(*batch)
                    steps["jit"] = training_steps(jit_loss, hand_loss, opt)["pyro"]
                except Exception as e:  # what does not compile is reported, the rest measured
                    jit_fails = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
                opt.zero_grad(set_to_none=True)
            # one step of each sets the block length: about --seconds per block
            t = time_interleaved(steps, batches[:1], 1, device)
            per = max(v["median"] for v in t.values())
            n = max(1, min(len(batches), round(args.seconds / max(per, 1e-6))))
            blocks = [batches[i % len(batches)] for i in range(n)]
            timed = time_interleaved(steps, blocks, args.repeats, device)
            a, b = 1e3 * timed["pyro"]["median"], 1e3 * timed["torch"]["median"]
            jit_ms = 1e3 * timed["jit"]["median"] if "jit" in timed else None
            row = {"model": name, "size": size, **{k: list(v) if isinstance(v, tuple) else v
                                                    for k, v in SIZES[name][size].items()},
                   "ms_pyro": a, "ms_hand": b, "ratio": a / b, "overhead_ms": a - b, "steps_per_block": n,
                   "loss_pyro": same[0], "loss_hand": same[1], **({"ms_jit": jit_ms} if jit_ms else {}),
                   **({"jit_fails": jit_fails} if jit_fails else {})}
            if args.loop:
                lt = time_loop(steps["pyro"], model, guide, elbo, [batches[i % len(batches)] for i in range(max(n, 50))],
                               args.repeats)
                row.update(ms_bare_loop=lt["bare"], ms_fit_loop=lt["loop"])
                print(f"  the training loop: {lt['loop']:.2f} ms a step against {lt['bare']:.2f} ms bare "
                      f"(+{lt['loop'] - lt['bare']:.2f} ms, its checkpoint included)")
            if args.profile:
                shares, ms = profile_step(steps["pyro"], batches, max(n, 20))
                row["profile"] = shares
                print(f"  where the Pyro step's time goes ({ms:.2f} ms a step under the profiler):")
                for label, share in sorted(shares.items(), key=lambda kv: -kv[1]):
                    print(f"    {100 * share:5.1f}%  {label}")
            rows.append(row)
            print(f"{name:13s} {size:8s} {a:9.2f} {b:9.2f} {a / b:7.3f} {a - b:12.2f}   "
                  + (f"JIT {jit_ms:.2f} ms ({jit_ms / b:.3f}x)   " if jit_ms else "")
                  + (f"JIT fails ({jit_fails})   " if jit_fails else "")
                  + f"(loss of one batch, mean of 5 draws: Pyro {same[0]:.1f}, hand-written {same[1]:.1f})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps({"device": str(device), "threads": torch.get_num_threads(),
                                                    "batch_size": args.batch_size, "rows": rows}, indent=1))
    print(f"wrote {out / 'benchmark.json'}")
    return rows


if __name__ == "__main__":
    main(parser().parse_args())

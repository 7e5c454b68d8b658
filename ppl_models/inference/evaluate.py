"""Importance-sampled evaluation for any model/guide pair.

For images x_b and particles z_s ~ q(z | x_b) the log importance weights are

    log w[s, b] = log p(x_b, z_s) - log q(z_s | x_b),            shape [S, B]

computed by tracing the guide and replaying the model on the batch repeated S times (one vectorised
pass per chunk of particles, chunked so that S = 5000 fits in bounded memory). From them:

    log p(x) ~= log (1/S) sum_s w[s]        (the IWAE bound; exact as S -> inf)
    ELBO     ~= (1/S) sum_s log w[s]
    ESS       = (sum_s w[s])^2 / sum_s w[s]^2
    k-hat     Pareto-smoothed importance sampling shape (ArviZ ``psislw``), per example

Every term is scored *unscaled* (masks, such as the steps past a sequence's end, still apply): a KL
weight, an annealing scale or a hybrid weight that reaches the model or the guide through their
keyword arguments changes the training objective, never the figure reported here.
A guide with no latent site (the RNN's) makes the likelihood exact: it is computed once, and the
weights have one row, ``[1, B]``.

Latent sites that the guide enumerates (``infer={"enumerate": "parallel"}``) are summed exactly:
their values fill the left-most dimensions of every log-density, which are log-sum-exp'ed away after
the guide's log-probability of the enumerated site is left out.
Pyro's ``vectorized_importance_weights`` sums over the batch, and its ``RenyiELBO`` (per example, see
``ppl_models/inference/objectives.py``) returns only the bound's sum, not the weights, hence this module.
"""
import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample


def _repeat(value, s):
    """Repeat a batch ``[B, ...]`` s times along the batch dimension: ``[s * B, ...]``."""
    if torch.is_tensor(value) and value.dim() > 0:
        return value.repeat(s, *([1] * (value.dim() - 1)))
    return value


def site_log_density(trace, skip=(), scaled=False):
    """Sum of the sample sites' log-densities (masked) but those in ``skip``: unscaled (``poutine.scale``
    and KL weights ignored: what the evaluator reports), or ``scaled`` (what an objective trains)."""
    total = 0.0
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or name in skip or site_is_subsample(site):
            continue
        if scaled:
            total = total + scale_and_mask(site["log_prob"], site["scale"], site["mask"])
        else:
            total = total + scale_and_mask(site["unscaled_log_prob"], mask=site["mask"])
    return total


def _is_point_mass(fn):
    while isinstance(fn, dist.Independent):
        fn = fn.base_dist
    return isinstance(fn, dist.Delta)


def log_importance_weights(model, guide, *args, num_samples=100, max_rows=5_000, particles="repeat",
                           max_plate_nesting=1, **kwargs):
    """Per-example log importance weights ``[num_samples, B]`` of ``model.model`` under ``guide.guide``.

    ``args[0]`` is the batch (length B). Particles are vectorised in one of two ways:
    ``"repeat"`` repeats every tensor argument s times along its first dimension (works for any
    model, recurrent ones included); ``"plate"`` runs model and guide inside
    ``pyro.plate("particles", s)`` left of the model's plates, so the encoder runs once per image
    (needs networks that accept extra leading batch dimensions, as the VAE's do).
    At most ``max_rows`` (particles x batch) rows are evaluated in one pass (5,000: on one CPU thread the
    IWAE paper's VAE scores 100 images at S = 5000 in 7.6 s, against 10.6 s with 20,000-row passes
    whose tensors leave the cache). When the guide samples no
    latent at all, the likelihood is exact: it is computed once and returned as one row, ``[1, B]``.
    """
    if particles not in ("repeat", "plate"):
        raise ValueError(f"particles must be 'repeat' or 'plate', got {particles!r}")
    batch = len(args[0])
    chunk = max(1, min(num_samples, max_rows // max(batch, 1)))
    enum_dim = -(max_plate_nesting + 2) if particles == "plate" else -(max_plate_nesting + 1)
    sizes = [min(chunk, num_samples - i) for i in range(0, num_samples, chunk)]
    if not guide_has_latent(guide, *args, **kwargs):
        sizes = [1]
    out = []
    with torch.no_grad():
        for s in sizes:
            if particles == "repeat":
                run_args, run_kwargs = [_repeat(a, s) for a in args], {k: _repeat(v, s) for k, v in kwargs.items()}
                guide_fn, model_fn = guide.guide, model.model
            else:
                run_args, run_kwargs = args, kwargs
                guide_fn, model_fn = _in_particle_plate(guide.guide, s, max_plate_nesting), \
                    _in_particle_plate(model.model, s, max_plate_nesting)
            guide_tr = poutine.trace(poutine.enum(guide_fn, first_available_dim=enum_dim)).get_trace(
                *run_args, **run_kwargs)
            samples = {n: site for n, site in guide_tr.nodes.items()
                       if site["type"] == "sample" and not site_is_subsample(site)}
            if any(_is_point_mass(site["fn"]) for site in samples.values() if not site["is_observed"]):
                raise ValueError("a point-estimate (Delta) guide has no density: importance sampling needs a "
                                 "guide with a proper q(z | x)")
            skip = {n for n, site in samples.items()
                    if site["is_observed"] or site["infer"].get("enumerate") == "parallel"}
            model_tr = poutine.trace(poutine.replay(model_fn, trace=guide_tr)).get_trace(*run_args, **run_kwargs)
            guide_tr.compute_log_prob()
            model_tr.compute_log_prob()
            lw = torch.as_tensor(site_log_density(model_tr) - site_log_density(guide_tr, skip=skip))
            if particles == "repeat":
                while lw.dim() > 1:  # enumerated values on the left: sum them out exactly
                    lw = lw.logsumexp(0)
                lw = lw.expand(s * batch).reshape(s, batch)
            else:
                while lw.dim() > max_plate_nesting + 1:
                    lw = lw.logsumexp(0)
                lw = lw.reshape(lw.shape[0] if lw.dim() else 1, -1).expand(s, batch)
            out.append(lw)
    return torch.cat(out, 0)


def label_log_joint(model, guide, x, num_classes, num_samples=100, batch_size=100, particles="plate"):
    """log p(x, y) for every label y, ``[N, num_classes]``: each by importance sampling with the guide's
    proposal for the label observed (``model.model(x, y)``, ``guide.guide(x, y)``), the IWAE bound
    log (1/S) sum_s w_s, biased low for finite ``num_samples``, exact when the proposal is the posterior.
    ``particles``: as in :func:`log_importance_weights` (``"plate"``: the encoders run once per image)."""
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        out.append(torch.stack([
            log_importance_weights(model, guide, xb, torch.full((len(xb),), c, dtype=torch.long, device=x.device),
                                   num_samples=num_samples, particles=particles).logsumexp(0) - math.log(num_samples)
            for c in range(num_classes)], -1))
    return torch.cat(out)


def label_log_posterior(model, guide, x, num_classes, num_samples=100, batch_size=100, particles="plate"):
    """The model's own posterior over a label it generates, ``[N, num_classes]``:

        log p(y | x) = log p(x, y) - log sum_y' p(x, y'),    p(x, y) by :func:`label_log_joint`

    what the generative story says the label is, beside what an amortised classifier q(y | x) says.
    An estimate: where the proposal q(. | x, y) fits some labels worse than others, their p(x, y) are
    underestimated by more."""
    log_pxy = label_log_joint(model, guide, x, num_classes, num_samples, batch_size, particles)
    return log_pxy - log_pxy.logsumexp(-1, keepdim=True)


def guide_has_latent(guide, *args, **kwargs):
    """Whether ``guide.guide`` samples any unobserved site (traced once; the RNG is left as it was)."""
    cuda = [a.device for a in args if torch.is_tensor(a) and a.is_cuda][:1]
    with torch.no_grad(), torch.random.fork_rng(devices=cuda):
        trace = poutine.trace(guide.guide).get_trace(*args, **kwargs)
    return any(site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
               for site in trace.nodes.values())


def _in_particle_plate(fn, s, max_plate_nesting):
    def wrapped(*args, **kwargs):
        with pyro.plate("particles", s, dim=-(max_plate_nesting + 1)):
            return fn(*args, **kwargs)
    return wrapped


KHAT_MIN_SAMPLES = 50


def psis_khat(log_weights):
    """Pareto k-hat per example from log weights ``[S, B]`` (ArviZ ``psislw``); NaN if ArviZ is missing."""
    lw = log_weights.detach().double().cpu().numpy().T  # [B, S]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import arviz
            _, k = arviz.psislw(lw)
    except ImportError:  # arviz 1.x moved it to arviz_stats
        try:
            from arviz_stats import psislw
            _, k = psislw(lw)
        except ImportError:
            return np.full(lw.shape[0], np.nan)
    return np.asarray(k, dtype=np.float64).reshape(-1)


def summarize(log_weights):
    """Per-example statistics of log weights ``[S, B]``: IS log p(x), ELBO, ESS."""
    s = log_weights.shape[0]
    log_px = log_weights.logsumexp(0) - math.log(s)
    elbo = log_weights.mean(0)
    ess = (2 * log_weights.logsumexp(0) - (2 * log_weights).logsumexp(0)).exp()
    return {"log_px": log_px, "elbo": elbo, "ess": ess}


def evaluate(model, guide, *data, num_samples=5000, batch_size=100, max_rows=5_000, khat=True, progress=False,
             particles="repeat", **kwargs):
    """Importance-sampled evaluation of a dataset, in batches of ``batch_size`` examples.

    ``data`` are the model's positional arguments (e.g. ``x``, ``y``), each a tensor whose first
    dimension indexes the examples, or ``None``; keyword arguments that are such tensors (e.g.
    ``lengths=``) are batched alike, the others passed as they are. With ``lengths`` the sequences of
    a batch are cut to the longest of them. The model's own input checks run on the first batch.
    Returns per-example numpy arrays ``log_px``, ``elbo``, ``ess`` (and ``khat`` where S is at least
    ``KHAT_MIN_SAMPLES``: the Pareto fit of a tail of fewer weights says nothing), their
    means as ``"log_px_mean"``, ``"elbo_mean"`` (``"nll"`` = -mean log p(x), ``"neg_elbo"``), and
    ``"exact"`` (True when the model has no latent and the likelihood is exact).
    """
    n = len(data[0])
    per_example = {k for k, v in kwargs.items() if torch.is_tensor(v) and v.dim() > 0 and len(v) == n}
    model.eval(), guide.eval()
    stats = {"log_px": [], "elbo": [], "ess": [], "khat": []}
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=f"IS eval (S={num_samples})", leave=False)
    exact = False
    for i in starts:
        args = [a[i:i + batch_size] if torch.is_tensor(a) else a for a in data]
        kw = {k: (v[i:i + batch_size] if k in per_example else v) for k, v in kwargs.items()}
        if torch.is_tensor(kw.get("lengths")):
            args[0] = args[0][:, :int(kw["lengths"].max())]  # cut the padding (evaluation may sync)
        with pyro.validation_enabled(i == 0):
            lw = log_importance_weights(model, guide, *args, num_samples=num_samples, max_rows=max_rows,
                                        particles=particles, **kw)
        exact = lw.shape[0] == 1 and num_samples > 1
        for k, v in summarize(lw).items():
            stats[k].append(v.cpu().numpy())
        if khat and lw.shape[0] >= KHAT_MIN_SAMPLES:
            stats["khat"].append(psis_khat(lw))
    result = {k: np.concatenate(v) for k, v in stats.items() if v}
    result["log_px_mean"] = float(result["log_px"].mean())
    result["elbo_mean"] = float(result["elbo"].mean())
    result["nll"], result["neg_elbo"] = -result["log_px_mean"], -result["elbo_mean"]
    result["exact"] = exact
    return result

"""Per-example refinement of an amortised guide, and the inference-gap decomposition of Cremer, Li &
Duvenaud (2018).

An amortised guide q(z | x) = head(encoder(x)) picks each example's variational parameters with one
network. The best member of the same family for example x is

    q*(z | x) = head.family(lambda*_x),   lambda*_x = argmax_lambda ELBO(x; head.family(lambda)),

found here by gradient ascent on lambda, started at the encoder's output. Then, per example,

    log p(x) - L[q]  =  (log p(x) - L[q*])  +  (L[q*] - L[q])
    inference gap       approximation gap      amortisation gap

with L[.] the ELBO and log p(x) estimated by importance sampling with q* as proposal (a better one
than q). The examples' ELBOs are independent, so all of them are refined together: one optimiser over
a batch of per-example parameters, on the batch's device. For a flow head the per-example parameters
are the base Gaussian's and the context the flows are conditioned on (the flow networks stay as
trained): that is how q* is defined for a flow (``guides.heads.Flow``).

Works for every guide made of an ``encoder`` and a head that follows the contract of
``guides/heads.py`` (``params``/``family``), i.e. every registered VAE guide.
"""
import time

import pyro
import torch
from pyro.infer import Trace_ELBO
from torch import nn

from ppl_models.anneal import kl_scale
from ppl_models.inference.evaluate import evaluate, log_importance_weights


class RefinedGuide(nn.Module):
    """q(z | x_b) = ``head.family(*params)`` with per-example ``params`` (first dimension: the B
    examples it was refined for). Called with those B examples (or with them repeated, as the
    evaluator's ``particles="repeat"`` does), it samples the site ``"z"`` like the VAE's guides."""

    def __init__(self, head, params):
        super().__init__()
        self.head = head
        self.params = list(params)

    def guide(self, x, y=None, beta=1.0):
        batch = len(self.params[0])
        if len(x) % batch:
            raise ValueError(f"this refined guide holds the parameters of {batch} examples, got a batch of {len(x)}")
        reps = len(x) // batch
        params = [p.repeat(reps, *([1] * (p.dim() - 1))) if reps > 1 else p for p in self.params]
        with pyro.plate("data", len(x)):
            with kl_scale(beta):
                pyro.sample("z", self.head.family(*params))


def fixed_noise_elbo(model, guide, x, num_samples=100, seed=0):
    """Per-example ELBO ``[B]`` estimated with ``num_samples`` particles drawn from one fixed noise
    (seeded, the global RNG left as it was): two guides of one family compared on common noise."""
    cuda = [x.device] if x.is_cuda else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        return log_importance_weights(model, guide, x, num_samples=num_samples, particles="plate").mean(0)


def refine(model, guide, x, *, max_steps=5000, lr=1e-2, particles=10, check_every=100, tol=1e-2, patience=3,
           select_samples=100, seed=0):
    """Refine ``guide``'s variational parameters for each example of ``x`` by Adam on the ELBO
    (``particles`` reparameterised samples per step), from the encoder's output. Every ``check_every``
    steps the mean -ELBO per example is checked: after ``patience`` checks in a row without an
    improvement of ``tol`` nats on its best, the learning rate drops tenfold (the noise of the
    stochastic gradient then settles closer to the optimum); after the third such plateau, or
    ``max_steps``, it stops. Per example, the refined parameters replace the amortised ones only where their
    ELBO on one fixed noise (``select_samples`` particles) is at least as high, so refinement never
    lowers that estimate. Returns ``(RefinedGuide, info)`` with ``info``: ``steps``, ``seconds``,
    ``curve`` (mean -ELBO per example every ``check_every`` steps), ``improved`` (share of examples)."""
    t0 = time.time()
    model.eval(), guide.eval()
    with torch.no_grad():
        start = [p.detach() for p in guide.head.params(guide.encoder(x))]
    params = [p.clone().requires_grad_(True) for p in start]
    refined = RefinedGuide(guide.head, params)
    elbo = Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    optimizer = torch.optim.Adam(params, lr=lr)
    curve, window, step, best, stale, drops = [], 0.0, 0, float("inf"), 0, 0
    with pyro.validation_enabled(False):
        for step in range(1, max_steps + 1):
            loss = elbo.differentiable_loss(model.model, refined.guide, x)
            for p, g in zip(params, torch.autograd.grad(loss, params)):
                p.grad = g
            optimizer.step()
            window = window + loss.detach()
            if step % check_every == 0:
                curve.append(float(window) / check_every / len(x))  # one sync per check, not per step
                window = 0.0
                stale = 0 if curve[-1] < best - tol else stale + 1
                best = min(best, curve[-1])
                if stale >= patience:
                    drops, stale = drops + 1, 0
                    if drops == 3:
                        break
                    for group in optimizer.param_groups:
                        group["lr"] /= 10
        with torch.no_grad():
            amortised = fixed_noise_elbo(model, RefinedGuide(guide.head, start), x, select_samples, seed)
            better = fixed_noise_elbo(model, refined, x, select_samples, seed) >= amortised
            final = [torch.where(better.reshape(-1, *([1] * (p.dim() - 1))), p.detach(), s)
                     for p, s in zip(params, start)]
    info = {"steps": step, "seconds": time.time() - t0, "curve": curve, "improved": float(better.float().mean())}
    return RefinedGuide(guide.head, final), info


def inference_gaps(model, guide, x, *, elbo_samples=1000, is_samples=5000, batch_size=None, **refine_kwargs):
    """The decomposition on the examples ``x`` (refined together): per-example means of
    ``elbo_amortised`` L[q], ``elbo_refined`` L[q*], ``log_px`` (IS with q*, S = ``is_samples``),
    ``log_px_amortised`` (IS with q, for comparison), ``approximation_gap``, ``amortisation_gap``,
    ``inference_gap``, and the refinement's ``steps``, ``refine_seconds``, ``improved``."""
    bs = batch_size or max(1, min(len(x), 20_000 // max(elbo_samples, 1)))
    amortised = evaluate(model, guide, x, num_samples=elbo_samples, batch_size=bs, khat=False, particles="plate")
    refined, info = refine(model, guide, x, **refine_kwargs)
    whole = len(x)  # a refined guide scores the batch it was refined for, in one piece
    opt = evaluate(model, refined, x, num_samples=elbo_samples, batch_size=whole, khat=False, particles="plate")
    px = evaluate(model, refined, x, num_samples=is_samples, batch_size=whole, khat=False, particles="plate")
    px_q = evaluate(model, guide, x, num_samples=is_samples, batch_size=max(1, 20_000 // is_samples), khat=False,
                    particles="plate")
    log_px = px["log_px_mean"]  # q* as the proposal; the amortised proposal's figure is kept beside it
    return {"images": len(x), "elbo_amortised": amortised["elbo_mean"], "elbo_refined": opt["elbo_mean"],
            "log_px": log_px, "log_px_refined_proposal": px["log_px_mean"],
            "log_px_amortised_proposal": px_q["log_px_mean"],
            "approximation_gap": log_px - opt["elbo_mean"], "amortisation_gap": opt["elbo_mean"] - amortised["elbo_mean"],
            "inference_gap": log_px - amortised["elbo_mean"], "steps": info["steps"],
            "refine_seconds": info["seconds"], "improved": info["improved"], "is_samples": is_samples,
            "elbo_samples": elbo_samples}

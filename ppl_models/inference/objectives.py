"""Training objectives beyond Pyro's ELBOs, written once as losses over Pyro traces.

For an example x with K particles z_k ~ q(z | x), reparameterised, the log weights are

    log w_k = log p(x, z_k) - log q(z_k | x)                           (per example, ``[K, B]``)

and the objectives, each summed over the examples of a batch (as Pyro's ELBOs are):

    iwae   L_K     = log (1/K) sum_k w_k                      Burda, Grosse & Salakhutdinov (2016)
    renyi  L_alpha = 1/(1 - alpha) log (1/K) sum_k w_k^(1 - alpha)       Li & Turner (2016)
                     (alpha = 0: the IWAE bound; alpha -> 1: the ELBO; alpha < 0: above log p(x) as K grows)

and two gradient estimators of the IWAE bound that drop the score term of q from the guide's
gradient (its expectation is zero; its variance is what makes the guide's gradient worse as K grows,
Rainforth et al. 2018):

    stl    "sticking the landing" (Roeder, Wu & Duvenaud 2017): log q evaluated with the guide's
           parameters held fixed (its value, not its gradient), so only the path z(phi) carries the
           guide's gradient; the model's gradient is the IWAE one. At the exact posterior every w_k is
           constant and the guide's gradient is exactly zero.
    dreg   doubly reparameterised (Tucker, Lawson, Gu & Maddison 2019): the model's gradient as IWAE,
           sum_k w~_k grad_theta log w_k; the guide's sum_k w~_k^2 d log w_k / d z_k * d z_k / d phi
           (with w~ the normalised weights and log q's parameters held fixed): unbiased for the IWAE
           bound's gradient, and its signal-to-noise ratio grows with K.

Pyro has the first two: its ``RenyiELBO`` sums each particle's log densities over the dimensions of
the dependent plates only (the data plate's stays), so it is the per-example bound above, alpha = 0
its IWAE bound; ``--objective iwae`` and ``renyi`` train with it (``tests/test_objectives.py`` checks
its losses and gradients against :class:`ImportanceWeighted`, which computes the same bounds here).
Pyro has neither STL nor DReG for the IWAE bound: they are :class:`ImportanceWeighted`'s estimators.

The K particles are one vectorised pass: model and guide run inside ``pyro.plate("particles", K)``
left of their own plates (their networks take extra leading batch dimensions). These losses apply
to models whose latent sites are all continuous and reparameterised and are not enumerated (the VAE,
the IWAE paper's two-layer model, the CVAE, the sequence VAE); an enumerated or recurrent story uses
Pyro's ELBOs.
"""
import math
import warnings

import pyro
import torch
from pyro import poutine
from pyro.infer import JitTraceMeanField_ELBO
from pyro.poutine.util import site_is_subsample
from torch import nn

from ppl_models.inference.evaluate import site_log_density

OBJECTIVES = ("elbo", "meanfield", "iwae", "renyi", "stl", "dreg")
ESTIMATORS = ("iwae", "stl", "dreg")


def _particle_plate(fn, k, max_plate_nesting):
    def wrapped(*args, **kwargs):
        with pyro.plate("particles", k, dim=-(max_plate_nesting + 1)):
            return fn(*args, **kwargs)
    return wrapped


class _Method(nn.Module):
    """``module.<method>`` as a module's forward, for ``torch.func.functional_call``."""

    def __init__(self, method):
        super().__init__()
        self.owner, self.name = method.__self__, method.__name__

    def forward(self, *args, **kwargs):
        return getattr(self.owner, self.name)(*args, **kwargs)


def held_fixed(method):
    """``method`` (a bound method of an ``nn.Module``, e.g. ``guide.guide``) run with the module's
    parameters detached: the values it computes carry no gradient to them (other inputs keep theirs)."""
    wrapper = _Method(method)
    params = {f"owner.{n}": p.detach() for n, p in method.__self__.named_parameters()}

    def run(*args, **kwargs):
        with warnings.catch_warnings():  # pyro.module notes the detached parameters are not registered
            warnings.filterwarnings("ignore", message=".*not registered in the param store")
            return torch.func.functional_call(wrapper, params, args, kwargs, strict=False)
    return run


def log_weights(model, guide, *args, num_particles=1, max_plate_nesting=1, fixed_guide=False, **kwargs):
    """Per-example log weights ``[K, B]`` with their gradients: ``model`` and ``guide`` are Pyro
    programs (e.g. ``vae.model``, ``q.guide``), the particles one vectorised plate. With
    ``fixed_guide`` the log density of q is that of the guide with its parameters held fixed (at the
    same samples z, which keep their path gradient): the weights of STL and DReG."""
    guide_fn = _particle_plate(guide, num_particles, max_plate_nesting)
    model_fn = _particle_plate(model, num_particles, max_plate_nesting)
    guide_tr = poutine.trace(guide_fn).get_trace(*args, **kwargs)
    for name, site in guide_tr.nodes.items():
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site):
            if site["infer"].get("enumerate") or not site["fn"].has_rsample:
                raise ValueError(f"site {name!r} is discrete or not reparameterised: the multi-particle "
                                 "objectives need reparameterised latents; use --objective elbo")
    model_tr = poutine.trace(poutine.replay(model_fn, trace=guide_tr)).get_trace(*args, **kwargs)
    model_tr.compute_log_prob()
    observed = {n for n, s in guide_tr.nodes.items() if s["type"] == "sample" and s["is_observed"]}
    if fixed_guide:
        latents = {n: s["value"] for n, s in guide_tr.nodes.items()
                   if s["type"] == "sample" and n not in observed and not site_is_subsample(s)}
        fixed = _particle_plate(held_fixed(guide), num_particles, max_plate_nesting)
        guide_tr = poutine.trace(poutine.condition(fixed, data=latents)).get_trace(*args, **kwargs)
    guide_tr.compute_log_prob()
    lw = site_log_density(model_tr, scaled=True) - site_log_density(guide_tr, skip=observed, scaled=True)
    lw = torch.as_tensor(lw)
    return lw.reshape(num_particles, -1) if lw.dim() else lw.reshape(1, 1).expand(num_particles, 1)


def _modules(fn):
    """The ``nn.Module`` a Pyro program is a method of (``None`` for a plain function)."""
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


def _accumulate(params, grads):
    for p, g in zip(params, grads):
        if g is not None:
            p.grad = g if p.grad is None else p.grad + g


class ImportanceWeighted:
    """The IWAE bound with K particles and the ``iwae``, ``stl`` or ``dreg`` gradient estimator, or the
    Rényi bound of order ``alpha`` (``alpha`` given, with the plain reparameterised gradient). The
    interface of a Pyro ELBO: ``loss`` and ``loss_and_grads(model, guide, *args, **kwargs)`` return
    the negative bound summed over the batch (a float); ``loss_and_grads`` fills the parameters'
    ``.grad``."""

    def __init__(self, num_particles=5, estimator="iwae", alpha=None, max_plate_nesting=1):
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")
        if num_particles < 1:
            raise ValueError(f"num_particles must be >= 1, got {num_particles}")
        if alpha is not None and estimator != "iwae":
            raise ValueError("the Rényi bound takes the plain gradient (estimator 'iwae')")
        self.num_particles, self.estimator, self.alpha = num_particles, estimator, alpha
        self.max_plate_nesting = max_plate_nesting

    def bound(self, lw):
        """The per-example bound ``[B]`` from log weights ``[K, B]``."""
        log_k = math.log(lw.shape[0])
        if self.alpha is None or self.alpha == 0:
            return lw.logsumexp(0) - log_k
        if self.alpha == 1:
            return lw.mean(0)
        return ((1 - self.alpha) * lw).logsumexp(0).sub(log_k).div(1 - self.alpha)

    def _weights(self, model, guide, args, kwargs, fixed_guide=False):
        return log_weights(model, guide, *args, num_particles=self.num_particles,
                           max_plate_nesting=self.max_plate_nesting, fixed_guide=fixed_guide, **kwargs)

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            return -self.bound(self._weights(model, guide, args, kwargs)).sum().item()

    def loss_and_grads(self, model, guide, *args, **kwargs):
        if self.estimator == "iwae":
            loss = -self.bound(self._weights(model, guide, args, kwargs)).sum()
            loss.backward()
            return loss.item()
        lw = self._weights(model, guide, args, kwargs, fixed_guide=True)
        if self.estimator == "stl":
            loss = -self.bound(lw).sum()
            loss.backward()
            return loss.item()
        # dreg: the model's parameters take sum_k w~_k grad log w_k, the guide's the squared-weight path term
        m, g = _modules(model), _modules(guide)
        if m is None or g is None:
            raise ValueError("dreg needs the model and the guide as methods of nn.Modules (model.model, q.guide)")
        guide_params = [p for p in g.parameters() if p.requires_grad]
        ids = {id(p) for p in guide_params}
        model_params = [p for p in m.parameters() if p.requires_grad and id(p) not in ids]
        w = torch.softmax(lw.detach(), 0)
        model_grads = torch.autograd.grad(-(w * lw).sum(), model_params, retain_graph=True, allow_unused=True)
        guide_grads = torch.autograd.grad(-(w.pow(2) * lw).sum(), guide_params, allow_unused=True)
        _accumulate(model_params, model_grads)
        _accumulate(guide_params, guide_grads)
        return -self.bound(lw.detach()).sum().item()


JIT_OBJECTIVES = ("elbo", "meanfield")


class CompiledMeanField(JitTraceMeanField_ELBO):
    """Pyro's ``JitTraceMeanField_ELBO``, compiled once. Pyro 1.9's looks for its compiled loss under
    ``_loss_and_surrogate_loss`` but keeps it as ``_differentiable_loss``, so it traces and compiles
    the loss again on every step (about 20 ms a step for the small VAE, 9x the eager step); this one
    marks the compiled loss as built after the first call, and otherwise is Pyro's."""

    def differentiable_loss(self, model, guide, *args, **kwargs):
        loss = super().differentiable_loss(model, guide, *args, **kwargs)
        self._loss_and_surrogate_loss = self._differentiable_loss  # the name Pyro's check reads
        return loss


def make_objective(name, particles=1, alpha=0.5, max_plate_nesting=1, jit=False):
    """The loss for ``--objective name`` with ``particles`` = K, vectorised: ``elbo`` (Pyro's
    ``Trace_ELBO``), ``meanfield`` (``TraceMeanField_ELBO``: the analytic KL where it exists), ``iwae``
    and ``renyi`` of order ``alpha`` (Pyro's ``RenyiELBO``), ``stl`` and ``dreg``
    (:class:`ImportanceWeighted`). ``jit``: Pyro's compiled forms of the first two
    (``JitTrace_ELBO``, ``JitTraceMeanField_ELBO``; the same loss, traced once per argument shape);
    Pyro compiles no other."""
    from pyro.infer import JitTrace_ELBO, RenyiELBO, Trace_ELBO, TraceMeanField_ELBO

    if jit and name not in JIT_OBJECTIVES:
        raise ValueError(f"--jit: Pyro compiles {' and '.join(JIT_OBJECTIVES)} only, not --objective {name}")
    vectorised = {"num_particles": particles, "vectorize_particles": particles > 1,
                  "max_plate_nesting": max_plate_nesting}
    if name == "elbo":
        return (JitTrace_ELBO if jit else Trace_ELBO)(**vectorised)
    if name == "meanfield":
        return (CompiledMeanField if jit else TraceMeanField_ELBO)(**vectorised)
    if name in ("iwae", "renyi"):
        if name == "renyi" and alpha == 1:
            raise ValueError("--renyi-alpha 1 is the ELBO: use --objective elbo")
        return RenyiELBO(alpha=0.0 if name == "iwae" else alpha, num_particles=particles, vectorize_particles=True,
                         max_plate_nesting=max_plate_nesting)
    if name in ("stl", "dreg"):
        return ImportanceWeighted(particles, name, max_plate_nesting=max_plate_nesting)
    raise ValueError(f"unknown objective {name!r}; choose one of {OBJECTIVES}")

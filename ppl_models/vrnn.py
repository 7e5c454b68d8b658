"""The variational recurrent neural network of Chung, Kastner, Dinh, Goel, Courville & Bengio (2015).

Generative story for each sequence x_1..x_T in the batch::

    z_t ~ p(z_t | h_{t-1})      = N(mu_0(h_{t-1}), sigma_0(h_{t-1}))    prior "learned"  (VRNN)
                                = N(0, I)                                 prior "standard" (VRNN-I)
                                  (no z_t at all)                         prior "none"     (RNN)
    x_t ~ p(x_t | z_t, h_{t-1}) = emission(phi_z(z_t), h_{t-1})           site "x_{t}" (rows) or
                                                                          "dxy_{t}" + "pen_{t}" (strokes)
    h_t = LSTM(h_{t-1}, [phi_x(x_t), phi_z(z_t)])                         deterministic recurrence
    (h_0, c_0) = 0

Dependencies (the latent is Markov through h)::

    h_0 ------> h_1 ------> h_2 ---> ...
     |  \\      ^ |  \\      ^
     |   v     /  |   v     /
     |   z_1 -+   |   z_2 -+
     |   |    |   |   |    |
     v   v    |   v   v    |
      x_1 ----+    x_2 ----+

With ``n_classes`` > 0 this is the conditional VRNN: the digit label y (one-hot) is written into
every part of the story, so that nothing the model draws can forget it::

    (h_0, c_0) = tanh(W_0 y)                           the state starts from the label
    z_t ~ N(mu_0(h_{t-1}, y), sigma_0(h_{t-1}, y))       the prior sees it
    x_t ~ emission(phi_z(z_t), h_{t-1}, y)               the emission sees it
    h_t = LSTM(h_{t-1}, [phi_x(x_t), phi_z(z_t), y])     the recurrence is fed it at every step

(and the guide sees it). Fed only to the prior and the emission, with h_0 = 0, the label is
ignored: from the first inked row on, h_{t-1} says which digit is being drawn and the networks learn
to read the digit from h, so a sample from an empty start is whatever digit its first rows suggest.

Emissions: ``"bernoulli"`` for MNIST rows (28 steps of 28 pixels) and
``"strokes"`` for pen strokes, a Gaussian over the pen offset (dx, dy) and Bernoulli pen flags
(end of stroke, end of digit). Variable lengths are handled by masking the steps past each
sequence's end (``lengths``). ``beta`` weights the latent sites in model and guide alike
(KL annealing through ``kl_scale`` of ``ppl_models/anneal.py``, a weight on the z_t sites' log densities).
Guides are in ``guides/vrnn.py``.
"""
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn
from torch.nn.functional import one_hot, softplus

from ppl_models.anneal import kl_scale
from ppl_models.checks import check_sequences, validating
from ppl_models.nets import mlp

PRIORS = ("learned", "standard", "none")
EMISSIONS = {"bernoulli": 28, "strokes": 4}  # emission -> x_dim


def step_mask(lengths, t):
    """``[B]`` boolean: which sequences are still running at step t (``True``: all, when ``lengths``
    is None)."""
    return True if lengths is None else lengths > t


class VRNN(nn.Module):
    def __init__(self, emission="bernoulli", prior="learned", z_dim=16, hidden=128, n_classes=0):
        super().__init__()
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; choose one of {PRIORS}")
        if emission not in EMISSIONS:
            raise ValueError(f"unknown emission {emission!r}; choose one of {sorted(EMISSIONS)}")
        self.emission, self.prior_kind, self.z_dim, self.hidden, self.n_classes = \
            emission, prior, z_dim, hidden, n_classes
        self.x_dim = EMISSIONS[emission]
        self.has_z = prior != "none"
        self.phi_x = mlp((self.x_dim, hidden), out_activation=nn.ReLU)
        self.phi_z = mlp((z_dim, hidden), out_activation=nn.ReLU) if self.has_z else None
        self.prior_net = mlp((hidden + n_classes, hidden, 2 * z_dim)) if prior == "learned" else None
        emit_out = self.x_dim if emission == "bernoulli" else 2 * 2 + 2  # (loc, scale) of dx, dy; 2 flags
        self.emit_net = mlp((hidden * (1 + self.has_z) + n_classes, hidden, emit_out))
        self.init_net = nn.Linear(n_classes, 2 * hidden) if n_classes else None
        self.rnn = nn.LSTMCell(hidden * (1 + self.has_z) + n_classes, hidden)

    # --- the pieces of one step -------------------------------------------------------------------
    def condition(self, y, batch, like):
        if self.n_classes == 0:
            return like.new_zeros(batch, 0)
        if y is None or y.shape != (batch,) or (validating() and (y.min() < 0 or y.max() >= self.n_classes)):
            raise ValueError(f"this VRNN is conditioned on the label: pass labels y [{batch}] in 0..9")
        return one_hot(y, self.n_classes).to(like.dtype)

    def initial_state(self, label):
        """(h_0, c_0): zeros, or tanh(W_0 y) for the conditional VRNN (``label``: ``[batch, n_classes]``)."""
        if self.n_classes == 0:
            zeros = label.new_zeros(label.shape[0], self.hidden)
            return zeros, zeros
        h, c = torch.tanh(self.init_net(label)).chunk(2, -1)
        return h.contiguous(), c.contiguous()

    def prior(self, h, label):
        """p(z_t | h_{t-1}): the learned prior network, or N(0, I)."""
        if self.prior_kind == "standard":
            return dist.Normal(h.new_zeros(h.shape[0], self.z_dim), 1.0).to_event(1)
        loc, scale = self.prior_net(torch.cat([h, label], -1)).chunk(2, -1)
        return dist.Normal(loc, softplus(scale) + 1e-4).to_event(1)

    def features_z(self, z, like):
        return self.phi_z(z) if self.has_z else like.new_zeros(like.shape[0], 0)

    def emit(self, h, fz, label):
        """The parameters of p(x_t | z_t, h_{t-1})."""
        return self.emit_net(torch.cat([fz, h, label], -1))

    def recur(self, fx_t, fz, label, state):
        """h_t = LSTM(h_{t-1}, [phi_x(x_t), phi_z(z_t), y]), given the features fx_t = phi_x(x_t)."""
        return self.rnn(torch.cat([fx_t, fz, label], -1), state)

    def observe(self, t, params, x_t):
        """Score x_t: Bernoulli pixels, or Gaussian offsets plus Bernoulli pen flags."""
        if self.emission == "bernoulli":
            pyro.sample(f"x_{t}", dist.Bernoulli(logits=params, validate_args=False).to_event(1), obs=x_t)
        else:
            loc, scale, flags = params[:, :2], softplus(params[:, 2:4]) + 1e-3, params[:, 4:]
            pyro.sample(f"dxy_{t}", dist.Normal(loc, scale).to_event(1), obs=x_t[:, :2])
            pyro.sample(f"pen_{t}", dist.Bernoulli(logits=flags, validate_args=False).to_event(1),
                        obs=x_t[:, 2:])

    # --- the story ------------------------------------------------------------------------------
    def model(self, x, y=None, lengths=None, beta=1.0):
        """``x``: ``[batch, T, x_dim]``; ``y``: ``[batch]`` labels (conditional form);
        ``lengths``: ``[batch]`` valid steps (``None``: all T)."""
        check_sequences(x, self.x_dim, lengths)
        pyro.module("vrnn", self)
        batch, steps = x.shape[:2]
        label = self.condition(y, batch, x)
        state = self.initial_state(label)
        fx = self.phi_x(x)  # phi_x(x_t) of every step at once, [batch, T, hidden]
        with pyro.plate("data", batch):
            for t in pyro.markov(range(steps)):
                h = state[0]
                with poutine.mask(mask=step_mask(lengths, t)):
                    if self.has_z:
                        with kl_scale(beta):
                            z = pyro.sample(f"z_{t}", self.prior(h, label))
                    fz = self.features_z(z if self.has_z else None, h)
                    self.observe(t, self.emit(h, fz, label), x[:, t])
                state = self.recur(fx[:, t], fz, label, state)

    # --- sampling ---------------------------------------------------------------------------------
    def generate(self, n, steps, y=None, device="cpu"):
        """Sample n sequences of ``steps`` steps from the model: ``[n, steps, x_dim]`` (pixel
        probabilities for rows; (dx, dy, eos, eod) with sampled flags for strokes)."""
        like = torch.zeros(n, 1, device=device)
        label = self.condition(y, n, like)
        state = self.initial_state(label)
        out = []
        with torch.no_grad():
            for _ in range(steps):
                h = state[0]
                fz = self.features_z(self.prior(h, label).sample() if self.has_z else None, h)
                params = self.emit(h, fz, label)
                if self.emission == "bernoulli":
                    mean = torch.sigmoid(params)
                    x_t = torch.bernoulli(mean)
                    out.append(mean)
                else:
                    x_t = torch.cat([dist.Normal(params[:, :2], softplus(params[:, 2:4]) + 1e-3).sample(),
                                     torch.bernoulli(torch.sigmoid(params[:, 4:]))], -1)
                    out.append(x_t)
                state = self.recur(self.phi_x(x_t), fz, label, state)
        return torch.stack(out, 1)

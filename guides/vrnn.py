"""Guides for ``ppl_models.vrnn.VRNN``.

    filtering   q(z_t | x_t, h_{t-1}) = N(phi_enc(phi_x(x_t), h_{t-1})): the paper's encoder, which
                sees the present step and the past (through the model's state h_{t-1})
    smoothing   q(z_t | x_{t:T}, h_{t-1}) = N(phi_enc(b_t, h_{t-1})) with b_t a backward LSTM over
                phi_x(x_T), ..., phi_x(x_t): the present, the past and the future

Both recompute h_{t-1} with the model's own recurrence from the sampled z's (they run the model's
networks without sampling from the model). For the RNN (prior "none") there is no latent and the
guide is empty. Sites: ``"z_{t}"`` ``[batch, z_dim]`` for every step.
``make_guide(name, vrnn, hidden=None)`` builds one (``hidden``: the guide's units, by default the
model's); the guide contract is in ``guides/__init__.py``.
"""
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn
from torch.nn.functional import softplus

from guides import build
from ppl_models.anneal import kl_scale
from ppl_models.checks import check_sequences
from ppl_models.nets import mlp
from ppl_models.vrnn import step_mask


def flip_valid(seq, lengths):
    """Reverse each sequence ``[B, T, D]`` within its length (padding stays at the end)."""
    if lengths is None:
        return seq.flip(1)
    t = torch.arange(seq.shape[1], device=seq.device)
    idx = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)        # [B, T]
    return seq.gather(1, idx[..., None].expand_as(seq))


class VRNNGuide(nn.Module):
    def __init__(self, vrnn, hidden=None, smoothing=False):
        super().__init__()
        self._vrnn = [vrnn]  # the model's networks, used but not owned
        hidden = hidden or vrnn.hidden
        self.smoothing = smoothing
        self.backward_rnn = nn.LSTM(vrnn.hidden, hidden, batch_first=True) if smoothing else None
        now_dim = hidden if smoothing else vrnn.hidden  # b_t, or the model's features phi_x(x_t)
        self.enc = mlp((now_dim + vrnn.hidden + vrnn.n_classes, hidden, 2 * vrnn.z_dim))

    def guide(self, x, y=None, lengths=None, beta=1.0):
        vrnn = self._vrnn[0]
        check_sequences(x, vrnn.x_dim, lengths)
        pyro.module("vrnn_guide", self)
        pyro.module("vrnn", vrnn)
        batch, steps = x.shape[:2]
        label = vrnn.condition(y, batch, x)
        fx = vrnn.phi_x(x)  # the model's features of every step at once
        if self.smoothing:  # b_t summarises x_t..x_T: one vectorised pass, backwards in time
            b = flip_valid(self.backward_rnn(flip_valid(fx, lengths))[0], lengths)
        state = vrnn.initial_state(label)
        with pyro.plate("data", batch):
            for t in pyro.markov(range(steps)):
                h = state[0]
                now = b[:, t] if self.smoothing else fx[:, t]
                loc, scale = self.enc(torch.cat([now, h, label], -1)).chunk(2, -1)
                with poutine.mask(mask=step_mask(lengths, t)), kl_scale(beta):
                    z = pyro.sample(f"z_{t}", dist.Normal(loc, softplus(scale) + 1e-4).to_event(1))
                state = vrnn.recur(fx[:, t], vrnn.phi_z(z), label, state)


class EmptyGuide(nn.Module):
    """The RNN has no latent variable: nothing to guess."""

    def guide(self, x, y=None, lengths=None, beta=1.0):
        pass


def filtering(vrnn, hidden=None):
    return VRNNGuide(vrnn, hidden) if vrnn.has_z else EmptyGuide()


def smoothing(vrnn, hidden=None):
    return VRNNGuide(vrnn, hidden, smoothing=True) if vrnn.has_z else EmptyGuide()


GUIDES = {"filtering": filtering, "smoothing": smoothing}


def make_guide(name, vrnn, hidden=None, **options):
    return build(GUIDES, name, vrnn, hidden, **options)

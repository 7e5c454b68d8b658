"""Guides for ``ppl_models.seqvae.SeqVAE``.

    lstm    two LSTM layers over the sequence; the last state gives q(z | X) = N(loc, scale)
    bilstm  the same layers run in both directions (the end of the drawing is as near as its start)

Site: ``"z"`` ``[batch, z_dim]``. ``make_guide(name, seqvae, hidden=None)`` builds one (``hidden``:
the LSTM's units, by default the decoder's); the guide contract is in ``guides/__init__.py``.
"""
import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from guides import build
from ppl_models.seqvae import CENTRE


class LSTMGuide(nn.Module):
    def __init__(self, z_dim=64, hidden=512, layers=2, bidirectional=False):
        super().__init__()
        self.lstm = nn.LSTM(2, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), 2 * z_dim)

    def params(self, x):
        _, (h, _) = self.lstm((x - CENTRE) / CENTRE)  # positions scaled to about [-1, 1]
        last = torch.cat([h[-2], h[-1]], -1) if self.lstm.bidirectional else h[-1]
        loc, scale = self.head(last).chunk(2, -1)
        return loc, softplus(scale) + 1e-4

    def guide(self, x):
        pyro.module("seqvae_guide", self)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.params(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def encode(self, x):
        return self.params(x)[0]


def lstm(seqvae, hidden=None):
    return LSTMGuide(seqvae.z_dim, hidden or seqvae.hidden)


def bilstm(seqvae, hidden=None):
    return LSTMGuide(seqvae.z_dim, hidden or seqvae.hidden, bidirectional=True)


GUIDES = {"lstm": lstm, "bilstm": bilstm}


def make_guide(name, seqvae, hidden=None, **options):
    return build(GUIDES, name, seqvae, hidden, **options)

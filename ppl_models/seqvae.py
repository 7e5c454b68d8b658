"""A sequence VAE for pen-stroke digits: one latent code for the whole drawing.

Generative story for each digit, a fixed-length sequence of T absolute pen positions X_t = (x_t, y_t)
(``ppl_models.data.strokes.resample``, T = 60, pixel units)::

    z   ~ N(0, I)                                       site "z", shape [z_dim]
    h_t = LSTM(h_{t-1}, z),  h_0 = tanh(W z)            the decoder, fed z at every step
    X_t ~ N(mu(h_t), diag(sigma^2))   for t = 1..T      site "X", shape [T, 2] (one event)

``sigma`` is a learned parameter per coordinate: the Gaussian form of the squared error the
deterministic version trains with (-log N(X | mu, sigma) = |X - mu|^2 / (2 sigma^2) + const).
The guide (``guides/seqvae.py``) reads the whole sequence with two LSTM layers.
"""
import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_models.checks import check_sequences

CENTRE = 13.5  # the decoder predicts positions around the centre of the 28 x 28 frame


class SeqVAE(nn.Module):
    def __init__(self, z_dim=64, hidden=512, steps=60):
        super().__init__()
        self.z_dim, self.hidden, self.steps = z_dim, hidden, steps
        self.init = nn.Linear(z_dim, 2 * hidden)
        self.lstm = nn.LSTM(z_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 2)
        self.log_sigma = nn.Parameter(torch.zeros(2))

    def prior(self, like):
        """p(z) = N(0, I) over ``[z_dim]``, on ``like``'s device and dtype."""
        return dist.Normal(like.new_zeros(self.z_dim), 1.0).to_event(1)

    def decode(self, z):
        """Mean positions ``[..., T, 2]`` for codes ``z`` ``[..., z_dim]`` (any leading dimensions)."""
        lead = z.shape[:-1]
        z = z.reshape(-1, self.z_dim)
        h0, c0 = torch.tanh(self.init(z)).chunk(2, -1)
        h, _ = self.lstm(z[:, None, :].expand(-1, self.steps, -1).contiguous(),
                         (h0[None].contiguous(), c0[None].contiguous()))
        return (self.out(h) + CENTRE).reshape(*lead, self.steps, 2)

    def model(self, x):
        """``x``: ``[batch, T, 2]`` absolute pen positions."""
        check_sequences(x, 2, steps=self.steps)
        pyro.module("seqvae", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(x))
            pyro.sample("X", dist.Normal(self.decode(z), self.log_sigma.exp()).to_event(2), obs=x)

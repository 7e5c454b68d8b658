"""KL weighting (beta-VAE, KL annealing) as a Pyro effect, used in a model and its guide alike."""
from pyro.poutine.messenger import Messenger


class KLWeight(Messenger):
    """Multiply the log-densities of the sample sites inside the block by ``beta >= 0``.

    Pyro's ``poutine.scale`` takes only a positive scale; a zero weight must still be a *scale*
    (not a mask), so that the evaluator, which scores every site unscaled, sees the latent terms."""

    def __init__(self, beta):
        super().__init__()
        self.beta = beta

    def _process_message(self, msg):
        msg["scale"] = self.beta * msg["scale"]


def kl_scale(beta):
    """Scale the log-densities of the latent sites inside the block by ``beta``.

    Used around the latent ``pyro.sample`` in the model *and* in the guide, so that the ELBO's
    ``E_q[log p(z) - log q(z|x)]`` (the KL term) is weighted by ``beta``; ``beta = 0`` leaves only
    the reconstruction term. ``ppl_models.inference.evaluate`` ignores this weight: it scores the model.
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    return KLWeight(float(beta))

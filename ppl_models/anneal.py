"""KL weighting (beta-VAE, KL annealing) as a Pyro effect, used in a model and its guide alike."""
from pyro import poutine


def kl_scale(beta):
    """Scale the log-densities of the latent sites inside the block by ``beta``.

    Used around the latent ``pyro.sample`` in the model *and* in the guide, so that the ELBO's
    ``E_q[log p(z) - log q(z|x)]`` (the KL term) is weighted by ``beta``. ``beta = 0`` masks both
    terms out (``poutine.scale`` needs a positive scale), leaving only the reconstruction term.
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    return poutine.scale(scale=float(beta)) if beta > 0 else poutine.mask(mask=False)

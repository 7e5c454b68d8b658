"""ppl-models: variational generative models as readable Pyro model/guide pairs.

The stories, one generative model each (the guides of each are in ``guides/<same name>.py``)::

    vae.py              VAE (Kingma & Welling 2014), MLP or conv, Bernoulli or Gaussian; the autoencoder
    vae2.py             the VAE with two stochastic layers of the IWAE paper (Burda et al. 2016)
    cvae.py             conditional VAE with a conditional prior (Sohn et al. 2015)
    ssvae.py            semi-supervised M2 (Kingma et al. 2014), the label enumerated
    adgm.py             the auxiliary deep generative models ADGM and SDGM (Maaløe et al. 2016)
    vrnn.py             VRNN (Chung et al. 2015), VRNN-I, RNN, under pyro.markov
    seqvae.py           sequence VAE on pen strokes
    draw.py             DRAW (Gregor et al. 2015)
    linear_gaussian.py  the linear-Gaussian model, where log p(x) and the posterior are exact

The parts they are built from: ``nets.py`` (networks), ``priors.py`` (p(z): N(0, I), a mixture, the
VampPrior, a flow), ``anneal.py`` (KL weighting), ``checks.py`` (input checks). Everything else sits in
a folder named by its role:

    data/        MNIST and Fashion-MNIST, image folders and CelebA, pen strokes, Morpho-MNIST measures
    inference/   the SVI loop, the objectives (IWAE, Rényi, STL, DReG), importance sampling (ESS, k-hat),
                 refinement and gaps, data parallelism
    runs/        flags, run folders, results.json, rebuilding a run, compare, plots, benchmarks, the
                 latent-space explorer page
    judge/       the project's digit classifier, label fidelity

Stories and guides import torch, Pyro and the parts above only, never a role folder
(``tests/test_layout.py`` holds that boundary).
"""

"""Variational families, one file per model: ``guides/<model>.py`` holds the guides of
``ppl_models/<model>.py``.

The contract of a guide (what a guide author writes, and what the tests check for every one):

- A guide is a ``torch.nn.Module`` with a ``guide(...)`` method taking exactly the arguments of the
  model's ``model(...)`` method and sampling the model's latent sites (same names, same shapes,
  same supports) inside the same ``pyro.plate("data")``; observed sites it leaves to the model.
- It registers its parameters with ``pyro.module`` (the training loop optimises the modules'
  parameters; the name only has to be unique).
- A discrete latent that is summed out is sampled with ``infer={"enumerate": "parallel"}``.
- Where the model's figures need codes of data (the VAE family), it has ``encode(x)``: one
  representative code per example, shape ``[batch, z_dim]``.
- It must have a density: the evaluator importance-samples with it. (The one exception is a
  point-mass guide, ``Delta``, which trains an autoencoder and is refused by the evaluator.)

Every file exposes ``GUIDES: dict[str, builder]``, each builder called the same way,
``builder(model, hidden=None, **options)``: the model it approximates the posterior of (its sizes
come from there), the guide's own network sizes (``None``: the model's), and options particular to
a family. ``make_guide(name, model, ...)`` looks a name up with a clear error.
A new guide is a function added to ``GUIDES``; the tests trace, train, evaluate and encode with it.
"""


def build(registry, name, model, hidden=None, **options):
    """``registry[name](model, hidden, **options)``, or a clear error naming the registered guides."""
    if name not in registry:
        raise ValueError(f"unknown guide {name!r}; choose one of {sorted(registry)}")
    return registry[name](model, hidden, **options)

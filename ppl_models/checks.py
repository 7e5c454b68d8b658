"""Input checks the stories and guides share: one clear ``ValueError`` for data a model cannot score.

Shapes are checked on every call (they cost nothing). Values (NaN, ranges) are checked only while
Pyro's validation is on (:func:`validating`): such a check reads a device tensor on the host, which on
a GPU waits for the device. The training loop turns validation on for its first step and the
evaluator for its first batch; ``pyro.validation_enabled()`` turns it on anywhere.
"""
import torch
from pyro.infer.util import is_validation_enabled


def validating():
    """True while Pyro's validation is on (value checks run only then)."""
    return is_validation_enabled()


def _flat(n_pixels):
    return "flattened 28x28" if n_pixels == 784 else "flattened channels x height x width"


def check_images(x, n_pixels=784, values=None):
    """Raise a clear error for images a model cannot score: not a ``[batch, n_pixels]`` tensor, and
    (when ``values``, by default while :func:`validating`) NaN or values outside [0, 1]."""
    if not torch.is_tensor(x):
        raise ValueError(f"images must be a tensor of shape [batch, {n_pixels}] ({_flat(n_pixels)}), "
                         f"got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != n_pixels:
        raise ValueError(f"images must have shape [batch, {n_pixels}] ({_flat(n_pixels)}), got {list(x.shape)}")
    if not (validating() if values is None else values):
        return x
    if torch.isnan(x).any():
        raise ValueError("images contain NaN pixels")
    if x.min() < 0 or x.max() > 1:
        raise ValueError("pixel values must lie in [0, 1]")
    return x


def check_sequences(x, x_dim, lengths=None, steps=None):
    """Raise a clear error for sequences a model cannot score: not a ``[batch, time, x_dim]`` tensor
    (``time`` = ``steps`` where the model has a fixed length), ``lengths`` not ``[batch]`` integers in
    1..time, and (while :func:`validating`) NaN values."""
    shape = f"[batch, {steps if steps else 'time'}, {x_dim}]"
    if (not torch.is_tensor(x) or x.dim() != 3 or x.shape[-1] != x_dim
            or (steps is not None and x.shape[1] != steps)):
        raise ValueError(f"sequences must be a tensor {shape}, got "
                         f"{list(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    if lengths is not None and lengths.shape != x.shape[:1]:
        raise ValueError(f"lengths must be [batch] integers in 1..{x.shape[1]}")
    if not validating():  # the value checks below read the device: once, not on every step
        return x
    if torch.isnan(x).any():
        raise ValueError("sequences contain NaN")
    if lengths is not None and (lengths.min() < 1 or lengths.max() > x.shape[1]):
        raise ValueError(f"lengths must be [batch] integers in 1..{x.shape[1]}")
    return x

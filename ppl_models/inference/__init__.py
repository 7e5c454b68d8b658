"""Inference: the one SVI loop (``train.fit``), the importance-sampling evaluator (``evaluate``: log p(x),
ELBO, ESS, k-hat), per-example refinement and the inference gaps (``refine``), data parallelism under
torchrun (``distributed``)."""

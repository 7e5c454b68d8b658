"""Timing helper for the benchmark scripts: several training-step functions timed in one run."""
import math
import statistics
import time

import torch

LOG_2PI = math.log(2 * math.pi)  # the normal log-density's constant, for the hand-written losses


def time_interleaved(steps, batches, repeats, device):
    """Time each ``steps[name](*batch)`` over all ``batches`` (one block), ``repeats`` blocks per
    function, interleaved so that drifts of the machine hit every function alike, after one warm-up
    block each. Returns ``{name: {"median": seconds per batch, "times": [...]}}``."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def block(step):
        sync()
        t0 = time.perf_counter()
        for batch in batches:
            step(*batch)
        sync()
        return (time.perf_counter() - t0) / len(batches)

    for step in steps.values():
        block(step)
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(block(step))
    return {name: {"median": statistics.median(t), "times": t} for name, t in times.items()}


def joint_optimizer(model, guide, lr=1e-3):
    """Adam over the model's and guide's parameters, each once (guides may share the model's)."""
    params = list({id(p): p for p in [*model.parameters(), *guide.parameters()]}.values())
    return torch.optim.Adam(params, lr=lr)


def training_steps(pyro_loss_and_grads, hand_loss, optimizer):
    """The two step functions a benchmark compares: Pyro's ``loss_and_grads`` against
    ``hand_loss(*batch).backward()``, each followed by the same optimiser step."""
    import pyro

    def pyro_step(*batch):
        with pyro.validation_enabled(False):
            pyro_loss_and_grads(*batch)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def torch_step(*batch):
        hand_loss(*batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return {"pyro": pyro_step, "torch": torch_step}


def compare(steps, batches, repeats, device, title, labels, out_file, extra=None, ratio_label="ratio Pyro / torch"):
    """Time the two ``steps`` (e.g. :func:`training_steps`, ``{"pyro": ..., "torch": ...}``) interleaved,
    print the medians under ``title`` with ``labels`` and the ratio first / second, and write them (with
    ``extra``) as JSON to ``out_file``: ``ms_<name>`` for each, ``ratio``, the device and the times."""
    import json
    from pathlib import Path

    timed = time_interleaved(steps, batches, repeats, device)
    (first, a), (second, b) = ((k, v["median"]) for k, v in timed.items())
    ratio = a / b
    print(f"{title}, {device}, {torch.get_num_threads()} threads, median of {repeats} blocks of {len(batches)}:")
    print(f"  {labels[0]:42s} {1e3 * a:8.1f} ms")
    print(f"  {labels[1]:42s} {1e3 * b:8.1f} ms")
    print(f"  {ratio_label:42s} {ratio:8.3f}")
    result = {f"ms_{first}": 1e3 * a, f"ms_{second}": 1e3 * b, "ratio": ratio, "device": str(device),
              "threads": torch.get_num_threads(), **(extra or {}), "times": {k: v["times"] for k, v in timed.items()}}
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    Path(out_file).write_text(json.dumps(result, indent=1))
    return result


def pyro_against_hand(model, guide, hand_loss, batches, repeats, device, title, labels, out_file, extra=None):
    """The benchmark of a model/guide pair trained with ``Trace_ELBO`` against ``hand_loss(model,
    guide, *batch)``, a hand-written negative ELBO of the same networks: first both losses on the
    first batch (mean of 5 draws, so a reader sees they compute the same thing), then the two
    training steps timed with Adam over the shared parameters (:func:`compare`)."""
    from pyro.infer import Trace_ELBO

    elbo = Trace_ELBO()
    with torch.no_grad():
        a = sum(elbo.loss(model.model, guide.guide, *batches[0]) for _ in range(5)) / 5
        b = sum(hand_loss(model, guide, *batches[0]).item() for _ in range(5)) / 5
    print(f"-ELBO of one batch, mean of 5 draws: Pyro {a:.0f}, hand-written {b:.0f}")
    steps = training_steps(lambda *batch: elbo.loss_and_grads(model.model, guide.guide, *batch),
                           lambda *batch: hand_loss(model, guide, *batch), joint_optimizer(model, guide))
    return compare(steps, batches, repeats, device, title, labels, out_file, extra)

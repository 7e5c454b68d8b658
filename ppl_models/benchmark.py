"""Timing helper for the benchmark scripts: several training-step functions timed in one run."""
import statistics
import time

import torch


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

"""One data-parallel training run for tests/test_distributed.py (started by torchrun), or the same
run in one process when called directly: a small VAE with the point-mass guide (no latent noise, so
that the runs can agree to float rounding) on fixed global batches.

``DDP_WORKER_KILL=EPOCH:STEP``: on torchrun's first start, rank 1 kills itself (SIGKILL, as a preempted
or out-of-memory worker dies) when it reaches that step of that epoch; torchrun's restarts run on."""
import os
import signal
import sys
from pathlib import Path

import torch
from pyro.infer import Trace_ELBO

from guides.vae import make_guide
from ppl_models.inference import distributed
from ppl_models.inference.train import fit
from ppl_models.vae import VAE


def global_batches(n_batches=4, batch=15):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n_batches * batch, 784, generator=g) < 0.3).float()
    return [(x[i:i + batch],) for i in range(0, len(x), batch)]


class Preempted:
    """The global batches of one epoch; on the first start, rank 1 dies at ``step`` of ``epoch``."""

    def __init__(self, batches, epoch, kill):
        self.batches, self.epoch, self.kill = batches, epoch, kill

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for step, batch in enumerate(self.batches, 1):
            if (self.kill and (self.epoch, step) == self.kill and distributed.rank() == 1
                    and distributed.restarted() == 0):
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch


def train(out, epochs, resume=False, batches=None):
    distributed.init(torch.device("cpu"))
    kill = os.environ.get("DDP_WORKER_KILL")
    if kill and batches is None:
        at = tuple(map(int, kill.split(":")))
        batches = lambda epoch: Preempted(global_batches(), epoch, at)  # noqa: E731
    torch.manual_seed(0)
    model = VAE(z_dim=4, hidden=(32,))
    guide = make_guide("delta", model)
    fit(model, guide, Trace_ELBO(), batches or global_batches(), epochs=epochs, out=out, seed=0,
        progress=False, resume=resume, lr=1e-2, log=lambda *a: None)
    if distributed.is_main():
        torch.save({"model": model.state_dict(), "guide": guide.state_dict(), "world": distributed.world()},
                   Path(out) / "params.pt")
    distributed.end()


if __name__ == "__main__":
    train(sys.argv[1], int(sys.argv[2]), resume=len(sys.argv) > 3 and sys.argv[3] == "resume")

"""Data-parallel training on several processes, started by ``torchrun``.

    torchrun --nproc_per_node 2 examples/vae.py --device cpu     # two processes, gloo
    torchrun --nproc_per_node 4 examples/vrnn.py --device cuda   # four GPUs, NCCL

Every process (rank) builds the same model from the same seed and walks through the same global
minibatches: the batches are drawn (order, binarisation, dequantisation noise) from an RNG stream
all ranks share, and each rank keeps every ``world``-th example of each batch (``batch[rank::world]``),
so ``--batch-size`` stays the global batch and the run's settings are those of one process. Each rank
scores its shard (the ELBO of a batch is a sum over its examples), the gradients are summed over the
ranks in one all-reduce (NCCL on GPUs, gloo on CPUs) and every rank takes the same optimiser step:
the global batch's gradient, as one process would have it, up to float rounding and the latent noise
(each rank draws its own). Rank 0 alone validates (broadcasting the figures, so every rank stops at
the same epoch), writes checkpoints, metrics, figures and ``results.json``; the other ranks end when
training ends, and rank 0 scores the test set alone, exactly as one process does.

Data-parallel: ``vae.py``, ``ssvae.py`` (one seed per command), ``draw.py``, ``vrnn.py``, ``seqvae.py``:
one model, one objective that is a sum over the batch's examples. Refused in one line: ``cvae.py``
(it trains the baseline network and then the CVAE, one after another), ``ae_vs_vae.py`` (an autoencoder
and a VAE per latent size), ``guides_lab.py`` (a model per guide, then per-image refinement): several
trainings in one command; sweep them with ``examples/sweep.py`` instead. Tested on CPUs with gloo
(``tests/test_distributed.py``); the NCCL path has not run here, for want of several GPUs.

Preemption: when a worker dies (killed, out of memory, its node lost), ``torchrun --max-restarts N``
stops the other ranks and starts the whole group again (``TORCHELASTIC_RESTART_COUNT`` = 1, 2, ...);
every rank of the new group finds the run folder's last complete checkpoint and continues from it
(``fit`` resumes by itself on a restart; the run's settings must still match), each rank with its own
random stream and the shared batch stream as saved, so the run ends as an uninterrupted one does.
The rendezvous: on one machine ``--standalone`` (a free local port); on several, the same
``--rdzv-backend c10d --rdzv-endpoint HOST:PORT --rdzv-id JOB --nnodes N`` on every node, and the run
folder on a file system every node sees (rank 0 writes it, every rank reads it on a restart).
"""
import os
import sys

import torch
import torch.distributed as dist

_ended = False


def launched():
    """Started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def restarted():
    """The restart number torchrun gives a worker group it started again after a worker failed (0 for
    the first start): ``torchrun --max-restarts N`` restarts the whole group, every rank anew."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def active():
    return dist.is_available() and dist.is_initialized()


def world():
    return dist.get_world_size() if active() else 1


def rank():
    return dist.get_rank() if active() else 0


def is_main():
    return rank() == 0


def init(device):
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...): NCCL
    for CUDA, gloo for the CPU. Returns this rank's device (``cuda:LOCAL_RANK`` for CUDA). Ranks other
    than 0 print nothing to standard output."""
    if _ended:
        raise RuntimeError("under torchrun one command trains one model; this command trains several "
                           "(e.g. --seeds above 1): run them one per command")
    if not launched() or active():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=_attempt_store(),
                            rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
    if not is_main():
        sys.stdout = open(os.devnull, "w")
    return device


def _attempt_store():
    """The rendezvous store of this start of the worker group, its keys under a prefix of their own.
    torchrun keeps one store across the restarts of a group; without the prefix a restarted rank can
    read the addresses the dead group left there and wait on them for ever (seen with gloo)."""
    import datetime

    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun's agent hosts the store
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), int(os.environ["WORLD_SIZE"]),
                          is_master=not agent and int(os.environ["RANK"]) == 0,
                          timeout=datetime.timedelta(minutes=10), multi_tenant=True)
    return dist.PrefixStore(f"ppl_models/start{restarted()}", store)


def end():
    """After training: ranks other than 0 leave the process (rank 0 goes on alone)."""
    global _ended
    if not active():
        return
    dist.barrier()
    main = is_main()
    dist.destroy_process_group()
    _ended = True
    if not main:
        sys.stdout.flush()
        os._exit(0)  # nothing of the example's evaluation, figures or results runs here


def sum_gradients(params):
    """Sum the gradients of ``params`` over the ranks, in one all-reduce of one flat buffer (with a
    flag per parameter, so that a parameter no rank touched keeps no gradient, as in one process)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flags = torch.tensor([p.grad is not None for p in params], dtype=grads[0].dtype, device=grads[0].device)
    flat = torch.cat([g.reshape(-1) for g in grads] + [flags])
    dist.all_reduce(flat)
    offset = 0
    for p, g, touched in zip(params, grads, flat[-len(params):].tolist()):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p) if touched else None
        offset += n


def total(value):
    """A float or tensor summed over the ranks (a float back)."""
    t = torch.as_tensor(value, dtype=torch.float64).reshape(1)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t)


def broadcast(obj):
    """Rank 0's ``obj`` on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj):
    """Every rank's ``obj``, in rank order, on every rank."""
    out = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def shard(step):
    """This rank's share of one global step: every tensor argument cut to ``[rank::world]``."""
    r, w = rank(), world()
    return tuple(a[r::w] if torch.is_tensor(a) and a.dim() > 0 else a for a in step)


class SharedRNG:
    """The RNG stream all ranks share, for drawing the global batches: swapped in while the batch
    iterator runs, swapped out for the rank's own stream (the model's and guide's noise)."""

    def __init__(self, seed, device):
        self.cuda = device.type == "cuda"
        own = self._get()
        torch.manual_seed(seed)
        self.state = self._get()
        self._set(own)

    def _get(self):
        return (torch.get_rng_state(), torch.cuda.get_rng_state() if self.cuda else None)

    def _set(self, state):
        torch.set_rng_state(state[0])
        if self.cuda:
            torch.cuda.set_rng_state(state[1])

    def _shared(self, fn, *args):
        own = self._get()
        self._set(self.state)
        try:
            return fn(*args)
        finally:
            self.state = self._get()
            self._set(own)

    def batches(self, iterable):
        """Iterate ``iterable`` with the shared stream; yield this rank's shard of each step."""
        it = self._shared(iter, iterable)
        while True:
            try:
                step = self._shared(next, it)
            except StopIteration:
                return
            yield shard(step)

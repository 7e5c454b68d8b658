"""The one SVI loop every example uses.

``fit(model, guide, loss, batches, ...)`` maximises the ELBO of ``model.model`` under
``guide.guide`` with a PyTorch optimiser over both modules' parameters: each step is
``loss.loss_and_grads(model.model, guide.guide, *batch)`` followed by ``optimizer.step()``, which is
Pyro's ``SVI.step`` with the optimiser state kept in one ``state_dict`` that a checkpoint can hold.

Per epoch it writes ``metrics.csv`` and an atomic checkpoint (model, guide, optimiser, epoch, RNG
states, metric history and the run's ``settings``) to ``out/checkpoint.pt``; with
``best=("valid_loss", "min")`` it also keeps ``out/best.pt``. ``resume=True`` continues from
``out/checkpoint.pt`` exactly where it stopped, and refuses a checkpoint written with other settings.
A fresh run removes any ``best.pt`` an earlier run left in ``out``, so that what is evaluated afterwards
is always this run's. A loss that is not finite stops training with :class:`TrainingDiverged`, and a
save that fails (a full disk) with :class:`CheckpointNotSaved`, each leaving the last complete
checkpoint loadable. Under a torchrun restart (``distributed.restarted()``) the loop resumes by itself.

Host-device synchronisation: one per step, Pyro's loss value (``loss_and_grads`` returns a float).
An objective may return a tensor instead (e.g. a float plus a term still on the device); such a
value is summed on the device and checked for NaN once per epoch (and read at most twice a second
while the progress bar shows the running loss).

Under ``torchrun`` with several processes the loop is data-parallel (``ppl_models.inference.distributed``): the
global batches come from an RNG stream the ranks share, each rank scores its shard, the gradients are
summed over the ranks before every optimiser step, rank 0 validates and writes.
"""
import csv
import math
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from tqdm.auto import tqdm

from ppl_models.inference import distributed

CHECKPOINT, BEST, METRICS = "checkpoint.pt", "best.pt", "metrics.csv"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class CorruptCheckpoint(RuntimeError):
    """A checkpoint file that cannot be read."""


class CheckpointNotSaved(RuntimeError):
    """A checkpoint could not be written (a full disk, a lost mount); the last complete one is kept."""


class SettingsMismatch(ValueError):
    """A checkpoint was written by a run with other settings than the ones asked for."""


# Settings at these values are the same as unstated: flags added after runs were saved, at their
# defaults (the behaviour those runs had), and a retired flag at the value that is now the only one.
UNSTATED = {"objective": "elbo", "particles": 1, "renyi_alpha": 0.5, "prior": "standard", "prior_components": None,
            "layers": 1, "activation": "relu", "form": "m2", "protocol": "ours", "generation_input": "xz",
            "recognition_input": "xy", "warmup_epochs": 0,
            "elbo": "trace", "binarize": "dynamic", "decoder_layers": 1,
            "classifier_hidden": 0}


def settings_diff(saved, wanted):
    """``"name saved (asked: wanted), ..."`` for every setting that differs, or ``""``. A setting one
    side lacks counts as ``None`` (a flag added later, at its default ``None``, changes nothing), or
    as its value in ``UNSTATED``."""
    def value(d, k):
        return d.get(k, UNSTATED.get(k))
    return ", ".join(f"{k} {saved.get(k, 'unset')} (asked: {wanted.get(k, 'unset')})"
                     for k in sorted(set(saved) | set(wanted)) if value(saved, k) != value(wanted, k))


def check_settings(ckpt, settings, path):
    """Raise :class:`SettingsMismatch` naming the settings in which ``ckpt`` differs from ``settings``."""
    if settings is None:
        return
    saved = ckpt.get("settings")
    if saved is None:
        raise SettingsMismatch(f"{path} records no settings, so it cannot be matched to this command; "
                               "use another --out")
    diff = settings_diff(saved, settings)
    if diff:
        raise SettingsMismatch(f"{path} was written with other settings: {diff}; "
                               "use the run's settings or another --out")


def resolve_device(device="auto"):
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA device")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return torch.device(device)


def make_optimizer(params, name="adam", lr=1e-3):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise ValueError(f"unknown optimiser {name!r}; choose adam or rmsprop")


def rng_state():
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"].cpu())  # torch takes only a CPU ByteTensor
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])


def atomic_save(obj, path):
    """``torch.save`` to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_metrics(history, path):
    path = Path(path)
    keys = list(dict.fromkeys(k for row in history for k in row))
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    os.replace(tmp, path)


def read_checkpoint(path):
    """The dictionary saved in a checkpoint, its tensors on the CPU."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CorruptCheckpoint(f"checkpoint {path} could not be read ({e}); it is corrupt") from e


def load_checkpoint(path, model, guide, optimizer=None, settings=None):
    """Load a checkpoint written by :func:`fit` into ``model`` and ``guide`` (and ``optimizer``).

    The file is read onto the CPU (RNG states must stay there); ``load_state_dict`` copies the
    parameters and the optimiser state onto the device of the modules' parameters. With
    ``settings``, a checkpoint written with other settings is refused (:class:`SettingsMismatch`)."""
    ckpt = read_checkpoint(path)
    check_settings(ckpt, settings, path)
    model.load_state_dict(ckpt["model"])
    guide.load_state_dict(ckpt["guide"])
    if optimizer is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt


def fit(model, guide, loss, batches, *, epochs, out, optim="adam", lr=1e-3, lr_decay=1.0, validate=None,
        valid_every=1, best=None, patience=None, resume=False, seed=0, progress=True, step_kwargs=None,
        settings=None, example=None, on_epoch=None, log=print):
    """Train ``model`` and ``guide`` (``nn.Module`` s with ``.model`` / ``.guide`` methods).

    batches:    an iterable of argument tuples, iterated once per epoch (or a function
                ``batches(epoch)`` returning one); each tuple is one step,
                passed as ``model.model(*args, **kwargs)`` and ``guide.guide(*args, **kwargs)``; the
                first argument's length is the batch size.
    step_kwargs: ``step_kwargs(epoch)`` returns extra keyword arguments (e.g. ``{"beta": 0.5}``
                for KL annealing), or ``None``.
    validate:   ``validate()`` returns a dict of floats, run every ``valid_every`` epochs (and after
                the last) and written to ``metrics.csv`` and the progress line.
    best:       ``(metric, "min" | "max")``: keep ``best.pt`` at the best value of that metric.
    patience:   early stopping: end training once ``patience`` validations in a row did not
                improve ``best`` (``None``: run all epochs).
    settings:   a dict of the run's settings, stored in every checkpoint; ``resume`` refuses a
                checkpoint whose settings differ (:class:`SettingsMismatch`).
    example:    the name of the example that trains, stored in every checkpoint (so that a run
                folder can be rebuilt: ``ppl_models.runs.experiment.rebuild``).
    on_epoch:   ``on_epoch(row)`` after each epoch's checkpoint, with its metrics row (rank 0 only):
                e.g. an experiment tracker.
    lr, lr_decay: the learning rate of epoch e is ``lr * lr_decay ** (e - 1)``, also after a resume
                (so resuming with a smaller ``lr`` is a step schedule); ``lr`` may also be a function
                ``lr(epoch)``.
    Returns the list of per-epoch metric dicts.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    params = list({id(p): p for p in [*model.parameters(), *guide.parameters()]}.values())  # shared once
    lr_at = lr if callable(lr) else (lambda e: lr)
    optimizer = make_optimizer(params, optim, lr_at(1))
    pyro.clear_param_store()  # parameters live in the modules; stale store entries would shadow them
    pyro.set_rng_seed(seed)
    ranks, main = distributed.world(), distributed.is_main()
    log = log if main else (lambda *a: None)
    shared = None
    if ranks > 1:  # the batches from one stream all ranks share; the latent noise from each rank's own
        shared = distributed.SharedRNG(seed, params[0].device)
        pyro.set_rng_seed(seed + 1_000_003 * (distributed.rank() + 1))
    history, start, best_value, stale = [], 1, None, 0
    ckpt_path = out / CHECKPOINT
    if not resume and distributed.restarted() and ckpt_path.exists():
        log(f"torchrun restarted the workers (restart {distributed.restarted()}): continuing the run in {out}")
        resume = True
    if resume:
        if ckpt_path.exists():
            ckpt = load_checkpoint(ckpt_path, model, guide, optimizer, settings=settings)
            history, start, best_value = ckpt["history"], ckpt["epoch"] + 1, ckpt.get("best_value")
            stale = ckpt.get("stale", 0)
            own = ckpt.get("rng_ranks") or [ckpt["rng"]]
            if len(own) == ranks:  # the same number of processes: each continues its own stream
                set_rng_state(own[distributed.rank()])
            else:
                set_rng_state(own[0])
                if ranks > 1:
                    pyro.set_rng_seed(seed + 1_000_003 * (distributed.rank() + 1) + start)
            if shared is not None and ckpt.get("rng_shared") is not None:
                shared.state = ckpt["rng_shared"]
            log(f"resumed from {ckpt_path} after epoch {ckpt['epoch']}")
        else:
            log(f"--resume: no checkpoint in {out}, starting from scratch")
    if start == 1 and main and (out / BEST).exists():
        (out / BEST).unlink()  # an earlier run's best.pt must never be evaluated as this run's
    last_good = f"{ckpt_path} (epoch {start - 1})" if start > 1 else "none written yet"
    if patience is not None and stale >= patience:
        log(f"already stopped early after epoch {start - 1}")
        return history
    # bound once: Pyro's JIT losses key their compiled graphs on id(model) and id(guide), and a bound
    # method made afresh each step may get a new id, hence a new compilation
    model_fn, guide_fn = model.model, guide.guide
    for epoch in range(start, epochs + 1):
        model.train(), guide.train()
        epoch_lr = lr_at(epoch) * lr_decay ** (epoch - 1)
        for group in optimizer.param_groups:
            group["lr"] = epoch_lr
        kwargs = step_kwargs(epoch) if step_kwargs else {}
        t0, total, count, shown = time.perf_counter(), 0.0, 0, 0.0
        steps = batches(epoch) if callable(batches) else batches
        bar = tqdm(shared.batches(steps) if shared else steps, desc=f"epoch {epoch}/{epochs}", leave=False,
                   disable=not (progress and main), total=len(steps) if hasattr(steps, "__len__") else None)
        for step, args in enumerate(bar, 1):
            optimizer.zero_grad(set_to_none=True)
            if len(args[0]):
                with pyro.validation_enabled(step == 1 and epoch == start):  # argument checks once, then speed
                    value = loss.loss_and_grads(model_fn, guide_fn, *args, **kwargs)
            else:  # a global batch smaller than the number of ranks left this one nothing
                value = 0.0
            if not torch.is_tensor(value) and not math.isfinite(value):  # a float costs no extra sync
                diverged(value, epoch, f"step {step}", last_good)
            if ranks > 1:
                distributed.sum_gradients(params)
            optimizer.step()
            total = total + (value.detach() if torch.is_tensor(value) else value)
            count += len(args[0])
            # the running loss on the bar at most twice a second (formatting it every step cost 1.2 ms of
            # a 7.6 ms step of the small VAE); a running tensor total (a loss with a term left on the
            # device) is read then too: one sync per half second, not per step
            if not bar.disable and time.perf_counter() - shown > 0.5:
                bar.set_postfix(loss=f"{float(total) / count:.2f}", refresh=False)
                shown = time.perf_counter()
        total = float(total)  # tensor parts of the loss: one sync per epoch
        if ranks > 1:
            total, count = distributed.total(total), int(distributed.total(count))
        if not math.isfinite(total):
            diverged(total, epoch, "the end of the epoch", last_good)
        row = {"epoch": epoch, "loss": total / max(count, 1), "seconds": time.perf_counter() - t0, "lr": epoch_lr,
               **kwargs}
        if validate is not None and (epoch % valid_every == 0 or epoch == epochs):
            model.eval(), guide.eval()
            with torch.no_grad():
                figures = validate() if main else None
            row.update(distributed.broadcast(figures) if ranks > 1 else figures)
        history.append(row)
        improved = False
        if best is not None and best[0] in row:
            metric, mode = row[best[0]], best[1]
            improved = best_value is None or (metric < best_value if mode == "min" else metric > best_value)
            best_value = metric if improved else best_value
            stale = 0 if improved else stale + 1
        ckpt = {"model": model.state_dict(), "guide": guide.state_dict(), "optimizer": optimizer.state_dict(),
                "epoch": epoch, "rng": rng_state(), "history": history, "best_value": best_value,
                "stale": stale, "settings": settings, "example": example}
        if ranks > 1:
            ckpt.update(rng_ranks=distributed.gather(ckpt["rng"]), rng_shared=shared.state)
        if main:
            try:
                if improved:  # best first: a stop between the two writes must not leave a checkpoint whose
                    atomic_save(ckpt, out / BEST)  # best epoch is newer than best.pt (resume redoes this epoch)
                atomic_save(ckpt, ckpt_path)
                write_metrics(history, out / METRICS)
            except OSError as e:
                raise CheckpointNotSaved(f"epoch {epoch} could not be saved in {out} ({e.strerror or e}); the "
                                         f"last complete checkpoint is {last_good}: free space, then --resume") from e
        last_good = f"{ckpt_path} (epoch {epoch})"
        if on_epoch is not None and main:
            on_epoch(row)
        log("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        if patience is not None and stale >= patience:
            log(f"early stop: {best[0]} did not improve for {stale} validations (best {best_value:.4g})")
            break
    return history


def diverged(value, epoch, where, last_good):
    raise TrainingDiverged(f"loss became {value} at epoch {epoch}, {where}; stopped without saving. "
                           f"Last good checkpoint: {last_good}. Try a lower --lr.")

"""Run a grid of configurations of any example as Ray tasks, then one table over the seeds.

    python examples/sweep.py ssvae --labeled 100 600 1000 3000 5000 --seeds 0 1 2 --epochs 20
    python examples/sweep.py ssvae --epochs 20 --labeled 100 --seeds 0 1 2 + --epochs 20 --labeled 600 1000 --seed 0
    python examples/sweep.py vae --guide diag iaf lowrank --seeds 0 1 --epochs 50
    python examples/sweep.py --address auto vae --z-dim 2 10 50      # join a running Ray cluster
    python examples/sweep.py --serial vae --smoke --z-dim 2 3        # one after another, without Ray

After the example's name come its own flags; a flag given several values is a dimension of the grid
(``--seeds 0 1 2`` is ``--seed`` over 0, 1, 2), a flag given one value (or none) goes to every run.
A lone ``+`` joins grids: ``--labeled 100 --seeds 0 1 2 + --labeled 600 1000 --seed 0`` is five runs.
Runs are named by the flags that differ between them, e.g. ``labeled100-seed0``.
Every configuration is checked by the example's own parser before anything starts. Each run is the
example's command in its own process (``--threads 1`` unless given), with its run folder
``<sweep>/<name>`` (``--sweep-dir``, default ``results/sweeps/<example>-<the grid's flags>``), its
output in ``<sweep>/<name>/sweep.log``.

Ray: ``ray.init()`` starts a local Ray on this machine, one task per core (``--parallel N`` for
fewer), and one GPU per task where PyTorch sees GPUs; ``--address`` joins an existing cluster (the
sweep folder must then be on a file system every node sees). Ray is an optional dependency:
``pip install -e '.[scale]'``. ``--serial`` runs the same grid one after another in this process's
machine, no Ray needed.

Continuing: a configuration whose ``results.json`` exists is skipped, one with a checkpoint but no
results continues with ``--resume``; under Ray a run whose process is killed (or whose worker or node is
lost) is started again up to ``--max-retries`` times, continuing from its checkpoint, and ``table.md``
lists each run's starts and retries; and one held by another live sweep (``sweep.lock``) is left to
it. So an interrupted sweep is continued by running the same command again. A failed run is reported
with its error line and the others go on; the exit status is 1 if any run failed. At the end:
``python -m ppl_models.runs.compare`` over the runs, merged over the seeds (mean +- std), written to
``<sweep>/table.md`` and ``<sweep>/table.csv``.
"""
import argparse
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from ppl_models.runs import compare, experiment
from ppl_models.runs.experiment import Parser, Refused, cli, nonnegative_int, positive_int

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOT_SWEPT = ("sweep", "render_models")
OWNED = ("--out", "--resume", "--eval-only")  # the sweep decides these for every run
LOCK, LOG = "sweep.lock", "sweep.log"


SWEEP_FLAGS = {"--address": 1, "--parallel": 1, "--sweep-dir": 1, "--serial": 0, "--dry-run": 0, "--max-retries": 1}
ATTEMPTS = "sweep.attempts"  # one line per start of a run: how many times it was started


def parse_args(argv=None):
    """The sweep's own flags may stand before the example's name or among its flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    own, rest, i = [], [], 0
    while i < len(argv):
        flag = argv[i].split("=")[0]
        n = SWEEP_FLAGS.get(flag, -1) if "=" not in argv[i] else 0
        if n >= 0:
            own += argv[i:i + 1 + n]
            i += 1 + n
        else:
            rest.append(argv[i])
            i += 1
    p = Parser(prog="python examples/sweep.py", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", default=None, help="an existing Ray cluster to join (default: start a local Ray)")
    p.add_argument("--parallel", type=positive_int, default=None,
                   help="runs at once on a local Ray (default: one per core, or one per GPU)")
    p.add_argument("--serial", action="store_true", help="run one after another without Ray")
    p.add_argument("--sweep-dir", default=None, help="the sweep's folder (default: results/sweeps/...)")
    p.add_argument("--dry-run", action="store_true", help="print the runs and what would happen to each")
    p.add_argument("--max-retries", type=nonnegative_int, default=2,
                   help="Ray: times a run whose process was killed (or whose worker or node was lost) is "
                        "started again, continuing from its checkpoint (default 2)")
    p.add_argument("example", help="the example to sweep, e.g. ssvae, vae, vrnn")
    p.add_argument("flags", nargs=argparse.REMAINDER, help="the example's flags, each with one or more values")
    args = p.parse_args(own + rest)
    scripts = sorted(s.stem for s in EXAMPLES.glob("*.py") if s.stem not in NOT_SWEPT)
    if args.example not in scripts:
        p.error(f"argument example: unknown example {args.example!r}; choose one of {', '.join(scripts)}")
    return args


def grid(tokens):
    """``--flag v1 v2 --switch --other v`` -> ``(common, axes)``: ``common`` the tokens every run gets,
    ``axes`` ``[(flag, [values])]`` for the flags given several values (``--seeds`` becomes ``--seed``)."""
    if tokens and not tokens[0].startswith("--"):
        raise Refused(f"expected a flag after the example's name, got {tokens[0]!r}")
    groups = []
    for token in tokens:
        if token.startswith("--"):
            groups.append((token, []))
        else:
            groups[-1][1].append(token)
    common, axes = [], []
    for flag, values in groups:
        flag = "--seed" if flag == "--seeds" else flag
        if flag.split("=")[0] in OWNED:
            raise Refused(f"{flag} is set by the sweep for every run; leave it out")
        if flag in [f for f, _ in axes] or flag in common:
            raise Refused(f"{flag} is given twice")
        if len(values) > 1:
            if len(set(values)) < len(values):
                raise Refused(f"{flag} repeats a value: {' '.join(values)}")
            axes.append((flag, values))
        else:
            common += [flag, *values]
    return common, axes


def points(common, axes):
    """The grid's points, each a list of ``(flag, [values])`` in the order given."""
    fixed, current = [], None
    for token in common:
        if token.startswith("--"):
            current = (token, [])
            fixed.append(current)
        else:
            current[1].append(token)
    return [fixed + [(flag, [value]) for (flag, _), value in zip(axes, point)]
            for point in itertools.product(*(values for _, values in axes))]


def configurations(tokens):
    """``(runs, varying)``: one ``(name, argv)`` per run of the grid, e.g. ``("labeled100-seed0",
    [...])``, and the flags that vary between runs (which name them). Sub-grids separated by ``+``
    are joined (their union), e.g. ``--labeled 100 --seeds 0 1 2 + --labeled 600 1000 --seed 0``."""
    parts, part = [], []
    for token in [*tokens, "+"]:
        if token == "+":
            if not part:
                raise Refused("an empty sub-grid: '+' must stand between two sets of flags")
            parts.append(part)
            part = []
        else:
            part.append(token)
    union = [p for sub in parts for p in points(*grid(sub))]
    flags = list(dict.fromkeys(flag for p in union for flag, _ in p))
    varying = [f for f in flags if len({tuple(dict(p).get(f, ["(unset)"])) for p in union}) > 1]
    runs = []
    for p in union:
        values = dict(p)
        name = "-".join(f"{f.lstrip('-').replace('-', '')}{'_'.join(values[f])}" for f in varying if f in values)
        runs.append((name or "run", [tok for flag, vals in p for tok in (flag, *vals)]))
    names = [n for n, _ in runs]
    if len(set(names)) < len(names):
        raise Refused(f"the grid repeats a run: {next(n for n in names if names.count(n) > 1)}")
    return runs, varying


def folder_name(example, varying, runs):
    flags = [flag.lstrip("-") for flag in varying] or ["single"]
    return f"{example}-{'-'.join(flags)}" + ("-smoke" if all("--smoke" in argv for _, argv in runs) else "")


def check(example, runs):
    """Every configuration through the example's own parser: a bad value stops the sweep before any
    run starts, with the example's one-line error."""
    module = experiment.load_example(example, EXAMPLES)
    program, sys.argv[0] = sys.argv[0], f"{example}.py"  # the example's errors name the example
    try:
        for name, argv in runs:
            try:
                module.parse_args([*argv, "--out", "unused"])
            except SystemExit as e:
                if e.code:
                    raise Refused(f"configuration {name} is refused by {example}.py (its error is above)") from None
    finally:
        sys.argv[0] = program


def state(out):
    """``done``, ``resume``, ``fresh``, or ``held`` (another live sweep runs it)."""
    if (out / "results.json").exists():
        return "done"
    lock = out / LOCK
    if lock.exists():
        try:
            owner = json.loads(lock.read_text())
            alive = owner["host"] == socket.gethostname() and _alive(owner["pid"])
        except (OSError, ValueError, KeyError):
            alive = False
        if alive and owner["pid"] != os.getpid():
            return "held"
    return "resume" if experiment.held_checkpoint(out) is not None else "fresh"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def take(out):
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))


def release(out):
    try:
        (out / LOCK).unlink()
    except FileNotFoundError:
        pass


def command(example, argv, out, resume, gpus):
    cmd = [sys.executable, str(EXAMPLES / f"{example}.py"), *argv, "--out", str(out)]
    if "--threads" not in argv:
        cmd += ["--threads", "1"]
    if "--no-progress" not in argv:
        cmd += ["--no-progress"]
    if gpus and "--device" not in argv:
        cmd += ["--device", "cuda"]
    return cmd + (["--resume"] if resume else [])


class RunKilled(RuntimeError):
    """A run's process ended by a signal (killed, out of memory): Ray starts the task again."""


def execute(cmd, out, retry_killed=False):
    """Run one configuration's command, its output appended to ``out/sweep.log``. Returns what the
    driver reports: the exit status, the seconds, and the error line of a failed run. The command
    continues the run (``--resume``) whenever its folder holds a checkpoint when it starts, so a task
    that Ray starts again after a lost worker or a killed run picks up where the run stopped. With
    ``retry_killed`` a run killed by a signal raises :class:`RunKilled` (Ray retries it)."""
    started = time.time()
    if experiment.held_checkpoint(out) is not None and "--resume" not in cmd:
        cmd = [*cmd, "--resume"]
    with open(Path(out) / ATTEMPTS, "a") as f:
        f.write(f"{time.time():.0f} {os.getpid()}\n")
    with open(Path(out) / LOG, "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the log follows the run line by line
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env).returncode
    if rc < 0 and retry_killed:
        raise RunKilled(f"{Path(out).name}: killed by signal {-rc}")
    error = ""
    if rc:
        lines = [ln.strip() for ln in open(Path(out) / LOG, errors="replace") if ln.strip()]
        error = next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else "")
    return {"rc": rc, "seconds": time.time() - started, "error": error}


def attempts(out):
    """How many times the run in ``out`` was started (0 if never)."""
    path = Path(out) / ATTEMPTS
    return len(path.read_text().splitlines()) if path.exists() else 0


def run_all(jobs, serial, address, parallel, max_retries=2):
    """Yield ``(name, outcome)`` as the runs finish: Ray tasks, or one after another with ``serial``."""
    if serial:
        for name, cmd, out in jobs:
            yield name, execute(cmd, out)
        return
    try:
        import ray
    except ImportError:
        raise Refused("Ray is not installed: pip install -e '.[scale]' (or run the grid with --serial)") from None
    import torch
    gpus = 1 if torch.cuda.is_available() else 0
    if address:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    else:
        cpus = parallel or os.cpu_count()
        ray.init(num_cpus=cpus, num_gpus=min(parallel or torch.cuda.device_count(), torch.cuda.device_count()),
                 include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    # max_retries: a task whose worker process dies (killed, out of memory, its node lost) is started again;
    # retry_exceptions: so is one whose run was killed by a signal under it. Each start continues the run.
    task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=max_retries, retry_exceptions=[RunKilled])(execute)
    pending = {task.remote(cmd, str(out), True): name for name, cmd, out in jobs}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            name = pending.pop(ready[0])
            try:
                yield name, ray.get(ready[0])
            except ray.exceptions.RayError as e:
                yield name, {"rc": -1, "seconds": 0.0, "error": f"Ray task failed: {str(e).splitlines()[0]}"}
    finally:
        ray.shutdown()


def main(args):
    runs, varying = configurations(args.flags)
    check(args.example, runs)
    sweep = Path(args.sweep_dir or ROOT / "results" / "sweeps" / folder_name(args.example, varying, runs)).resolve()
    import torch
    gpus = not args.serial and torch.cuda.is_available()
    plan = {name: state(sweep / name) for name, _ in runs}
    if all("--overwrite" in argv for _, argv in runs):
        plan = {name: ("fresh" if s != "held" else s) for name, s in plan.items()}
    counts = {s: sum(v == s for v in plan.values()) for s in ("done", "resume", "fresh", "held")}
    print(f"sweep {sweep}: {len(runs)} runs of {args.example}.py "
          f"({counts['fresh']} to start, {counts['resume']} to continue, {counts['done']} done, "
          f"{counts['held']} held by another sweep)")
    jobs = []
    for name, argv in runs:
        if plan[name] in ("fresh", "resume"):
            jobs.append((name, command(args.example, argv, sweep / name, plan[name] == "resume", gpus), sweep / name))
        if args.dry_run:
            print(f"  {name}: {plan[name]}" + (f"  $ {' '.join(jobs[-1][1])}" if jobs and jobs[-1][0] == name else ""))
    if args.dry_run:
        return plan
    for _, _, out in jobs:
        take(out)
    finished = counts["done"]
    failed = []
    started = time.time()
    try:
        for name, outcome in run_all(jobs, args.serial, args.address, args.parallel, args.max_retries):
            release(sweep / name)
            finished += 1
            if outcome["rc"]:
                failed.append(name)
                print(f"[{finished}/{len(runs)}] {name} FAILED (exit {outcome['rc']}): {outcome['error']}", flush=True)
            else:
                print(f"[{finished}/{len(runs)}] {name} done in {outcome['seconds'] / 60:.1f} min", flush=True)
    finally:
        for _, _, out in jobs:
            if json.loads((out / LOCK).read_text() if (out / LOCK).exists() else "{}").get("pid") == os.getpid():
                release(out)
    print(f"sweep wall time {time.time() - started:.1f} s for {len(jobs)} runs")
    started_again = {name: attempts(sweep / name) - 1 for name, _ in runs if attempts(sweep / name) > 1}
    if started_again:
        print("started again after a killed run or a lost worker: "
              + ", ".join(f"{n} ({k} time{'s' * (k > 1)})" for n, k in started_again.items()))
    table(sweep, [name for name, _ in runs], over_seed="--seed" in varying)
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}; their output is in <run>/{LOG}; "
              "the same command continues the sweep", file=sys.stderr)
        sys.exit(1)
    return plan


def table(sweep, names, over_seed):
    outs = [str(sweep / n) for n in names if (sweep / n / "results.json").exists()]
    if not outs:
        print("no finished runs to tabulate")
        return
    argv = [*outs, "--csv", str(sweep / "table.csv")] + (["--over", "seed"] if over_seed else [])
    rows, cols = compare.main(compare.parse_args(argv))
    starts = "\n".join(f"| {n} | {attempts(sweep / n)} | {max(attempts(sweep / n) - 1, 0)} |" for n in names
                       if (sweep / n / "results.json").exists())
    (sweep / "table.md").write_text(compare.markdown(rows, cols) + "\n\n| run | starts | retries |\n|---|---|---|\n"
                                    + starts + "\n")
    print(f"wrote {sweep / 'table.md'}")


if __name__ == "__main__":
    cli(main, parse_args)

import sys
from pathlib import Path

import pyro
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def fresh_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def fake_images():
    """64 binary 'images' with structure (a few prototypes plus noise), and labels."""
    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(4, 784, generator=g) > 0.5).float()
    y = torch.arange(64) % 4
    flip = (torch.rand(64, 784, generator=g) < 0.05).float()
    return (protos[y] - flip).abs(), y


def _command(script, argv, cwd, stdout, stderr):
    """``python examples/<script>.py ARGV`` from ``cwd`` by its command-line path (``experiment.cli``:
    parse, main, one-line errors) in this process, its output into the streams ``stdout`` and
    ``stderr``. Returns the exit status it asked for (``SystemExit``), or None when it ran through."""
    import contextlib
    import os

    from ppl_models.runs import experiment

    module = experiment.load_example(script)
    here, program = os.getcwd(), sys.argv[0]
    os.chdir(cwd)
    sys.argv[0] = f"{script}.py"
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            parse = getattr(module, "parse_args", None) or module.parser().parse_args  # the benchmarks': parser()
            experiment.cli(module.main, parse, [str(a) for a in argv])
    except SystemExit as e:
        return e.code
    finally:
        os.chdir(here)
        sys.argv[0] = program
        pyro.clear_param_store()
    return None


def run_in_process(script, argv, cwd=ROOT):
    """Run ``examples/<script>.py`` as its command line does, in this test process: the same code path
    as ``python examples/<script>.py ARGV`` without starting an interpreter and importing torch again
    for every run. Returns what it printed. A run that exits (``SystemExit``) fails the test with the
    example's error. Commands that must run in a process of their own (torchrun, Ray) use a subprocess."""
    import io

    printed = io.StringIO()
    code = _command(script, argv, cwd, printed, sys.stderr)
    if code is not None:
        raise AssertionError(f"{script}.py {' '.join(map(str, argv))} exited {code}:\n{printed.getvalue()[-2000:]}")
    return printed.getvalue()


def refused_in_process(script, argv, cwd=ROOT, code=2):
    """Run ``examples/<script>.py ARGV`` as :func:`run_in_process` does, for a command that must be
    refused: it exits with ``code`` (2 for the command, 1 for the data; ``None``: any but 0), one
    line on stderr, no traceback (an exception that escapes the example's one-line handling fails
    the test). Returns that line. A few refusals stay real processes (``tests/test_examples.py``'s
    ``refused``), which also see what the interpreter itself would print."""
    import io

    err = io.StringIO()
    exited = _command(script, argv, cwd, io.StringIO(), err)
    if exited is None:
        raise AssertionError(f"{script}.py {' '.join(map(str, argv))} was not refused")
    assert (exited == code) if code is not None else exited != 0, \
        f"{script}.py exited {exited}, not {code or 'non-zero'}: {err.getvalue()[-2000:]}"
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err.getvalue(), err.getvalue()
    return lines[0]

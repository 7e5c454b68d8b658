"""One table from any set of runs: ``python -m ppl_models.runs.compare DIR_OR_FILE...``.

    python -m ppl_models.runs.compare results/vae                  # every run below results/vae
    python -m ppl_models.runs.compare results/vae/*iaf* results/vae/*diag* --sort test_log_px --desc
    python -m ppl_models.runs.compare results/ssvae --over seed    # mean and std over the seeds
    python -m ppl_models.runs.compare results/cvae --csv cvae.csv  # the same table as CSV too

Reads the ``results.json`` of each run (``ppl_models.runs.experiment``), and prints a Markdown table: the
run, only the settings that differ between the runs, the metrics (log-likelihoods and ELBOs per
example in nats, higher is better), epochs and training time. ``--over KEY`` merges the runs that
differ only in ``KEY`` (e.g. ``seed``) into one row: mean +- standard deviation, and the count.
"""
import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

from ppl_models.runs.experiment import RESULTS, Parser

FIRST_METRICS = ("test_log_px", "test_elbo", "test_error", "nn_log_px", "fid", "precision", "recall",
                 "label_fidelity", "eval_samples", "eval_images", "ess_mean", "khat_above_0_7")
RUN_COLUMNS = ("epochs", "eval_epoch", "train_seconds", "eval_seconds", "device")


def find_results(paths):
    """The ``results.json`` files at or below ``paths`` (sorted, without repeats)."""
    found = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif (p / RESULTS).is_file():
            found.append(p / RESULTS)
        elif p.is_dir():
            found.extend(sorted(p.rglob(RESULTS)))
        else:
            raise FileNotFoundError(f"{p} does not exist")
    return list(dict.fromkeys(found))


def flat(value):
    if isinstance(value, list):
        return ",".join(map(str, value))
    return value


def load_rows(files):
    """One dict per run: ``run``, ``settings.*`` (flattened), the scalar ``metrics``, the run columns."""
    rows = []
    for f in files:
        try:
            r = json.loads(Path(f).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{f} is not a readable results file ({e})") from None
        if "metrics" not in r or "settings" not in r:
            raise ValueError(f"{f} is not a results.json of ppl_models.runs.experiment (no settings/metrics)")
        row = {"run": str(Path(f).parent), "example": r.get("example")}
        row.update({f"settings.{k}": flat(v) for k, v in r["settings"].items()})
        row.update({k: v for k, v in r["metrics"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        row.update({k: r.get(k) for k in RUN_COLUMNS})
        rows.append(row)
    return rows


def group(rows, key):
    """Merge rows whose settings agree except ``settings.<key>``: numbers become (mean, std, n)."""
    key = f"settings.{key}"
    groups = {}
    for row in rows:
        ident = tuple(sorted((k, str(v)) for k, v in row.items() if k.startswith("settings.") and k != key))
        groups.setdefault(ident, []).append(row)
    merged = []
    for members in groups.values():
        out = {k: v for k, v in members[0].items() if k.startswith("settings.") or k in ("example", "device")}
        out[key] = ",".join(str(m.get(key)) for m in members)
        out["run"] = f"{len(members)} runs: " + ", ".join(Path(m["run"]).name for m in members)
        for k in {k for m in members for k in m} - set(out) - {"run"}:
            values = [m[k] for m in members if isinstance(m.get(k), (int, float))]
            if values:
                out[k] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))
        merged.append(out)
    return merged


def columns(rows, always=()):
    """run, the settings that differ (and ``always``), metrics (the usual ones first), the run columns."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    varying = [k for k in keys if k.startswith("settings.")
               and (len({str(r.get(k)) for r in rows}) > 1 or k[len("settings."):] in always)]
    metrics = [k for k in keys if not k.startswith("settings.") and k not in (*RUN_COLUMNS, "run", "example")]
    metrics = [k for k in FIRST_METRICS if k in metrics] + sorted(k for k in metrics if k not in FIRST_METRICS)
    return ["run", *varying, *metrics, *[k for k in RUN_COLUMNS if any(r.get(k) is not None for r in rows)]]


def cell(value, key=""):
    if key.startswith("settings."):
        return "" if value is None else str(value)
    if isinstance(value, tuple):  # (mean, std, n)
        mean, std, _ = value
        return cell(mean, key) if std == 0 else f"{cell(mean, key)} +- {cell(std, key)}"
    if key in ("train_seconds", "eval_seconds") and isinstance(value, (int, float)):
        return f"{value / 60:.1f} min"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4f}"
    return "" if value is None else str(value)


def markdown(rows, cols):
    head = [c.replace("settings.", "").replace("_seconds", "") for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c), c) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_csv(rows, cols, path):
    """The table as CSV: raw numbers, and ``mean +- std`` for merged rows."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([c.replace("settings.", "") for c in cols])
        for r in rows:
            w.writerow([cell(r.get(c), c) if isinstance(r.get(c), tuple) else r.get(c) for c in cols])


def sort_rows(rows, key, descending=False):
    """Rows by ``key`` (a (mean, std, n) by its mean); rows without the column last either way."""
    def value(row):  # numbers before text, so that mixed columns still sort
        v = row.get(key)
        v = v[0] if isinstance(v, tuple) else v
        return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))
    present = sorted((r for r in rows if r.get(key) is not None), key=value, reverse=descending)
    return present + [r for r in rows if r.get(key) is None]


def parse_args(argv=None):
    p = Parser(prog="python -m ppl_models.runs.compare", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="run folders, results.json files, or folders holding runs")
    p.add_argument("--over", metavar="SETTING", help="merge runs that differ only in SETTING (e.g. seed)")
    p.add_argument("--sort", metavar="COLUMN", help="sort by this column (a metric or a setting)")
    p.add_argument("--desc", action="store_true", help="sort in descending order")
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV")
    return p.parse_args(argv)


def main(args):
    files = find_results(args.paths)
    if not files:
        raise FileNotFoundError(f"no {RESULTS} under {' '.join(args.paths)}")
    rows = load_rows(files)
    if args.over:
        rows = group(rows, args.over)
    cols = columns(rows, always=(args.over,) if args.over else ())
    if args.sort:
        key = args.sort if args.sort in cols else f"settings.{args.sort}"
        if key not in cols:
            raise ValueError(f"--sort {args.sort}: no such column; choose one of "
                             f"{', '.join(c.replace('settings.', '') for c in cols)}")
        rows = sort_rows(rows, key, args.desc)
    table = markdown(rows, cols)
    print(table)
    if args.csv:
        write_csv(rows, cols, args.csv)
        print(f"\nwrote {args.csv}")
    return rows, cols


if __name__ == "__main__":
    try:
        main(parse_args())
    except (FileNotFoundError, ValueError) as e:
        print(f"python -m ppl_models.runs.compare: error: {e}", file=sys.stderr)
        sys.exit(2)

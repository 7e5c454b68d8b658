"""Runs: the experiment layer every example shares (``experiment``: flags, run folders, results.json,
rebuilding a run from its folder), tables over runs (``compare``), figures (``plots``), the benchmark
helper (``benchmark``)."""

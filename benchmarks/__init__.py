"""Benchmarks: one script per figure (``python -m benchmarks.<name>``), each beside a same-run baseline."""

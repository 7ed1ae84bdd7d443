"""Other projects' servers that the benchmarks compare notifier with (installed with ``pip install -e '.[peers]'``)."""

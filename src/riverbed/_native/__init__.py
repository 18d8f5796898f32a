"""Optional C helpers for hot loops, built by setup.py when a compiler is present; every one has
a Python reference implementation that is used when the helper is not built."""

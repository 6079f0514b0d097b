"""Benchmark of the quotes consumer against the real test servers (``python -m bench``)."""

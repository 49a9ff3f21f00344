"""Toroid's benchmarks: ``python -m bench`` (see :mod:`bench.__main__` and docs/performance.md).

Benchmarks measure and print; they never assert timings and are not part of the test suite.
"""

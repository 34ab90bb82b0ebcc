"""Benchmarks of certify: seeded instance generators (:mod:`benchmarks.instances`) and runners.

Run one with ``python -m benchmarks.<name> [--quick]``; see ``benchmarks/README.md``.
"""

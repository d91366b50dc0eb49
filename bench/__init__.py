"""Benchmark harness for tattletail: a synthetic CloudTrail bundle generator and a runner.

Run ``python -m bench.generate --help`` to build a bundle, ``python -m bench --help`` to
measure tattletail (and the ``jq`` CLI) against the decode floor on that bundle.
"""

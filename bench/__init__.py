"""Benchmarks: rebuild throughput and query latency, printed as ratios against baselines measured in the same run.

Run `python -m bench` (or `make bench`); `--quick` runs every scenario at a small size. See bench/README.md.
"""

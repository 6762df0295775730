"""`make bench`: throughput, latency and memory of `webhooks serve` on SQLite against a local receiver.

Run from the repository root as `python -m bench` (`--help` for the sizes of each phase).
"""

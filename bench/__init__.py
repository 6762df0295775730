"""`make bench`: throughput, latency and memory of the service against a local receiver, on SQLite (one
`webhooks serve`) and on PostgreSQL (an API-only `webhooks serve` with one, then two `webhooks dispatch`).

Run from the repository root as `python -m bench` (`--help` for the modes and the sizes of each phase).
"""

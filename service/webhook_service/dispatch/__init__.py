"""Delivering: the async sender pool, HTTP, retries, retention."""

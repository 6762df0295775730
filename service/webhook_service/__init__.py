"""The webhook delivery service: a gRPC API over a durable queue of signed deliveries."""

__version__ = "0.1.0"

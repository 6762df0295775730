"""Persistence: peewee models and queries. Nothing outside this package touches SQL."""

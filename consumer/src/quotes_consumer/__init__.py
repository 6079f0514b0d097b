"""Kafka quotes topic -> validated, enriched records in PostgreSQL and MongoDB."""

__version__ = "0.1.0"

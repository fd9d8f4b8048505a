"""Alembic migrations of the Collector's schema (run with ``collector db upgrade``)."""

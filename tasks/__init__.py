"""Celery tasks: thin wrappers that unpack arguments and call the domain in one transaction."""

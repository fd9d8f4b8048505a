"""``python -m bench``: the hot RPCs against bare Celery, on SQLite and PostgreSQL (see
``bench.rpcs``)."""

from bench.rpcs import main

main()

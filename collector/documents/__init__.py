"""Answer documents: the wire shapes of the original's ``to_hash`` family, in JSON.

Keys follow the original exactly; ids are canonical strings, times ISO-8601 UTC, NULL
text columns of taggable rows become ``""``. Builders take already-loaded rows: callers
load with ``selectinload`` so a document costs a bounded number of queries.
"""

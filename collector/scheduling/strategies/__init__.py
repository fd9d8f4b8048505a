"""The placement strategies: one Protocol per kind (``protocols.py``), each strategy a
frozen dataclass registered by name (``catalog.py``)."""

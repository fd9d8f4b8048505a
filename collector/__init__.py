"""collector: the control-plane Collector (the cloud database's only owner)."""

__version__ = "0.1.0"

"""Domain services: one module per endpoint; functions take a session first."""

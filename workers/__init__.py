"""Worker roles, the beat schedule and the reference agents."""

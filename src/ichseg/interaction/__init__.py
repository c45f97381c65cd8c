"""ichseg.interaction."""

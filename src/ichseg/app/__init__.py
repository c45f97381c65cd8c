"""ichseg.app."""

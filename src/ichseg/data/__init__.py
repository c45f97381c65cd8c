"""ichseg.data."""

"""ichseg.models."""

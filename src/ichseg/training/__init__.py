"""ichseg.training."""

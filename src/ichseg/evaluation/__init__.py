"""ichseg.evaluation."""

"""ichseg.preprocess."""

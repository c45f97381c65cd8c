"""ichseg.quantify."""

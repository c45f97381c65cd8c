"""Automatic (prompt-free) segmentation with trained ichseg models."""

from ichseg.inference.automatic import AutomaticPredictor

__all__ = ["AutomaticPredictor"]

"""ichseg: interactive 3D segmentation of intracerebral hemorrhage on head CT."""

__version__ = "0.1.0"

"""nnU-Net trainers shipped by ichseg; nnU-Net finds them through ``nnUNet_extTrainer``."""

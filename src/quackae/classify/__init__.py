"""Classify latents: the seed's MLP head by named recipes, the bag-of-tokens model, calibration."""

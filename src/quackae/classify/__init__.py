"""Classify latents: the original research's MLP head, the bag-of-tokens baseline, calibration."""

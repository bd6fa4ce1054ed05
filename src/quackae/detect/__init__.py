"""Find censorship no fingerprint names: detector, cluster evidence, proposed signatures.

Modules, in the one-way order they import each other: ``features`` (per-row evidence read from a
dataset), ``detector`` (fit, calibrate, predict with reasons), ``proposals`` (cluster candidate
pages, propose and verify signatures), ``evaluate`` (leave-family-out evaluation on generated
data; the only one that imports ``quackae.synth``).
"""

"""Find censorship no fingerprint names: detector, cluster evidence, proposed signatures.

Modules, in the one-way order they import each other: ``features`` (per-row evidence read from a
dataset), ``neighbours`` (cluster evidence over latent neighbours), ``detector`` (fit, calibrate,
predict with reasons), ``proposals`` (cluster candidate pages, propose and verify signatures),
``pipeline`` (train and predict on a dataset folder). The leave-family-out harness that scores
this package lives in ``quackae.synth.evaluate``.
"""

"""The autoencoder stage: the GRU kernels, ``QuackAutoEncoder``, its data module and the controller.

The seed's names stay importable at the top of the package: ``quackae.autoencoder``,
``quackae.cp_tokenized_data`` and ``quackae.ae_processor`` re-export this package's classes.
"""

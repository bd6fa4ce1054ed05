"""The seed's module name: ``QuackAutoEncoder`` and ``AutoencoderWriter`` (``quackae.model``)."""

from quackae.model.autoencoder import AutoencoderWriter, QuackAutoEncoder

__all__ = ["AutoencoderWriter", "QuackAutoEncoder"]

"""The seed's module name: ``QuackTokenizedDataModule`` (``quackae.model.datamodule``)."""

from quackae.model.datamodule import QuackTokenizedDataModule

__all__ = ["QuackTokenizedDataModule"]

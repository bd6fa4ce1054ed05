"""What Lightning prints while quackae trains: a truthful progress bar, a summary without noise.

Lightning's defaults print, for every run: product tips (``rank_zero_info`` "Tip: ... litlogger"
and "... litmodels", from its logger and callback connectors), "GPU available" lines, a model
summary whose FLOPs column and "Total FLOPs" are 0 (they are counted only for a model with an
``example_input_array``, which ours has not), a zero-based "Epoch 1/1" in a two-epoch run
(``RichProgressBar``), and ``v_num``, the last four characters of the logger's version (our
CSV version is the experiment label: "autoencoder-train" shows as "rain"). ``quiet_lightning``
drops Lightning's INFO records; ``console_callbacks`` replaces its bar and summary.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from lightning.pytorch.callbacks import ModelSummary, TQDMProgressBar
from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

#: Lightning's loggers whose INFO records are tips and notices, not results.
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning")


def quiet_lightning() -> None:
    """Keep Lightning's warnings and errors, drop its INFO records (tips, device notices)."""
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


class EpochProgressBar(TQDMProgressBar):
    """tqdm's bar on stderr, saying "Epoch 2/2" (one-based, of ``max_epochs``), without v_num."""

    def on_train_epoch_start(self, trainer, *args: Any) -> None:
        """Lightning's, with the epoch counted from one and the total shown when finite."""
        super().on_train_epoch_start(trainer, *args)
        total = trainer.max_epochs
        shown = f"{trainer.current_epoch + 1}/{total}" if total and total > 0 else ""
        self.train_progress_bar.set_description(f"Epoch {shown or trainer.current_epoch + 1}")

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        """The logged metrics only: the logger's version (``v_num``) is no metric."""
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


class PlainModelSummary(ModelSummary):
    """Lightning's layer table on stderr, without the FLOPs it did not count (all zero)."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        """Print the table; FLOPs only when Lightning counted some."""
        if not total_flops:
            summary_data = [column for column in summary_data if column[0] != "FLOPs"]
        table = _format_summary_table(
            total_parameters,
            trainable_parameters,
            model_size,
            total_training_modes,
            total_flops,
            *summary_data,
        )
        if not total_flops:
            table = "\n".join(ln for ln in table.splitlines() if "total flops" not in ln.lower())
        print(table, file=sys.stderr, flush=True)


def console_callbacks(progress_bar: bool | None, model_summary: bool | None) -> list:
    """The bar and the summary a Trainer gets, each only when the Trainer shows one.

    The arguments are the Trainer's ``enable_progress_bar`` and ``enable_model_summary``, whose
    default None means on.
    """
    progress_bar, model_summary = progress_bar is not False, model_summary is not False
    return [
        *([EpochProgressBar()] if progress_bar else []),
        *([PlainModelSummary()] if model_summary else []),
    ]

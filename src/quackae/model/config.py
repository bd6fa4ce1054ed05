"""One typed configuration for training and encoding: ``ControllerConfig``.

The command line fills it (``build_parser`` then ``from_namespace``); Python callers (the demo,
the evaluation, tests) build it directly; Ray workers receive it whole. The seed's 15 flags keep
their names and defaults. Lightning's own Trainer arguments are flags too, read from the
signature of ``lightning.pytorch.Trainer.__init__`` in Lightning's source with ``ast`` (as the
removed ``Trainer.add_argparse_args`` did from the signature), so ``--help`` needs no torch.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

#: Trainer arguments the controller sets itself, and what to pass instead of each.
CONTROLLER_OWNED = {
    "logger": "the controller's logger (--logger comet|csv, --comet_offline DIR)",
    "callbacks": "the controller's callbacks (checkpoints, early stopping, LR monitor, device "
    "stats)",
    "plugins": "the controller's Ray environment plugin (--ray_nodes N)",
    "strategy": "Ray Train's strategy (--ray_nodes N workers, or 0 to train in this process)",
    "use_distributed_sampler": "the data module's own rank sharding (always off here)",
    "enable_checkpointing": "the controller's ModelCheckpoint (--checkpoint_every_n_steps)",
}


def _field(default: Any, help: str, group: str = "seed", **kw: Any) -> Any:
    """A config field with its flag's help text and group (``seed`` or ``quackae``)."""
    meta = {"help": help, "group": group, **kw}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ControllerConfig:
    """Everything one ``ae_processor`` run (training or ``--encode``) needs."""

    # the seed's flags: names and defaults as ae_processor.md gives them
    data_dir: str = _field("./data", "dataset directory written by `quackae flatten`, or its URI")
    batch_size: int = _field(4, "sequences per batch")
    num_workers: int = _field(0, "DataLoader worker processes")
    embed_size: int = _field(128, "token embedding size of QuackAutoEncoder")
    hidden_size: int = _field(512, "hidden (latent) size of QuackAutoEncoder")
    encode: bool = _field(
        False, "run the inference loop (needs --checkpoint_path) instead of training"
    )
    filtered: bool = _field(
        False, "with --encode: only labelled records, uncensored subsampled to balance the censored"
    )
    evaluate: bool = _field(
        False, "with --encode: only undetermined records (wins over --filtered)"
    )
    checkpoint_path: str | None = _field(
        None,
        "checkpoint whose weights start training (manual restart) or drive --encode; "
        "only the weights are used",
    )
    storage_path: str = _field(
        "./data/encoded", "where checkpoints and logs (training) or embedding shards (--encode) go"
    )
    l_rate: float = _field(1e-1, "AdamW learning rate")
    l_rate_min: float = _field(1e-3, "cosine schedule's final learning rate")
    l_rate_max_epoch: int = _field(-1, "cosine schedule length in epochs; -1 = --max_epochs")
    exp_label: str = _field("autoencoder-train", "experiment label passed to the logger")
    ray_nodes: int = _field(
        4, "Ray Train workers of one CPU each; 0 runs in this process without Ray"
    )

    # quackae's additions
    resume: str | None = _field(
        None,
        "continue a killed run with optimizer and epoch state, from CKPT or from "
        "<storage_path>/last.ckpt",
        "quackae",
        nargs="?",
        const="last",
        metavar="CKPT",
    )
    ray_address: str | None = _field(
        None,
        "join an existing Ray cluster (default: $RAY_ADDRESS, else a local one)",
        "quackae",
        env="RAY_ADDRESS",
    )
    allow_open_cluster: bool = _field(
        False,
        "join a --ray_address cluster that is not on this machine even if it needs no token "
        "(anyone who reaches it can run code there); an open cluster is always reported",
        "quackae",
    )
    max_failures: int = _field(
        2,
        "Ray Train restarts from the last checkpoint after a worker dies, this many times",
        "quackae",
    )
    latent: str = _field(
        "final",
        "with --encode: the feature written per record: the encoder's final states (the "
        "seed's latent) or its states averaged over the record's text tokens",
        "quackae",
        choices=("final", "mean"),
    )
    layers: int = _field(1, "decoder GRU layers", "quackae")
    teacher_forcing: float = _field(
        0.5, "probability a training batch is teacher-forced rather than sampled", "quackae"
    )
    bucketing: bool = _field(
        False, "batch sequences of similar length together to cut padding", "quackae"
    )
    seed: int = _field(
        1234, "seeds the 70/10/20 split, shuffling, --filtered sampling and weights", "quackae"
    )
    patience: int = _field(10, "early-stopping patience in validation checks", "quackae")
    checkpoint_every_n_steps: int | None = _field(
        None,
        "also checkpoint every N training steps (ModelCheckpoint every_n_train_steps)",
        "quackae",
    )
    logger: str = _field(
        "auto",
        "auto: Comet when COMET_API_KEY or --comet_offline is set, else CSV",
        "quackae",
        choices=("auto", "comet", "csv"),
    )
    comet_offline: str | None = _field(
        None,
        "log a Comet experiment offline into DIR (needs the comet extra)",
        "quackae",
        metavar="DIR",
    )

    # Lightning Trainer arguments the user set (the rest keep the Trainer's defaults)
    trainer: dict[str, Any] = field(default_factory=dict)

    def trainer_arg(self, name: str) -> Any:
        """A Trainer argument as the Trainer will see it: the user's value, else its default."""
        if name in self.trainer:
            return self.trainer[name]
        return trainer_parameters()[name].default

    def replace(self, **changes: Any) -> ControllerConfig:
        """A copy with ``changes``; Trainer arguments go by their own names too."""
        own = {f.name for f in dataclasses.fields(self)}
        trainer = {**self.trainer, **{k: v for k, v in changes.items() if k not in own}}
        return dataclasses.replace(
            self, **{k: v for k, v in changes.items() if k in own}, trainer=trainer
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (what a Ray worker receives; ``from_dict`` rebuilds it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ControllerConfig:
        """The config ``to_dict`` gave."""
        return cls(**values)


# --------------------------------------------------------------------------- Trainer flags


@dataclass(frozen=True)
class TrainerParameter:
    """One argument of ``Trainer.__init__``: its name, annotation (source text) and default."""

    name: str
    annotation: str
    default: Any
    literal_default: bool  # False: the default is not a plain value; it is never passed


@lru_cache(maxsize=1)
def trainer_parameters() -> dict[str, TrainerParameter]:
    """Every keyword of ``lightning.pytorch.Trainer.__init__``, read from its source file."""
    # find_spec of the top package only: a submodule's spec would import (and run) lightning
    spec = importlib.util.find_spec("lightning")
    if spec is None or spec.origin is None:
        raise RuntimeError("lightning is not installed: pip install 'lightning>=2.4,<3'")
    source = Path(spec.origin).parent / "pytorch" / "trainer" / "trainer.py"
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    init = next(
        node
        for cls in tree.body
        if isinstance(cls, ast.ClassDef) and cls.name == "Trainer"
        for node in cls.body
        if isinstance(node, ast.FunctionDef) and node.name == "__init__"
    )
    args = init.args.kwonlyargs or init.args.args[1:]
    defaults = init.args.kw_defaults if init.args.kwonlyargs else init.args.defaults
    out = {}
    for arg, default in zip(args, defaults, strict=True):
        try:
            value, literal = ast.literal_eval(default), True
        except ValueError:
            value, literal = ast.unparse(default), False
        annotation = ast.unparse(arg.annotation) if arg.annotation is not None else ""
        out[arg.arg] = TrainerParameter(arg.arg, annotation, value, literal)
    return out


def parse_trainer_value(text: str) -> Any:
    """A Trainer flag's value: None, a bool, an int, a float, ``{"hours": 1}`` or the string."""
    low = text.strip().lower()
    if low == "none":
        return None
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.strip().startswith(("{", "[")):
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            pass
    return text


def _owned(name: str) -> type[argparse.Action]:
    """An action refusing a Trainer argument the controller sets, saying what to pass instead."""

    class Owned(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None) -> None:
            parser.error(f"--{name} is set by the controller: use {CONTROLLER_OWNED[name]}")

    return Owned


def add_trainer_arguments(parser: argparse.ArgumentParser) -> None:
    """Every ``Trainer.__init__`` keyword as a flag; unset ones keep the Trainer's defaults."""
    group = parser.add_argument_group(
        "Lightning Trainer",
        "Trainer(...) arguments, typed as Lightning annotates them; a flag "
        "left out keeps the Trainer's default",
    )
    taken = {opt for action in parser._actions for opt in action.option_strings}
    for p in trainer_parameters().values():
        if f"--{p.name}" in taken:  # quackae's own flag of that name (--logger) comes first
            continue
        if p.name in CONTROLLER_OWNED:
            group.add_argument(
                f"--{p.name}", action=_owned(p.name), nargs="?", help=argparse.SUPPRESS
            )
            continue
        group.add_argument(
            f"--{p.name}",
            type=parse_trainer_value,
            default=p.default if p.literal_default else argparse.SUPPRESS,
            metavar=_metavar(p.annotation),
            help=f"{p.annotation or 'any'} (default: "
            f"{p.default if p.literal_default else 'Lightning' + chr(39) + 's'})".replace(
                "%", "%%"
            ),
        )


def _metavar(annotation: str) -> str:
    """A short metavar of an annotation: ``Optional[int]`` -> INT, ``Union[int, float]`` -> NUM."""
    a = annotation.replace("Optional[", "").replace("typing.", "")
    if a.startswith(("int", "Union[int, float")) or a in ("int]",):
        return "INT" if a.startswith("int") else "NUM"
    if a.startswith("bool"):
        return "BOOL"
    if a.startswith(("str", "Union[str")):
        return "STR"
    return "VALUE"


# --------------------------------------------------------------------------- the parser


def build_parser(prog: str = "python -m quackae.ae_processor") -> argparse.ArgumentParser:
    """The controller's parser: the seed's flags, quackae's additions, every Trainer argument."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train QuackAutoEncoder on a quackae dataset, or with --encode write the "
        "latent feature of every (or every selected) record.",
    )
    groups = {
        "seed": p.add_argument_group("the seed's flags (ae_processor.md: names and defaults)"),
        "quackae": p.add_argument_group("quackae additions"),
    }
    for f in dataclasses.fields(ControllerConfig):
        if f.name == "trainer":
            continue
        meta = dict(f.metadata)
        group = groups[meta.pop("group")]
        help_text = meta.pop("help")
        env = meta.pop("env", None)
        default = os.environ.get(env, f.default) if env else f.default
        if f.type in ("bool", bool):
            group.add_argument(f"--{f.name}", action="store_true", help=help_text)
            continue
        kind = {"int": int, "float": float, "int | None": int}.get(str(f.type), str)
        shown = " (default: %(default)s)"
        group.add_argument(
            f"--{f.name}", type=kind, default=default, help=help_text + shown, **meta
        )
    add_trainer_arguments(p)
    return p


def from_namespace(args: argparse.Namespace) -> ControllerConfig:
    """The config of parsed arguments (``build_parser``'s, or any namespace with those names)."""
    if isinstance(args, ControllerConfig):
        return args
    values = vars(args)
    own = {f.name for f in dataclasses.fields(ControllerConfig)} - {"trainer"}
    # a Trainer argument goes to the Trainer when it differs from the Trainer's own default
    trainer = {
        name: values[name]
        for name, p in trainer_parameters().items()
        if name in values
        and name not in own
        and name not in CONTROLLER_OWNED
        and not (p.literal_default and values[name] == p.default)
    }
    return ControllerConfig(**{k: v for k, v in values.items() if k in own}, trainer=trainer)


def parse(argv: list[str] | None = None) -> ControllerConfig:
    """``build_parser().parse_args(argv)`` as a config."""
    return from_namespace(build_parser().parse_args(argv))


__all__ = [
    "CONTROLLER_OWNED",
    "ControllerConfig",
    "TrainerParameter",
    "add_trainer_arguments",
    "build_parser",
    "from_namespace",
    "parse",
    "parse_trainer_value",
    "trainer_parameters",
]

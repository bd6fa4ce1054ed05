"""One typed configuration for training and encoding: ``ControllerConfig``.

The command line fills it (``build_parser`` then ``from_namespace``); Python callers (the demo,
the evaluation, tests) build it directly; Ray workers receive it whole. The seed's 15 flags keep
their names and defaults (``--l_rate_max_epoch -1`` keeps its value, not its effect: see
docs/departures.md). Every argument of ``lightning.pytorch.Trainer.__init__`` is a flag too,
read from its signature in Lightning's source with ``ast`` (as the removed
``Trainer.add_argparse_args`` read the signature), typed from its annotation, so ``--help``
needs no torch; the ones the controller sets itself refuse a value in one line.
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

#: Epochs a training run stops after when no --max_epochs, --max_steps or --max_time is given
#: (Lightning's own default is 1000 epochs, which reads as a hang to a new user).
DEFAULT_MAX_EPOCHS = 20
STOP_ARGUMENTS = ("max_epochs", "max_steps", "max_time")

#: Trainer arguments the controller sets itself, and what to pass instead of each.
CONTROLLER_OWNED = {
    "logger": "the controller's logger (--logger comet|csv, --comet_offline DIR)",
    "callbacks": "the controller's callbacks (--checkpoint_every_n_steps, --patience, "
    "--stopping_threshold; LR monitor and device stats are always on)",
    "plugins": "the controller's Ray environment plugin (--ray_nodes N)",
    "strategy": "Ray Train's strategy (--ray_nodes N workers, or 0 to train in this process)",
    "use_distributed_sampler": "the data module's own rank sharding (always off here)",
    "enable_checkpointing": "the controller's ModelCheckpoint (--checkpoint_every_n_steps N, 0 = "
    "after every validation)",
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
    batch_size: int = _field(4, "sequences per training batch (--encode: --encode_batch_size)")
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
    l_rate_max_epoch: int = _field(
        -1,
        "cosine schedule length in epochs; -1 = the Trainer's --max_epochs (the seed passed -1 to "
        "CosineAnnealingLR, which then swings between --l_rate and --l_rate_min every epoch; "
        "--l_rate_max_epoch 1 gives that swing)",
    )
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
    encode_batch_size: int = _field(
        64,
        "with --encode: sequences per batch (inference keeps no gradients, so batches can be "
        "larger than the seed's training --batch_size: 64 encoded 4.1x faster than 4, latents "
        "equal to 1e-5; benchmarks/encode_batch.py)",
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
        0.5,
        "probability a batch is teacher-forced rather than sampled (the seed's coin is 0.5); "
        "training, and validation and test with --eval_decoding coin",
        "quackae",
    )
    sampling: str = _field(
        "multinomial",
        "how a sampled training batch picks each next decoder input: a draw from the softmax "
        "of the prediction (the seed's torch.multinomial) or its argmax",
        "quackae",
        choices=("multinomial", "greedy"),
    )
    bucketing: bool = _field(
        False, "batch sequences of similar length together to cut padding", "quackae"
    )
    seed: int = _field(
        1234, "seeds the 70/10/20 split, shuffling, --filtered sampling and weights", "quackae"
    )
    patience: int = _field(
        10,
        "early stopping: validation checks without a better val_loss_seed (the seed's 10)",
        "quackae",
    )
    stopping_threshold: float | None = _field(
        200.0,
        "early stopping: stop at once when val_loss_seed (the seed's loss scale: per-step mean "
        "cross-entropy summed over decode steps) reaches this; the seed's 200; none disables",
        "quackae",
    )
    checkpoint_every_n_steps: int | None = _field(
        2000,
        "checkpoint every N training steps, top 3 by val_loss_seed and last (the seed's 2000); 0 = "
        "after every validation instead; the end of training always writes one",
        "quackae",
    )
    test_weights: str = _field(
        "final",
        "weights of the post-fit test: final (the seed's trainer.test(model)) or best (the best "
        "checkpoint by val_loss_seed)",
        "quackae",
        choices=("final", "best"),
    )
    eval_decoding: str = _field(
        "coin",
        "how validation and test decode: coin (the seed's: per batch, teacher-forced with "
        "probability --teacher_forcing, else sampled; the coin is seeded per batch index) or "
        "forced (always teacher-forced)",
        "quackae",
        choices=("coin", "forced"),
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

    def trainer_settings(self) -> dict[str, Any]:
        """The Trainer arguments of this run: the user's, and ``DEFAULT_MAX_EPOCHS`` unless the
        user set when to stop (``--max_epochs``, ``--max_steps`` or ``--max_time``)."""
        settings = dict(self.trainer)
        if not any(name in settings for name in STOP_ARGUMENTS):
            settings["max_epochs"] = DEFAULT_MAX_EPOCHS
        return settings

    def trainer_arg(self, name: str) -> Any:
        """A Trainer argument as the Trainer will see it: this run's value, else its default."""
        settings = self.trainer_settings()
        if name in settings:
            return settings[name]
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


#: What each name in a Trainer annotation accepts on the command line. Lightning's aliases are
#: spelled out (``_PATH`` is ``str | Path``, ``_PRECISION_INPUT`` is ``16 | "bf16-mixed" | ...``);
#: any other class (``Accelerator``, ``Strategy``, ``Profiler``) is given by its registry name.
ANNOTATION_KINDS = {
    "None": {"none"},
    "Optional": {"none"},
    "bool": {"bool"},
    "int": {"int"},
    "float": {"float"},
    "str": {"str"},
    "Path": {"str"},
    "_PATH": {"str"},
    "_LITERAL_WARN": {"str"},
    "_PRECISION_INPUT": {"int", "str"},
    "timedelta": {"dict"},
    "dict": {"dict"},
    "list": {"list"},
}
_CONTAINERS = {"Union", "Optional", "Literal", "Iterable", "typing", "collections", "abc"}


def annotation_kinds(annotation: str) -> frozenset[str]:
    """The value kinds (none, bool, int, float, str, dict, list) an annotation's text accepts."""
    if not annotation:
        return frozenset({"none", "bool", "int", "float", "str", "dict", "list"})
    kinds: set[str] = set()
    for node in ast.walk(ast.parse(annotation, mode="eval")):
        name = node.id if isinstance(node, ast.Name) else None
        if isinstance(node, ast.Attribute):
            name = node.attr
        if isinstance(node, ast.Constant) and node.value is None:
            name = "None"
        if name is None or (name in _CONTAINERS and name != "Optional"):
            continue
        kinds |= ANNOTATION_KINDS.get(name, {"str"})  # a class: given by name
    return frozenset(kinds)


def parse_trainer_value(text: str, kinds: frozenset[str] | None = None) -> Any:
    """A Trainer flag's value as the first kind of ``kinds`` that reads it.

    Tried in order: None, a bool (true/false), an int, a float, a dict or list literal
    (``{"hours": 1}``), the string itself. Raises ``argparse.ArgumentTypeError`` when no kind
    the annotation allows reads the text.
    """
    kinds = annotation_kinds("") if kinds is None else kinds
    low = text.strip().lower()
    if "none" in kinds and low == "none":
        return None
    if "bool" in kinds and low in ("true", "false"):
        return low == "true"
    for kind, cast in (("int", int), ("float", float)):
        if kind in kinds:
            try:
                return cast(text)
            except ValueError:
                pass
    if kinds & {"dict", "list"} and text.strip().startswith(("{", "[")):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        wanted = {dict: "dict", list: "list"}.get(type(value))
        if wanted in kinds:
            return value
    if "str" in kinds:
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not one of: {', '.join(sorted(kinds))}")


def _typed(p: TrainerParameter) -> Any:
    """The argparse ``type`` of one Trainer argument: its annotation's kinds, named for errors."""
    kinds = annotation_kinds(p.annotation)

    def parse(text: str) -> Any:
        return parse_trainer_value(text, kinds)

    parse.__name__ = p.annotation or "value"  # argparse names the type in "invalid <type> value"
    return parse


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
        "every Trainer(...) argument, typed as Lightning annotates it; a flag "
        "left out keeps the Trainer's default",
    )
    taken = {opt for action in parser._actions for opt in action.option_strings}
    for p in trainer_parameters().values():
        if f"--{p.name}" in taken:  # quackae's own flag of that name (--logger) comes first
            continue
        if p.name in CONTROLLER_OWNED:
            use = CONTROLLER_OWNED[p.name].replace("%", "%%")
            group.add_argument(
                f"--{p.name}",
                action=_owned(p.name),
                nargs="?",
                metavar="VALUE",
                help=f"set by the controller (no default to change): use {use}",
            )
            continue
        shown = p.default if p.literal_default else "Lightning's"
        if p.name == "max_epochs":
            shown = f"{DEFAULT_MAX_EPOCHS} unless --max_steps or --max_time is given"
        group.add_argument(
            f"--{p.name}",
            type=_typed(p),
            default=p.default if p.literal_default else argparse.SUPPRESS,
            metavar=_metavar(p.annotation),
            help=f"{p.annotation or 'any'} (default: {shown})".replace("%", "%%"),
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


def build_parser(
    prog: str = "python -m quackae.ae_processor",
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    """The controller's parser: the seed's flags, quackae's additions, every Trainer argument.

    ``parser_class``: the command line's ``quackae.cli.args.Parser`` (dashed aliases).
    """
    p = parser_class(
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
        kind = {"int": int, "float": float, "int | None": int, "float | None": optional_float}.get(
            str(f.type), str
        )
        shown = " (default: %(default)s)"
        group.add_argument(
            f"--{f.name}", type=kind, default=default, help=help_text + shown, **meta
        )
    add_trainer_arguments(p)
    return p


def optional_float(text: str) -> float | None:
    """A float flag that also takes ``none`` (off)."""
    return None if text.strip().lower() == "none" else float(text)


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
    "DEFAULT_MAX_EPOCHS",
    "STOP_ARGUMENTS",
    "ControllerConfig",
    "ANNOTATION_KINDS",
    "TrainerParameter",
    "add_trainer_arguments",
    "annotation_kinds",
    "build_parser",
    "from_namespace",
    "parse",
    "parse_trainer_value",
    "trainer_parameters",
]

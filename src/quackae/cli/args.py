"""The argparse conventions of every quackae command, in one parser class.

Flags are spelled with underscores, as the seed's are (``--storage_path``); ``Parser`` also
accepts the dashed spelling (``--storage-path``) of each, and old spellings registered with
``deprecate`` (``--out``), which print one line naming the new flag. Neither appears in
``--help``. A mistake is one line: ``prog: error: ...``, naming the flag a misspelt one was
probably meant to be, and pointing at ``--help`` instead of printing the usage. Subparsers made
from a ``Parser`` are ``Parser``s too (argparse's default).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` taking dashed aliases of underscored flags and deprecated spellings."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.deprecated: dict[str, str] = {}  # old flag -> the flag that replaced it
        self._unknown: list[str] = []  # flags of the last parse that no option spells

    def deprecate(self, old: str, new: str) -> None:
        """Accept ``old`` as a hidden alias of ``new``, with a one-line deprecation on stderr."""
        self.deprecated[old] = new

    def parse_known_args(self, args: Sequence[str] | None = None, namespace=None):
        """argparse's, after dashed and deprecated spellings are rewritten to the house style."""
        argv = self._rewrite(list(sys.argv[1:] if args is None else args))
        known = self._known()
        self._unknown = [a.partition("=")[0] for a in argv if a.startswith("--")]
        self._unknown = [a for a in self._unknown if a not in known and a != "--"]
        return super().parse_known_args(argv, namespace)

    def parse_args(self, args: Sequence[str] | None = None, namespace=None):
        """argparse's; an unknown flag is reported by the (sub)command it was given to."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._chosen(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _chosen(self, parsed: argparse.Namespace) -> Parser:
        """The innermost subcommand's parser that ``parsed`` went through (self if none)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                sub = action.choices.get(getattr(parsed, action.dest, None) or "")
                if isinstance(sub, Parser):
                    return sub._chosen(parsed)
        return self

    def error(self, message: str) -> NoReturn:
        """One line on stderr, exit 2: the problem, a likely misspelling, where help is."""
        hints = []
        for flag in self._unknown:
            close = difflib.get_close_matches(flag, sorted(self._known()), n=1, cutoff=0.7)
            if close:
                hints.append(f"{flag} is not a flag of {self.prog}: did you mean {close[0]}?")
        text = "; ".join([message, *hints, f"see {self.prog} --help"])
        self.exit(2, f"{self.prog}: error: {text}\n")

    def _known(self) -> set[str]:
        return {opt for action in self._actions for opt in action.option_strings}

    def _rewrite(self, argv: list[str]) -> list[str]:
        known = self._known()
        out: list[str] = []
        for i, arg in enumerate(argv):
            if arg == "--":
                return out + argv[i:]
            if not arg.startswith("--") or arg in known:
                out.append(arg)
                continue
            flag, eq, value = arg.partition("=")
            new = self._house_flag(flag, known)
            out.append(new + eq + value if new else arg)
        return out

    def _house_flag(self, flag: str, known: set[str]) -> str | None:
        """The registered spelling of ``flag`` (None when it has none: argparse reports it)."""
        if flag in known:
            return flag
        if flag in self.deprecated:
            new = self.deprecated[flag]
            print(f"{self.prog}: warning: {flag} is deprecated; use {new}", file=sys.stderr)
            return new
        underscored = "--" + flag[2:].replace("-", "_")
        if underscored != flag and underscored in known:
            return underscored
        if underscored in self.deprecated:
            return self._house_flag(underscored, known)
        return None


def subparsers(parser: argparse.ArgumentParser, dest: str, metavar: str):
    """Required subcommands of ``parser`` whose parsers are ``Parser``s."""
    return parser.add_subparsers(dest=dest, required=True, metavar=metavar, parser_class=Parser)

"""The one rule for folders quackae writes, and one-line checks of the paths a user passes.

Every command that writes takes a folder (``--storage_path``) and writes only into a folder
that is new, empty, or made by the same command before (so a rerun resumes or replaces its own
output). A non-empty folder of other files is refused before anything is created: quackae never
writes beside a user's files, and never deletes them. A folder is recognised as quackae's by
``MARKER``, a small JSON file naming the command that made it, or by the file each kind of
output has always held (a dataset's ``manifest.json``, ``train_summary.json``, ...) for folders
made before the marker existed. docs/safety.md states the rule for users.

The errors are ``FolderError``, a ``StoreError``: every command prints them as one line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from quackae.io import atomic, storage
from quackae.io.storage import Location

MARKER = ".quackae-folder.json"

__all__ = [
    "MARKER",
    "FolderError",
    "check_output",
    "claim_output",
    "foreign_entries",
    "input_file",
    "input_folder",
    "refuse_foreign",
]


class FolderError(atomic.StoreError):
    """A path that cannot be used as given; the message is one line naming it and the remedy."""


def _named(flag: str, target: object) -> str:
    """How a message names what the user passed: ``--storage_path DIR``, or DIR for a positional."""
    return f"{flag} {target}" if flag else str(target)


def _location(target: str | os.PathLike[str] | Location, flag: str) -> Location:
    if isinstance(target, Location):
        return target
    try:
        return storage.resolve(target)
    except storage.StorageError as e:
        raise FolderError(f"{_named(flag, e)}") from None


def _top_names(loc: Location) -> set[str] | None:
    """Top-level entry names of a folder (None when it does not exist); a file raises."""
    if not loc.remote:
        path = Path(loc.path)
        if not path.exists():
            return None
        if not path.is_dir():
            return set()  # the caller reports the file
        return {p.name for p in path.iterdir()}
    start = len(loc.path.rstrip("/")) + 1
    names = {child.path[start:].split("/", 1)[0] for child in loc.list_files()}
    return names or None


def _is_file(loc: Location) -> bool:
    return Path(loc.path).is_file() if not loc.remote else loc.is_file()


def foreign_entries(names: Iterable[str], ours: Iterable[str] = ()) -> list[str]:
    """The names that are not quackae's: neither in ``ours``, the lock, a temp nor the marker."""
    own = {atomic.LOCK_FILE, MARKER, *ours}
    return sorted(n for n in names if n not in own and not atomic.is_temp(n))


def refuse_foreign(where: object, foreign: list[str], flag: str, made_by: str) -> None:
    """Raise the one-line refusal of a non-empty folder of other files (nothing if none)."""
    if not foreign:
        return
    raise FolderError(
        f"{_named(flag, where)} is not empty ({len(foreign)} entries, e.g. {foreign[0]}) and was "
        f"not made by {made_by}; pass a new or empty folder: quackae never writes into a folder of "
        "other files"
    )


def _marker_command(loc: Location) -> str | None:
    """The command the folder's marker names, or None without a (readable) marker."""
    marker = loc.child(MARKER)
    if not _is_file(marker):
        return None
    try:
        return str(json.loads(marker.read_bytes()).get("written_by", ""))
    except (OSError, ValueError, AttributeError, storage.StorageError):
        return ""


def check_output(
    target: str | os.PathLike[str] | Location,
    flag: str,
    command: str,
    proof: Iterable[str] = (),
) -> Location:
    """Refuse ``target`` unless it is a new, empty or ``command``-made folder; nothing is written.

    Parameters
    ----------
    target
        The folder the user named (a local path or an object-store URI).
    flag
        The flag that named it, for the message (``--storage_path``).
    command
        What writes it (``quackae detect train``); a marker of another command is refused.
    proof
        Names whose presence shows an older ``command`` output (made before the marker).
    """
    loc = _location(target, flag)
    if _is_file(loc):
        raise FolderError(
            f"{_named(flag, target)} is a file, not a folder; pass a folder (new, or empty) for "
            f"{command} to write into"
        )
    names = _top_names(loc)
    if not names:
        return loc
    made_by = _marker_command(loc)
    if made_by is not None and made_by != command:
        raise FolderError(
            f"{_named(flag, target)} holds the output of "
            f"`{made_by or 'another quackae command'}`, not of `{command}`; pass a new or empty "
            "folder so neither overwrites the other"
        )
    if made_by is None and not (set(proof) & names):
        refuse_foreign(target, foreign_entries(names), flag, f"`{command}`")
    return loc


def claim_output(
    target: str | os.PathLike[str] | Location,
    flag: str,
    command: str,
    proof: Iterable[str] = (),
) -> Location:
    """``check_output``, then create the folder and mark it as ``command``'s (idempotent)."""
    loc = check_output(target, flag, command, proof)
    loc.makedirs()
    marker = loc.child(MARKER)
    if _marker_command(loc) != command:
        text = {"written_by": command, "note": "quackae may replace what this folder holds"}
        marker.write_bytes((json.dumps(text, indent=1) + "\n").encode())
    return loc


def input_folder(target: str | os.PathLike[str], flag: str, what: str) -> Path:
    """A local folder the user passed to read, or a one-line error saying what belongs there."""
    path = Path(target)
    if not path.exists():
        raise FolderError(f"{_named(flag, target)}: no such folder; pass {what}")
    if not path.is_dir():
        raise FolderError(f"{_named(flag, target)} is a file, not a folder; pass {what}")
    return path


def input_file(target: str | os.PathLike[str], flag: str, what: str) -> Path:
    """A local file the user passed to read, or a one-line error saying what belongs there."""
    path = Path(target)
    if path.is_dir():
        raise FolderError(f"{_named(flag, target)} is a folder, not a file; pass {what}")
    if not path.is_file():
        raise FolderError(f"{_named(flag, target)}: no such file; pass {what}")
    return path

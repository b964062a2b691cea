"""Errors that are the user's to fix, not the code's: a data set that was never made, a checkpoint that is not
installed, an option out of range. The CLI prints their message as one `error: ...` line and exits 2; anything
else is a bug and keeps its traceback. The message says what is wrong and the command that fixes it."""
from __future__ import annotations

MAKE_DATA = "unitocom data make --preset tiny"


class UserError(Exception):
    """A mistake or a missing prerequisite on the user's side; `str(e)` is the whole message."""


class DataMissing(UserError, FileNotFoundError):
    """The made-here data set (or the part of it a command reads) is not there. Also a FileNotFoundError, so
    that callers that handle a missing file keep working."""

    def __init__(self, what: str):
        super().__init__(f"{what}; make the data set first with `{MAKE_DATA}` (or point --data at one)")


class CheckpointMissing(UserError, FileNotFoundError):
    """A checkpoint a command needs is not installed."""


def require_at_least_one(args, names: tuple[str, ...]) -> None:
    """A UserError naming the first of the options `names` (argparse dests) that is below 1."""
    for k in names:
        if getattr(args, k) < 1:
            raise UserError(f"--{k.replace('_', '-')} must be at least 1")

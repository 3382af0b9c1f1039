"""User-facing errors: a `UserError` is a mistake the user can fix; its message names the problem and the fix, and the
scripts (`common.cli.OneLineErrors`) print it as one line with exit status 1, never a traceback.
"""
import sys

_SAID = set()


class UserError(Exception):
    """A one-line error that names the problem and the fix."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def describe(err: BaseException, limit: int = 160) -> str:
    """`Type: the first line of its message`, for the one-line messages that name a caught error. A driver's or
    library's message can span lines (SQLAlchemy adds its SQL, wandb a hint): one line keeps the message one line.
    SQLAlchemy wraps the driver's error: its own (`orig`) says what the server said."""
    cause = getattr(err, "orig", None) or err
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0][:limit] if lines else 'no message'}"


def say_once(message):
    """One line on stderr, once per process (a sweep starts many runs; a plan reads its markers several times): not
    a warning with its source line."""
    if message not in _SAID:
        _SAID.add(message)
        print(message, file=sys.stderr, flush=True)

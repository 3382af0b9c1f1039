"""User-facing errors.

A `UserError` is a mistake the user can fix (bad path, bad option, wrong checkpoint): its message
names the problem and the fix. Library code raises it as a plain exception — the library does not
depend on any CLI framework; the scripts' commands (`common.cli.OneLineErrors`) print it as one
line (`Error: ...`) with exit status 1, never a traceback.
"""


class UserError(Exception):
    """A one-line error that names the problem and the fix."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message

"""User-facing errors.

A `UserError` is a mistake the user can fix (bad path, bad option, wrong checkpoint). Click
prints it as one line (`Error: ...`) and exits with status 1 — no traceback. Library code
raises it; scripts need no try/except of their own.
"""
import click


class UserError(click.ClickException):
    """A one-line error that names the problem and the fix."""

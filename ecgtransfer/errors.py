"""The one base class of the errors a user can fix.

Every module that refuses bad input (a damaged store, a record that cannot be read, a wrong
manifest, training that diverged) raises a subclass of :class:`UserError` with a one-line
message naming the record, file or key; the CLI prints that line and exits with status 2. It
lives at the bottom of the flow so that the CLI can catch every such error without importing
the modules that raise them (and their NumPy, pandas, SciPy or torch) before a command runs.
"""

__all__ = ["UserError"]


class UserError(Exception):
    """Something the user can fix; the message is one line that says what and where."""

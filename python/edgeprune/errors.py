"""The failures a user can fix: the command line prints their message as one line.

Every other exception is a bug in edgeprune or its dependencies and keeps its traceback.
"""


class UserError(ValueError):
    """Bad input, settings or state that the message says how to fix."""


class MissingFile(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class RunError(UserError, RuntimeError):
    """A run that cannot go on as asked (a non-finite loss, a missing program, a finished run)."""


class Unsupported(UserError, NotImplementedError):
    """A backend, model or setting this machine or edgeprune cannot run."""

"""The one exception type the CLI turns into a single clear error line instead of a traceback."""


class UserError(Exception):
    """Bad arguments, missing inputs or dead services: the user can fix it, so no traceback."""

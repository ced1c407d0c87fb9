"""The errors a user can fix: the CLI prints them as one line and exits 1, no traceback."""


class PipeError(Exception):
    """A problem the user can act on: bad blend file, missing path, unknown tokenizer."""


class InputError(PipeError):
    """Bad input data the user can fix (a file, a line, a field)."""

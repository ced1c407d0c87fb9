"""The one error type the CLI turns into a one-line message and a non-zero exit."""


class PipeError(Exception):
    """A problem the user can act on: bad blend, missing path, unknown tokenizer, busy cache."""

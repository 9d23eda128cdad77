"""The one exception type the CLI turns into a clean message and a non-zero exit."""


class KcsError(Exception):
    """A problem with the user's input (file, key, model, mask) that they can fix.

    The message must name the offending file, line or key and say what to do.
    """

"""One error type for bad input, so every entry point can print it as one line.

A user who gives a malformed file, an unknown config key or an empty corpus should
get a single sentence naming the thing and the expected form, and nothing written.
The CLI and the pytest plugins catch ``ExpspecError`` and print ``str(err)`` alone.
"""


class ExpspecError(Exception):
    """Bad input: the message names the file/field/key and what was expected."""

    def __str__(self) -> str:  # keep it to one line whatever the caller passed
        return " ".join(str(self.args[0] if self.args else "").split())

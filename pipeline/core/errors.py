"""One error type for bad user input, shown by the CLI as a single line (no traceback)."""
import click


class UserError(click.ClickException):
    """A problem with the user's input or environment: missing file, wrong format, unknown speaker.

    The CLI prints ``Error: <message>`` and exits with status 1 (click's convention for
    ClickException is 1 as well), so messages must be one line and name the offending path.
    """

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))

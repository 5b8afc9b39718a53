"""The one exception type automix raises for problems a user can fix."""


class AutomixError(Exception):
    """A problem with the input, the options or a preset, worded for people.

    The CLI prints the message on one line and exits with a non-zero code; library
    callers can catch this type and show the message as it is.
    """

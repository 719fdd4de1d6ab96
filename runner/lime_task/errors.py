"""Exceptions of the public API."""


class NotFoundError(LookupError):
    """No such task for this application.

    Raised with the same message whether the task does not exist or belongs to another
    application, so that one application cannot probe for another's task ids.
    """


class InvalidTaskError(ValueError):
    """`send_task` refused the task before creating anything; the message names the problem."""

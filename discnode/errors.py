"""The few exceptions that the CLI and the server turn into clear messages.

Each class's docstring is the kind of failure a user sees; the instance message says what exactly.
"""

from __future__ import annotations


class DiscnodeError(Exception):
    """Something went wrong."""

    #: HTTP status the peer API answers with, and the CLI's exit code.
    status = 500
    exit_code = 1
    code = "error"
    #: Seconds after which the caller may try again (sent as Retry-After), for temporary refusals.
    retry_after: int | None = None

    def __init__(self, message: str = "", *, retry_after: int | None = None) -> None:
        super().__init__(message)
        if retry_after is not None:
            self.retry_after = retry_after


class InvalidInput(DiscnodeError):
    """The input was refused; nothing was changed."""

    status = 400
    exit_code = 2
    code = "invalid"


class NotFound(DiscnodeError):
    """No such thing."""

    status = 404
    exit_code = 3
    code = "not_found"


class Conflict(DiscnodeError):
    """That would overwrite or contradict what is there."""

    status = 409
    exit_code = 4
    code = "conflict"


class Unauthenticated(DiscnodeError):
    """The request's signature could not be verified."""

    status = 401
    exit_code = 5
    code = "unauthenticated"


class Refused(DiscnodeError):
    """There is no current sharing agreement that allows this."""

    status = 403
    exit_code = 6
    code = "refused"


class TooLarge(DiscnodeError):
    """The request is over a limit."""

    status = 413
    exit_code = 2
    code = "too_large"


class RateLimited(DiscnodeError):
    """Too many requests; slow down."""

    status = 429
    exit_code = 7
    code = "rate_limited"

    def __init__(self, message: str = "", *, retry_after: int | None = 1) -> None:
        # Every 429 says when to try again (Retry-After, whole seconds, at least 1).
        super().__init__(message, retry_after=max(1, int(retry_after or 1)))


class Busy(DiscnodeError):
    """The node cannot take this now; try again later."""

    status = 503
    exit_code = 7
    code = "busy"


class PeerError(DiscnodeError):
    """A peer could not be reached or gave an answer we cannot use."""

    status = 502
    exit_code = 8
    code = "peer_error"


class Redirected(PeerError):
    """A peer answered with a redirect, which discnode never follows."""

    code = "redirected"


class PeerTimeout(PeerError):
    """A peer did not answer in time."""

    status = 504
    code = "peer_timeout"


class ReplyTooLarge(PeerError):
    """A peer's reply was over the size this node reads (spec 10). Its code is PeerError's: the
    walk tells it apart to ask again in smaller pages; a user sees it as any peer failure."""


class Tampered(DiscnodeError):
    """The evidence does not verify: it is not what its signers signed and its exporter wrote."""

    status = 400
    exit_code = 9
    code = "tampered"


class BadPassphrase(DiscnodeError):
    """The passphrase is missing or wrong; nothing was read or changed."""

    status = 400
    exit_code = 9
    code = "passphrase"

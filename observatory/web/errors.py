"""Errors the web layer raises on purpose, on top of the observatory's tree (see observatory/errors.py).

    ObservatoryError
     +-- ConfigError
     |    +-- BadRequest     a query parameter or body the caller got wrong           -> 400
     +-- NotFound           an incident, country or page that does not exist          -> 404
     +-- AuthError          a missing or wrong credential                             -> 401
          +-- Forbidden      a valid request the service will not do (no admin token)  -> 403
"""

from __future__ import annotations

from observatory.errors import AuthError, ConfigError, ObservatoryError, ParseError, StoreError


class BadRequest(ConfigError):
    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        self.parameter = parameter
        super().__init__(message)


class NotFound(ObservatoryError):
    pass


class Forbidden(AuthError):
    pass


class RateLimited(ObservatoryError):
    """Too many requests from one caller: retry later (429)."""


def status_for(exc: ObservatoryError) -> int:
    """One place decides which HTTP status each kind of error becomes."""
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, RateLimited):
        return 429
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, StoreError):
        return 503  # the store is unreachable or full: the caller may retry; never their fault
    if isinstance(exc, ParseError | ConfigError):
        return 400
    return 400

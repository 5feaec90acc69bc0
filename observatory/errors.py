"""One exception tree for the whole observatory.

    ObservatoryError
     +-- ConfigError      bad flags, settings, scenario files
     +-- ParseError       a record we cannot read (file:line and a reason)
     +-- StoreError       the store cannot be opened, read or written
     |    +-- StoreFullError     the disk is full
     |    +-- StoreReadOnlyError the store cannot be written
     +-- AuthError        a caller without a valid credential
     +-- LabError         the emulated network cannot be built or torn down

A network's behaviour (a reset, a timeout) is data, never an exception: see `failure.py`.
"""

from __future__ import annotations


class ObservatoryError(Exception):
    """Base of every error the observatory raises on purpose."""


class ConfigError(ObservatoryError):
    pass


class ParseError(ObservatoryError):
    def __init__(self, reason: str, *, where: str = "") -> None:
        self.reason = reason
        self.where = where
        super().__init__(f"{where}: {reason}" if where else reason)


class StoreError(ObservatoryError):
    pass


class StoreFullError(StoreError):
    pass


class StoreReadOnlyError(StoreError):
    pass


class AuthError(ObservatoryError):
    pass


class LabError(ObservatoryError):
    pass

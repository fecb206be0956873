"""The exception hierarchy: one class per maxsimdb status code (``maxsimdb.h``'s
``MSDB_*``, the shell's exit statuses). Every class derives from :class:`Error`; those
that mean "bad argument" also derive from :class:`ValueError`, I/O from :class:`OSError`."""

from __future__ import annotations


class Error(Exception):
    """A failed maxsimdb call. ``code`` is the stable status code, ``name`` its C name."""

    code: int = 1
    name: str = "MSDB_INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InternalError(Error):
    code, name = 1, "MSDB_INTERNAL"


class InvalidArgumentError(Error, ValueError):
    code, name = 2, "MSDB_INVALID_ARGUMENT"


class DimensionMismatchError(InvalidArgumentError):
    code, name = 3, "MSDB_DIMENSION_MISMATCH"


class NotFoundError(Error, LookupError):
    code, name = 4, "MSDB_NOT_FOUND"


class AlreadyExistsError(Error):
    code, name = 5, "MSDB_ALREADY_EXISTS"


class CorruptionError(Error):
    code, name = 6, "MSDB_CORRUPTION"


class IncompatibleFormatError(Error):
    code, name = 7, "MSDB_INCOMPATIBLE_FORMAT"


class LockedError(Error):
    code, name = 8, "MSDB_LOCKED"


class ReadOnlyError(Error):
    code, name = 9, "MSDB_READ_ONLY"


class IoError(Error, OSError):
    code, name = 10, "MSDB_IO"


class CatalogError(Error):
    code, name = 11, "MSDB_CATALOG"


class NotAvailableError(Error):
    code, name = 12, "MSDB_NOT_AVAILABLE"


class SqlSyntaxError(InvalidArgumentError):
    code, name = 13, "MSDB_SYNTAX"


class MisuseError(Error):
    code, name = 14, "MSDB_MISUSE"


class OperationInterruptedError(Error):
    """A long operation stopped at a batch boundary (``interrupt()``, a progress callback
    that raised, Ctrl-C); the message says what was kept and how to finish."""

    code, name = 15, "MSDB_INTERRUPTED"


class BusyError(Error):
    code, name = 16, "MSDB_BUSY"


_BY_CODE = {cls.code: cls for cls in Error.__subclasses__() + [DimensionMismatchError, SqlSyntaxError]}


def from_code(code: int, message: str) -> Error:
    """The exception for a status code (the extension module calls this)."""
    return _BY_CODE.get(code, Error)(message)

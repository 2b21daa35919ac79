"""Errors the kernels raise, and the hook through which their host makes them its own.

The kernels depend on nothing outside numpy and the standard library. Their wrappers raise
``errors.InvalidInput`` and ``errors.TariffError``, looked up when raised: standalone these are the
``ValueError`` subclasses below; the grid registers its own classes with :func:`use` (``grid.errors`` does it
on import), so that a kernel's complaint is already the grid's ``InvalidInput`` (a 4xx naming the field)
without a translation at every call site.
"""
from __future__ import annotations


class KernelInputError(ValueError):
    """An input broke a kernel's precondition; ``field`` names it, ``reason`` says which rule."""

    def __init__(self, detail: str = "", field: str | None = None, reason: str | None = None, **extra):
        super().__init__(detail)
        self.detail, self.field, self.reason, self.extra = detail, field, reason, extra


class KernelTariffError(KernelInputError):
    """A tariff cannot be compiled; ``field`` is the URDB key path."""


InvalidInput: type[Exception] = KernelInputError
TariffError: type[Exception] = KernelTariffError


def use(invalid_input: type[Exception], tariff_error: type[Exception]) -> None:
    """Raise the host's classes from now on (they take ``detail`` and the ``field``/``reason`` keywords)."""
    global InvalidInput, TariffError
    InvalidInput, TariffError = invalid_input, tariff_error

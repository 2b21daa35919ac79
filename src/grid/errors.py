"""The one error hierarchy of contextgrid.

    ContextGridError
    ├── InvalidInput        (field, reason)   -> 400 / 422
    │   ├── PayloadTooLarge                   -> 413
    │   ├── UnsupportedFormat                 -> 406
    │   ├── UnsupportedMediaType              -> 415
    │   ├── RuleError       (file, rule, field)
    │   └── TariffError     (key)
    ├── NotFound                              -> 404
    ├── Merged              (merged_into)     -> 410 (the customer was merged into another; names which)
    ├── Conflict            (retry_after?)    -> 409 (with Retry-After when it passes: a merge under way)
    │   └── PreconditionFailed                -> 412
    ├── Unauthorized                          -> 401
    ├── Forbidden                             -> 403
    ├── TooManyRequests     (retry_after)     -> 429
    ├── NotReady            (retry_after)     -> 503 (what the answer depends on is being computed)
    └── ShardUnavailable    (retry_after)     -> 503
        ├── WrongShard                        (a partition moved; the caller re-routes)
        └── DataCorrupt     (file)            (a durable file is damaged: the shard stays stopped)

Foreign errors (Ray, msgpack, pyarrow, YAML) are translated where they arise, ``raise ... from exc``.
The gateway's one middleware maps this tree to HTTP status codes and ``application/problem+json``.
"""
from __future__ import annotations


class ContextGridError(Exception):
    """Base of every error contextgrid raises on purpose."""

    status = 500
    title = "Internal error"

    def __init__(self, detail: str = "", **extra):
        super().__init__(detail)
        self.detail = detail
        self.extra = {k: v for k, v in extra.items() if v is not None}

    def problem(self) -> dict:
        """RFC 9457 problem body."""
        body = {"type": "about:blank", "title": self.title, "status": self.status, "detail": self.detail}
        body.update(self.extra)
        return body

    def __reduce__(self):  # survive pickling across Ray processes with their extra fields
        return (_rebuild, (type(self), self.detail, self.extra))


def _rebuild(cls, detail, extra):
    return cls(detail, **extra)


class InvalidInput(ContextGridError):
    """A request or argument is malformed; ``field`` names the offending part."""

    status = 422
    title = "Invalid input"

    def __init__(self, detail: str = "", field: str | None = None, reason: str | None = None, **extra):
        super().__init__(detail, field=field, reason=reason, **extra)
        self.field = field
        self.reason = reason


class PayloadTooLarge(InvalidInput):
    """The request body is larger than the configured limit."""

    status = 413
    title = "Payload too large"


class UnsupportedFormat(InvalidInput):
    """No registered encoder serves the requested media type."""

    status = 406
    title = "Not acceptable"


class UnsupportedMediaType(InvalidInput):
    """The request body's Content-Type is not one the route reads."""

    status = 415
    title = "Unsupported media type"


class RuleError(InvalidInput):
    """A rule file is invalid; names file, rule and field."""

    title = "Invalid rule"


class TariffError(InvalidInput):
    """A tariff is invalid; ``field`` names the URDB key."""

    title = "Invalid tariff"


class NotFound(ContextGridError):
    """The addressed resource does not exist (or is not visible to the caller)."""

    status = 404
    title = "Not found"


class Merged(ContextGridError):
    """The customer was merged into another; ``merged_into`` names the survivor (grid.identity.merge)."""

    status = 410
    title = "Merged"


class Conflict(ContextGridError):
    """The write conflicts with the current state."""

    status = 409
    title = "Conflict"


class PreconditionFailed(Conflict):
    """An ``If-Match`` version no longer matches the context."""

    status = 412
    title = "Precondition failed"


class Unauthorized(ContextGridError):
    """No valid API key was presented."""

    status = 401
    title = "Unauthorized"


class Forbidden(ContextGridError):
    """The key is valid but its role may not do this."""

    status = 403
    title = "Forbidden"


class TooManyRequests(ContextGridError):
    """The key is over its rate or concurrency limit; retry after ``retry_after`` seconds."""

    status = 429
    title = "Too many requests"

    def __init__(self, detail: str = "", retry_after: int = 1, **extra):
        super().__init__(detail, retry_after=retry_after, **extra)
        self.retry_after = retry_after


class NotReady(ContextGridError):
    """The answer depends on a computation still running (the first classification); retry after ``retry_after``."""

    status = 503
    title = "Not ready"

    def __init__(self, detail: str = "", retry_after: int = 5, **extra):
        super().__init__(detail, retry_after=retry_after, **extra)
        self.retry_after = retry_after


class ShardUnavailable(ContextGridError):
    """The owning shard is recovering or unreachable; retry after ``retry_after`` seconds."""

    status = 503
    title = "Shard unavailable"

    def __init__(self, detail: str = "", retry_after: int = 1, **extra):
        super().__init__(detail, retry_after=retry_after, **extra)
        self.retry_after = retry_after


class WrongShard(ShardUnavailable):
    """The addressed shard does not own the customer (its partition moved); re-route and retry."""


class DataCorrupt(ShardUnavailable):
    """A shard's durable file (``file``) is damaged: it stays stopped, never starting from partial state."""

    title = "Shard stopped: damaged data"

    def __init__(self, detail: str = "", file: str | None = None, retry_after: int = 30, **extra):
        super().__init__(detail, retry_after=retry_after, file=file, **extra)
        self.file = file


# The kernels raise through a hook (kernels.errors): make their complaints this tree's, so a bad kernel input is
# a 4xx naming the field wherever it is called from.
from kernels import errors as _kernel_errors  # noqa: E402

_kernel_errors.use(InvalidInput, TariffError)

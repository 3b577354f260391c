"""Exception types that carry their HTTP status and TorchServe error type name.

One handler in the API layer turns any :class:`ServeError` into the JSON body
``{"code": status, "type": type_name, "message": str(exc)}``.
"""

from __future__ import annotations

from typing import ClassVar


class ServeError(Exception):
    """Base of every error a client may see; ``status`` is the HTTP status."""

    status: ClassVar[int] = 500
    type_name: ClassVar[str] = "InternalServerException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, object]:
        return {"code": self.status, "type": self.type_name, "message": self.message}


class BadRequest(ServeError):
    status = 400
    type_name = "BadRequestException"


class InvalidInput(BadRequest):
    """The handler could not decode one request's input (corrupt image, bad UTF-8, ...)."""

    type_name = "InvalidInputException"


class Unauthorized(ServeError):
    status = 401
    type_name = "InvalidKeyException"


class InvalidKey(BadRequest):
    """A missing or wrong token: TorchServe's 400 and message, word for word."""

    type_name = "InvalidKeyException"
    TOKEN = "Token Authorization failed. Token either incorrect, expired, or not provided correctly"
    TOKEN_API = ("Token Authentication failed. Token either incorrect, expired, or not "
                 "provided correctly")  # TorchServe's wording for GET /token


class Forbidden(ServeError):
    status = 403
    type_name = "InvalidModelVersionException"


class ResourceNotFound(ServeError):
    status = 404
    type_name = "ResourceNotFoundException"


class ModelNotFound(ResourceNotFound):
    type_name = "ModelNotFoundException"


class ModelVersionNotFound(ResourceNotFound):
    type_name = "ModelVersionNotFoundException"


class MethodNotAllowed(ServeError):
    status = 405
    type_name = "MethodNotAllowedException"


class ModelAPIDisabled(MethodNotAllowed):
    """Register/unregister while ``enable_model_api`` is off (TorchServe's default)."""

    @classmethod
    def for_action(cls, what: str) -> ModelAPIDisabled:
        """TorchServe's message, word for word (its tests compare it); ``what`` and the
        way to turn it on go to the server log (see ``require_model_api``)."""
        return cls("Requested method is not allowed, please refer to API document.")


class RequestTimeout(ServeError):
    status = 408
    type_name = "RequestTimeoutException"


class ClientGone(ServeError):
    """The client closed its connection or cancelled its call; nobody reads this answer."""

    status = 499
    type_name = "ClientClosedRequest"


class Conflict(ServeError):
    status = 409
    type_name = "ConflictStatusException"


class PayloadTooLarge(ServeError):
    status = 413
    type_name = "RequestEntityTooLargeException"


class InternalError(ServeError):
    status = 500
    type_name = "InternalServerException"


class HandlerError(InternalError):
    """User handler code raised, or broke its contract."""

    type_name = "PredictionException"


class DependencyInstallError(InternalError):
    """pip could not install a model's requirements.txt."""


class ServiceUnavailable(ServeError):
    status = 503
    type_name = "ServiceUnavailableException"


class WorkerDied(ServiceUnavailable):
    type_name = "WorkerDiedException"


class WorkerUnresponsive(ServiceUnavailable):
    """The worker stopped answering heartbeats (stopped, hung outside Python, starved)."""

    type_name = "WorkerUnresponsiveException"


class DownloadArchiveError(BadRequest):
    """An http(s) archive URL could not be downloaded."""

    type_name = "DownloadArchiveException"


class ArchiveError(BadRequest):
    """An archive is malformed, unsafe or missing its manifest."""

    type_name = "InvalidModelArchiveException"


class KeyIsFixed(ServeError):
    """A key that comes from the configuration (a mounted key file or env) cannot rotate."""

    status = 409
    type_name = "InvalidKeyException"


class ConfigError(Exception):
    """Settings are invalid; raised at start-up, never to a client."""


_BY_STATUS: dict[int, type[ServeError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: ResourceNotFound,
    405: MethodNotAllowed,
    408: RequestTimeout,
    409: Conflict,
    413: PayloadTooLarge,
    500: InternalError,
    503: ServiceUnavailable,
}


def error_for_status(status: int, message: str, type_name: str = "") -> ServeError:
    """Build the error class that matches ``status`` (used for handler-chosen codes);
    ``type_name``, when given, is the type name it reports (a worker's error's)."""
    cls = _BY_STATUS.get(status)
    err = (cls or (BadRequest if 400 <= status < 500 else InternalError))(message)
    if cls is None:
        err.status = status  # type: ignore[misc]
    if type_name:
        err.type_name = type_name  # type: ignore[misc]
    return err


class ExplanationsNotSupported(ServeError):
    status = 501
    type_name = "ExplanationsNotSupportedException"


class WorkflowNotFound(ResourceNotFound):
    type_name = "WorkflowNotFoundException"


class InvalidWorkflow(BadRequest):
    """A .war whose manifest or specification cannot be served (says what is wrong)."""

    type_name = "InvalidWorkflowException"


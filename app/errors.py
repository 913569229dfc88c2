"""Errors the gateway answers with, shaped like OpenAI's so that SDKs surface the message."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response


class GatewayError(Exception):
    """A refusal or failure with its HTTP status; raised by services, rendered in one place."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        *,
        param: str | None = None,
        retry_after_s: int | None = None,
        shed_reason: str | None = None,
        queued_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.retry_after_s = retry_after_s
        # Set on refusals that protect capacity (the `reason` of gateway_requests_shed_total).
        self.shed_reason = shed_reason
        # Set when the request waited in the queue before this refusal (its access log).
        self.queued_s = queued_s


def error_response(
    status: int,
    message: str,
    kind: str,
    *,
    param: str | None = None,
    retry_after_s: int | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return JSONResponse(body, status_code=status, headers=headers)


def render(error: GatewayError) -> JSONResponse:
    return error_response(
        error.status,
        error.message,
        error.kind,
        param=error.param,
        retry_after_s=error.retry_after_s,
    )


def install_error_handlers(app: FastAPI) -> None:
    async def on_gateway_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, GatewayError)
        return render(error)

    async def on_http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        return error_response(error.status_code, str(error.detail), "invalid_request_error")

    async def on_validation_error(request: Request, error: Exception) -> Response:
        return error_response(422, str(error), "invalid_request_error")

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)

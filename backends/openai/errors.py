"""Client exceptions → `RequestError` classes (timeout, connection, http_4xx/5xx,
stream_cut, bad_response, ...): what a failed request is recorded as."""

from __future__ import annotations

from backends.base import RequestError


def classify_error(exc: BaseException, streaming: bool = False) -> RequestError:
    """An `openai` client exception → RequestError with its class; `streaming` is True
    once the response had started (a transport error then is a stream cut short)."""
    import openai

    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, openai.APITimeoutError) and not refused(exc):
        return RequestError("timeout", "the request timed out")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f"{type(cause).__name__}: {cause}" if cause else str(exc)
        if streaming:
            return RequestError("stream_cut", f"the stream was cut short ({detail})")
        return RequestError("connection", f"connection failed ({detail})")
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        kind = f"http_{code}" if code < 500 else "http_5xx"
        return RequestError(kind, f"HTTP {code}: {short(exc.message)}")
    if isinstance(exc, openai.APIResponseValidationError):
        return RequestError("bad_response", short(str(exc)))
    if isinstance(exc, openai.APIError):  # an error event inside the stream
        return RequestError("stream_error", short(str(exc)))
    if type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "h11", "anyio",
                                              "aiohttp"):
        # Transport errors while reading the body: the client does not wrap those (and
        # the body is read from aiohttp directly where it can be: backend._body_bytes).
        detail = f"{type(exc).__name__}: {short(str(exc), 200)}"
        if "Timeout" in type(exc).__name__:
            return RequestError("timeout", f"the stream stalled ({detail})")
        return RequestError("stream_cut" if streaming else "connection",
                            f"the stream was cut short ({detail})" if streaming
                            else f"connection failed ({detail})")
    if isinstance(exc, (ConnectionError, OSError)):
        return RequestError("stream_cut" if streaming else "connection",
                            f"{type(exc).__name__}: {short(str(exc), 200)}")
    if isinstance(exc, (ValueError, KeyError, TypeError, AttributeError)):
        return RequestError("bad_response", f"{type(exc).__name__}: {short(str(exc))}")
    return RequestError("client_error", f"{type(exc).__name__}: {short(str(exc))}")


def refused(exc: BaseException) -> bool:
    """True when the cause chain shows the connection failed (refused, reset, closed by
    the server), not a timeout: the aiohttp transport reports every aiohttp connection
    error, a server disconnect included, as a connect timeout."""
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 10:
        if isinstance(cause, TimeoutError):  # aiohttp's socket/connect timeouts
            return False
        if isinstance(cause, ConnectionError) or type(cause).__name__ in (
                "ClientConnectorError", "ClientConnectorDNSError", "ServerDisconnectedError",
                "ClientOSError"):
            return True
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return False


def short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["classify_error", "refused", "short"]

"""Streaming requests sent straight through the openai client's own aiohttp session.

The official client builds each request through several layers (option models, param
transforms, httpx's request and auth machinery, the httpx-to-aiohttp bridge): about
0.7 ms of CPU per request on a small CPU, where aiohttp itself needs about 0.15 ms
(bench/client_overhead.py). With N streams started together the client sends N
requests at once at every wave, so that cost delays the TTFT of the last ones by N times
it. `DirectPost` sends the same request (the client's URL, headers and key, the same
JSON body, the same timeouts) on the client's own aiohttp session and connection pool,
and maps a failed status to the same error classes. It is used only where the client
runs on aiohttp with a plain API key and no proxy; anything else (httpx, custom auth,
default query parameters, HTTP(S)_PROXY) goes through the client.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from backends.base import RequestError
from backends.openai.errors import classify_error, short

PATHS = {"completions": "completions", "chat": "chat/completions"}


def status_error(status: int, body: str) -> RequestError:
    """A non-200 answer → RequestError `http_<status>` (any 5xx: `http_5xx`), with the
    server's error message when its body holds one."""
    message = body
    try:
        obj = json.loads(body)
        err = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(err, dict) and err.get("message"):
            message = str(err["message"])
        elif isinstance(err, str):
            message = err
        elif isinstance(obj, dict) and obj.get("message"):
            message = str(obj["message"])
    except ValueError:
        pass
    kind = f"http_{status}" if status < 500 else "http_5xx"
    return RequestError(kind, f"HTTP {status}: {short(message)}")


class DirectPost:
    """POSTs a streaming body on the openai client's aiohttp session; see the module."""

    def __init__(self, transport: Any, aiohttp: Any, base_url: str,
                 headers: dict[str, str], timeout_s: float) -> None:
        self._transport = transport
        self._aiohttp = aiohttp
        self._urls = {k: base_url.rstrip("/") + "/" + v for k, v in PATHS.items()}
        self._headers = headers
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s,
                                              sock_connect=timeout_s, sock_read=timeout_s)

    @classmethod
    def attach(cls, client: Any, timeout_s: float) -> DirectPost | None:
        """A DirectPost sharing `client`'s (an openai.AsyncOpenAI) aiohttp session, or
        None where the client does not run on aiohttp or authenticates otherwise than
        with a plain key."""
        try:
            import aiohttp
        except ImportError:
            return None
        http = getattr(client, "_client", None)
        transport = getattr(http, "_transport", None)
        if transport is None or not hasattr(transport, "get_client") or \
                not hasattr(transport, "client"):
            return None
        if getattr(http, "_mounts", None) or getattr(transport, "proxy", None) is not None:
            return None  # a proxy (HTTP(S)_PROXY, ALL_PROXY): the client routes through it
        try:
            if client.custom_auth is not None or client.default_query or \
                    getattr(client, "_provider_runtime", None) is not None:
                return None
            auth = client.auth_headers
            headers = {**client.default_headers, **auth}
        except Exception:  # noqa: BLE001 - another openai version: use the client
            return None
        if not auth.get("Authorization"):
            return None
        headers = {k: v for k, v in headers.items() if isinstance(v, str)}
        direct = cls(transport, aiohttp, str(client.base_url), headers, timeout_s)
        # The session (and its connector's SSL contexts: ~20 ms of CPU here) is made now,
        # in open(), not by the first measured request.
        direct._session()
        return direct

    def _session(self) -> Any:
        transport = self._transport
        if not isinstance(transport.client, self._aiohttp.ClientSession):
            transport.client = transport.get_client()  # what the client does on first use
        return transport.client

    async def post(self, endpoint: str, body: dict[str, Any]
                   ) -> tuple[AsyncIterator[bytes], Callable[[], Awaitable[None]]]:
        """Send the request; (the body's bytes as they arrive, a close function) once the
        server answered 200, else RequestError (classified as the client would)."""
        data = json.dumps(body, separators=(",", ":")).encode()
        try:
            response = await self._session().post(
                self._urls[endpoint], data=data, headers=self._headers,
                timeout=self._timeout, allow_redirects=False)
        except Exception as exc:  # noqa: BLE001 - classified, recorded by the runner
            raise classify_error(exc) from None
        if response.status != 200:
            try:
                text = (await response.content.read(65536)).decode("utf-8", "replace")
            except Exception:  # noqa: BLE001 - the status says enough
                text = ""
            finally:
                response.close()
            raise status_error(response.status, text or str(response.reason or ""))

        async def close() -> None:
            if response.content.at_eof():
                response.release()  # the connection goes back to the pool
            else:
                response.close()  # cut short: the connection cannot carry another request

        return response.content.iter_any(), close


__all__ = ["DirectPost", "status_error"]

"""Keep API keys out of everything the harness prints or writes.

Keys come only from the environment. `redact(text)` masks, wherever they appear:
the values of environment variables whose names say they hold a secret (`*_KEY`,
`*_TOKEN`, `*_SECRET`, `*PASSWORD*`, ...) and of variables registered with
`register_env` (the one `--api-key-env` names); and, whatever their origin, bearer and
basic credentials, `sk-...`/`hf_...` key shapes, `user:password@` in URLs,
`?api_key=`-style query values and `"api_key": "..."`-style fields. `redact_obj` does
the same through dicts and lists, and masks every value under a secret-named key.
The result files, the CLI's error lines and the server logs pass through these.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any

MASK = "***"
MIN_SECRET_LEN = 8  # shorter values are not masked (they would mask ordinary text)
_SECRET_NAME_PARTS = {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD",
                      "CREDENTIAL", "CREDENTIALS", "PRIVATE"}
_SECRET_FIELD = (r"(?:api[_-]?key|x[_-]api[_-]key|access[_-]?token|auth[_-]?token|token|"
                 r"secret|password|passwd|authorization)")
_registered_envs: set[str] = set()
_registered_values: set[str] = set()

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization: Bearer <token> / Basic <b64>
    (re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=:-]{6,}"), rf"\1\2{MASK}"),
    (re.compile(r"\b(Basic)(\s+)[A-Za-z0-9+/]{12,}={0,2}"), rf"\1\2{MASK}"),
    # well-known key shapes: OpenAI/Anthropic sk-..., Hugging Face hf_..., GitHub ghp_...
    (re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_-]{8,}"), rf"\1-{MASK}"),
    (re.compile(r"\b(hf|ghp|gho|ghs|github_pat|xox[bap])_[A-Za-z0-9_]{12,}"), rf"\1_{MASK}"),
    # scheme://user:password@host
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/\s:@\"']+:[^/\s@\"']*@"), rf"\1{MASK}@"),
    # ?api_key=...&key=...
    (re.compile(rf"(?i)([?&](?:{_SECRET_FIELD}|key)=)[^&#\s\"']+"), rf"\1{MASK}"),
    # "api_key": "value", api_key = value, x-api-key: value, authorization=value
    (re.compile(rf"(?i)(?<![A-Za-z0-9_])({_SECRET_FIELD}[\"']?\s*[:=]\s*[\"']?)"
                rf"(?!{re.escape(MASK)})(?!bearer\b|basic\b)[^\s\"',;}}&]{{4,}}"),
     rf"\1{MASK}"),
]


def is_secret_name(name: str) -> bool:
    """True for environment variable or field names that say they hold a secret."""
    return _name_says_secret(name) or name in _registered_envs


@lru_cache(maxsize=4096)
def _name_says_secret(name: str) -> bool:
    return bool(set(re.split(r"[^A-Za-z0-9]+", name.upper())) & _SECRET_NAME_PARTS)


def register_env(name: str) -> None:
    """Mask the value of environment variable `name` (e.g. the one --api-key-env names)."""
    if name:
        _registered_envs.add(name)


def register_value(value: str) -> None:
    """Mask this exact value (a key that came from somewhere other than os.environ)."""
    if value and len(value) >= MIN_SECRET_LEN:
        _registered_values.add(value)


def secret_values() -> frozenset[str]:
    """The secret values to mask now: from secret-named and registered env variables."""
    found = {v for k, v in os.environ.items()
             if len(v) >= MIN_SECRET_LEN and is_secret_name(k)}
    return frozenset(found | _registered_values)


@lru_cache(maxsize=8)
def _value_pattern(values: frozenset[str]) -> re.Pattern[str] | None:
    if not values:
        return None
    # longest first, so a key that contains another is masked whole
    return re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))


def redact(text: str) -> str:
    """`text` with every secret value and credential-shaped substring masked."""
    if not text:
        return text
    return _redact_text(text, _value_pattern(secret_values()))


def _scoped(regex: re.Pattern[str]) -> str:
    """A pattern's text with its global inline flags made local, for joining with `|`."""
    text = regex.pattern
    return f"(?i:{text[4:]})" if text.startswith("(?i)") else f"(?:{text})"


# One search that matches wherever any of _PATTERNS would: a string it misses (most
# strings of a result line) skips the seven substitutions.
_ANY_PATTERN = re.compile("|".join(_scoped(regex) for regex, _ in _PATTERNS))


def _redact_text(text: str, pattern: re.Pattern[str] | None) -> str:
    if not text:
        return text
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if _ANY_PATTERN.search(text) is None:
        return text
    for regex, replacement in _PATTERNS:
        text = regex.sub(replacement, text)
    return text


def redact_obj(obj: Any) -> Any:
    """A copy of `obj` (dicts, lists, strings) with secrets masked; values under
    secret-named keys (authorization, api_key, token, ...) are masked whole."""
    # The secret values are looked up once per object, not once per string in it.
    return _redact_obj(obj, _value_pattern(secret_values()))


def _redact_obj(obj: Any, pattern: re.Pattern[str] | None) -> Any:
    if isinstance(obj, str):
        return _redact_text(obj, pattern)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(k, str) and isinstance(v, str) and v and _is_secret_field(k):
                out[k] = MASK
            else:
                out[k] = _redact_obj(v, pattern)
        return out
    if isinstance(obj, (list, tuple)):
        if all(isinstance(v, (int, float)) for v in obj):  # timestamps: nothing to mask
            return obj
        return [_redact_obj(v, pattern) for v in obj]
    return obj


def install_output_redaction() -> None:
    """Mask secrets in every log record and in uncaught tracebacks from now on."""
    import logging
    import sys
    import traceback

    factory = logging.getLogRecordFactory()
    if not getattr(factory, "redacting", False):
        def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = factory(*args, **kwargs)
            try:
                record.msg, record.args = redact(record.getMessage()), None
            except Exception:  # noqa: BLE001, S110 - a malformed record is logged as it is
                pass
            return record

        redacting_factory.redacting = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(redacting_factory)
    if not getattr(sys.excepthook, "redacting", False):
        def excepthook(kind: Any, value: Any, tb: Any) -> None:
            text = "".join(traceback.format_exception(kind, value, tb))
            sys.stderr.write(redact(text))

        excepthook.redacting = True  # type: ignore[attr-defined]
        sys.excepthook = excepthook


@lru_cache(maxsize=4096)
def _is_secret_field(key: str) -> bool:
    return re.fullmatch(rf"(?i){_SECRET_FIELD}|[a-z0-9_-]*(?:api[_-]?key|secret|password)",
                        key) is not None


__all__ = ["MASK", "install_output_redaction", "is_secret_name", "redact", "redact_obj", "register_env",
           "register_value", "secret_values"]

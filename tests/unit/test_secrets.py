"""Redaction of keys in text and records (harness.secrets) and the settings checks that
keep keys out of config files (harness.config.settings)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from harness.config.settings import check_value
from harness.errors import UserError
from harness.results.files import JsonlWriter, atomic_write_text, rows_to_csv
from harness.secrets import is_secret_name, redact, redact_obj, register_env


@pytest.fixture()
def canary(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-0123456789abcdef")
    monkeypatch.setenv("MY_PLAIN_VAR", "plainvalue-0123456789")
    return "sk-proj-0123456789abcdef"


@pytest.mark.parametrize("text,expected", [
    ("Authorization: Bearer abcdefghijkl", "Authorization: Bearer ***"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic ***"),
    ("key sk-abcdefghijkl0123 here", "key sk-*** here"),
    ("hf_abcdefghijklmnopqrstuv", "hf_***"),
    ("http://user:pass@host:8000/v1", "http://***@host:8000/v1"),
    ("https://h/v1?api_key=abc123&x=1", "https://h/v1?api_key=***&x=1"),
    ('{"api_key": "abcdef", "api_key_env": "OPENAI_API_KEY"}',
     '{"api_key": "***", "api_key_env": "OPENAI_API_KEY"}'),
    ("x-api-key: abcd1234", "x-api-key: ***"),
    ("password=hunter22", "password=***"),
    # ordinary text is left alone
    ("max_tokens=16 n_tokens: 3 token counts differ; basic english text",
     "max_tokens=16 n_tokens: 3 token counts differ; basic english text"),
])
def test_credential_shapes_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_values_of_secret_named_and_registered_variables_are_masked(canary: str) -> None:
    assert redact(f"echo {canary} back") == "echo *** back"
    assert redact("a plainvalue-0123456789 b") == "a plainvalue-0123456789 b"
    register_env("MY_PLAIN_VAR")
    assert redact("a plainvalue-0123456789 b") == "a *** b"
    assert is_secret_name("HF_TOKEN") and is_secret_name("AWS_SECRET_ACCESS_KEY")
    assert not is_secret_name("PATH") and not is_secret_name("KEYBOARD_LAYOUT")


def test_records_are_masked_under_secret_keys_and_inside_strings(canary: str) -> None:
    record = {"authorization": "whatever", "error_message": f"HTTP 401: {canary}",
              "event_ns": [1, 2, 3], "nested": [{"api_key": "x1"}], "n": 5}
    out = redact_obj(record)
    assert out == {"authorization": "***", "error_message": "HTTP 401: ***",
                   "event_ns": [1, 2, 3], "nested": [{"api_key": "***"}], "n": 5}


def test_result_writers_mask_keys(tmp_path: Path, canary: str) -> None:
    writer = JsonlWriter(tmp_path / "r.jsonl")
    writer.write({"error_message": f"Bearer {canary}", "settings": {"api_key": canary}})
    writer.close()
    atomic_write_text(tmp_path / "r.csv", rows_to_csv([{"notes": f"key {canary}"}]))
    for name in ("r.jsonl", "r.csv"):
        text = (tmp_path / name).read_text()
        assert canary not in text and "***" in text
    json.loads((tmp_path / "r.jsonl").read_text())  # still valid JSON


def test_log_records_are_masked(canary: str, caplog: pytest.LogCaptureFixture) -> None:
    from harness.secrets import install_output_redaction

    install_output_redaction()
    logging.getLogger("test").warning("headers %s", {"Authorization": f"Bearer {canary}"})
    assert canary not in caplog.text and "***" in caplog.text


@pytest.mark.parametrize("key,value", [
    ("timeout", -1), ("timeout", float("nan")), ("timeout", float("inf")), ("timeout", "5"),
    ("concurrency", []), ("concurrency", [1, 0]), ("concurrency", True), ("rate", [0.0]),
    ("requests", 0), ("requests", 2.5), ("warmup", -1), ("power", "gpu"), ("flash_attn", 1),
    ("engine", {"api_key": "x"}), ("engine", {"authorization": "x"}), ("engine", []),
    ("base_url", ""), ("gpu_memory_utilization", 1.5), ("output", 3),
])
def test_bad_settings_are_one_line_errors(key: str, value: object) -> None:
    with pytest.raises(UserError) as info:
        check_value(key, value, f"--{key}")
    assert "\n" not in str(info.value) and str(info.value).startswith(f"--{key}")


def test_good_settings_are_normalised() -> None:
    assert check_value("concurrency", [1, 4], "x") == (1, 4)
    assert check_value("concurrency", 2, "x") == (2,)
    assert check_value("rate", 1, "x") == (1.0,)
    assert check_value("timeout", 5, "x") == 5.0
    assert check_value("output", "res", "x") == Path("res")
    assert check_value("engine", {"n_batch": 512}, "x") == {"n_batch": 512}

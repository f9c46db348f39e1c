"""harness.secrets looks the secret values up once per record and caches what a name
says: a variable registered, set or changed after earlier records is still masked in the
next one, in every string of it."""

from __future__ import annotations

import pytest

from harness.secrets import MASK, is_secret_name, redact, redact_obj, register_env


def test_names_seen_before_are_judged_again_once_registered(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    name = "HARNESS_TEST_PLAIN_NAME_LOOKUP"
    monkeypatch.setenv(name, "value-registered-late-0123")
    assert not is_secret_name(name)
    record = {"error_message": "got value-registered-late-0123"}
    assert redact_obj(record) == record  # not a secret yet
    register_env(name)
    assert is_secret_name(name)
    assert redact_obj(record) == {"error_message": f"got {MASK}"}


def test_a_secret_set_or_changed_between_records_is_masked(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setenv("HARNESS_TEST_LOOKUP_TOKEN", "first-secret-0123456789")
    assert redact("a first-secret-0123456789 b") == f"a {MASK} b"
    monkeypatch.setenv("HARNESS_TEST_LOOKUP_TOKEN", "second-secret-0123456789")
    record = {"request_id": "r second-secret-0123456789", "nested": [
        {"text": "x second-secret-0123456789 y"}, [1, 2, 3]],
        "old": "first-secret-0123456789"}
    out = redact_obj(record)
    assert out["request_id"] == f"r {MASK}"
    assert out["nested"] == [{"text": f"x {MASK} y"}, [1, 2, 3]]
    assert out["old"] == "first-secret-0123456789"  # no longer in the environment

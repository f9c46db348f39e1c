"""The price catalog: loading, overriding, name lookup, and bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.analysis.prices import api_price, find_api, load_catalog
from harness.errors import UserError


def write(tmp_path: Path, text: str, name: str = "prices.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_api_price_for_names_aliases_and_model_ids():
    assert api_price("claude-sonnet-4.6") == (3.0, 15.0)
    assert api_price("Sonnet-4.6") == (3.0, 15.0)
    assert api_price("gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert api_price("openai/gpt-4o") == (2.50, 10.00)
    assert api_price("gpt-4o-2024-08-06") == (2.50, 10.00)
    # An unknown model, or a variant priced differently, is not guessed.
    assert api_price("gpt-4o-audio-preview") is None
    assert api_price("gemma-3-270m") is None


def test_user_file_replaces_and_adds_entries(tmp_path):
    path = write(tmp_path, """
[defaults]
electricity_usd_per_kwh = 0.31
apis = ["my-api"]
date = "2026-11-01"
source = "my bill"

[[api]]
name = "sonnet-4.6"             # an alias of the built-in entry: replaces it whole
input_usd_per_mtok = 2.0
output_usd_per_mtok = 10.0
date = "2026-11-01"
source = "negotiated"

[[api]]
name = "my-api"
input_usd_per_mtok = 0.2
output_usd_per_mtok = 0.4
cached_input_usd_per_mtok = 0.05
date = 2026-11-02
source = "vendor page"

[[hardware]]
name = "office-box"
purchase_usd = 2500
match = ["Xeon Test"]
date = "2026-10"
source = "invoice 42"
""")
    catalog = load_catalog([path])
    assert catalog.defaults.electricity_usd_per_kwh == 0.31
    assert catalog.defaults.apis == ("my-api",)
    assert catalog.defaults.pue == 1.0  # untouched defaults stay
    # The built-in entry is gone; its names now lead to the user's entry.
    assert "claude-sonnet-4.6" not in catalog.apis
    sonnet = catalog.api_named("claude-sonnet-4.6")
    assert (sonnet.name, sonnet.input_usd_per_mtok, sonnet.source) == (
        "sonnet-4.6", 2.0, "negotiated")
    mine = catalog.api_named("my-api")
    assert (mine.cached_input_usd_per_mtok, mine.date) == (0.05, "2026-11-02")
    box = catalog.hardware_named("office-box")
    assert box.kind == "owned" and box.purchase_usd == 2500
    assert catalog.hardware_for({"cpu_model": "Intel Xeon Test CPU"}) == [box]
    assert catalog.files[-1] == str(path)


def test_environment_variable_adds_files(tmp_path, monkeypatch):
    path = write(tmp_path, """
[[api]]
name = "env-api"
input_usd_per_mtok = 1
output_usd_per_mtok = 2
date = "2026"
source = "test"
""")
    monkeypatch.setenv("HARNESS_PRICES", str(path))
    assert find_api(load_catalog(), "env-api") is not None


@pytest.mark.parametrize("text, message", [
    ("[[api]]\nname='x'\ninput_usd_per_mtok=0\noutput_usd_per_mtok=1\ndate='2026'\nsource='s'",
     "input_usd_per_mtok must be a number > 0"),
    ("[[api]]\nname='x'\ninput_usd_per_mtok=-1\noutput_usd_per_mtok=1\ndate='2026'\nsource='s'",
     "must be a number > 0"),
    ("[[api]]\nname='x'\ninput_usd_per_mtok=1\noutput_usd_per_mtok=1\nsource='s'",
     "needs date"),
    ("[[api]]\nname='x'\ninput_usd_per_mtok=1\noutput_usd_per_mtok=1\ndate='2026'",
     "needs date"),
    (("[[api]]\nname='x'\ninput_usd_per_mtok=1\noutput_usd_per_mtok=1\ndate='soon'\n"
     "source='s'"), "date must be"),
    ("[[api]]\nname='x'\ninput_usd_per_mtok=1\noutput_price=1\ndate='2026'\nsource='s'",
     "unknown key 'output_price'"),
    ("[[hardware]]\nname='h'\nkind='leased'\ndate='2026'\nsource='s'", "kind must be"),
    ("[[hardware]]\nname='h'\nkind='rented'\ndate='2026'\nsource='s'", "needs usd_per_hour"),
    ("[[hardware]]\nname='h'\npurchase_usd=5\nmatch=['(']\ndate='2026'\nsource='s'",
     "not a regular expression"),
    ("[defaults]\npue=0.9", "pue must be >= 1.0"),
    ("[defaults]\napis=['nope-api']", "'nope-api': not in the price catalog"),
    ("[prices]\nx=1", "unknown key 'prices'"),
    ("not toml [", "not valid TOML"),
])
def test_bad_price_files_are_one_clear_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as exc:
        load_catalog([path])
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_missing_price_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_catalog([tmp_path / "absent.toml"])


def test_unknown_names_suggest_the_nearest():
    catalog = load_catalog()
    with pytest.raises(UserError, match="Did you mean 'mac-studio-m4-ultra-192gb'"):
        catalog.hardware_named("mac-studio-m4-ultra-192")
    with pytest.raises(UserError, match="Did you mean 'claude-sonnet-4.6'"):
        catalog.api_named("claude-sonet-4.6")

"""Like for like in the break-even: a local run is compared first with hosted offers of the
same open model, then of its class; a cross-class comparison (the article's local model vs
Claude) stays possible and is labelled."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.analysis.breakeven.model import Assumptions, Economics, analyse, select_measurements
from harness.analysis.breakeven.text import bench_summary_text, format_text
from harness.analysis.prices import (
    CLASSES,
    class_from_params,
    comparison,
    like_for_like,
    load_catalog,
    parse_catalog,
)
from harness.cli.main import main
from harness.errors import UserError
from tests.support.result_factory import row, write_csv

CATALOG = load_catalog()
LLAMA_70B = {"model": "Meta-Llama-3-70B-Instruct-Q4_K_M.gguf", "model_params": 70_553_706_496}
GEMMA = {"model": "Gemma 3 270m", "model_params": 268_098_176}
ECON = Economics(name="box", kind="owned", purchase_usd=1600, amortize_months=36)


def _result(model: dict, api_names: list[str] | None = None) -> dict:
    frame = pd.DataFrame([row(**model)])
    measured, notes = select_measurements(frame)
    return analyse(measured, CATALOG, Assumptions(), api_names, economics=ECON, notes=notes)


def test_every_api_offer_has_a_class_and_open_offers_name_their_model():
    for api in CATALOG.apis.values():
        assert api.model_class in CLASSES, api.name
        if "llama" in api.name:
            assert api.model in CATALOG.models, api.name


def test_the_local_model_is_found_by_name_else_classed_by_parameter_count():
    assert CATALOG.local_model(LLAMA_70B).name == "llama-3-70b"
    gemma = CATALOG.local_model(GEMMA)
    assert (gemma.name, gemma.model_class, gemma.how) == ("gemma-3-270m", "tiny", "catalog")
    other = CATALOG.local_model({"model": "qwen2.5-7b-instruct", "model_params": 7.6e9})
    assert (other.name, other.model_class, other.how) == ("", "small", "parameter count")
    assert CATALOG.local_model({"model": "x"}).how == "unknown"
    assert [class_from_params(n) for n in (1e9, 8e9, 70e9, 405e9, None, "?")] == \
        ["tiny", "small", "mid", "frontier", None, None]


def test_same_model_offers_come_first_then_its_class_then_the_defaults_labelled():
    local = CATALOG.local_model(LLAMA_70B)
    apis = like_for_like(CATALOG, local)
    kinds = [comparison(local, a)[1] for a in apis]
    assert kinds[:2] == ["same model", "same model"]
    assert {a.name for a in apis[:2]} == {"groq-llama-3-70b", "together-llama-3-70b"}
    assert kinds[2:4] == ["same class", "same class"]  # the two cheapest mid offers
    assert kinds[-1] == "cross-class" and apis[-1].name == "claude-sonnet-4.6"
    assert comparison(local, apis[-1])[2] == \
        "CROSS-CLASS: local mid llama-3-70b vs frontier claude-sonnet-4.6"


def test_without_an_offer_of_its_class_the_nearest_class_is_compared_and_labelled():
    result = _result(GEMMA)
    (option,) = result["options"]
    first = option["versus"][0]
    assert first["api"] == "groq-llama-3.1-8b" and first["match"] == "cross-class"
    assert first["comparison"].startswith("CROSS-CLASS: local tiny gemma-3-270m vs small")
    assert option["local_model"] == {"label": "Gemma 3 270m", "name": "gemma-3-270m",
                                     "class": "tiny", "how": "catalog"}
    assert any("no hosted offer of the same model or class as Gemma 3 270m" in n
               for n in result["notes"])


def test_the_article_comparison_stays_possible_and_is_labelled():
    result = _result(LLAMA_70B, ["claude-sonnet-4.6", "groq-llama-3-70b"])
    (option,) = result["options"]
    # the same model first even when named second; both priced
    assert [v["api"] for v in option["versus"]] == ["groq-llama-3-70b", "claude-sonnet-4.6"]
    assert option["versus"][1]["match"] == "cross-class"
    assert all(v["break_even_mtok_per_month"] is not None for v in option["versus"])
    text = format_text(result)
    assert "same model: llama-3-70b" in text
    assert "CROSS-CLASS: local mid llama-3-70b vs frontier claude-sonnet-4.6" in text
    assert "llama-3-70b  mid" in text  # the API prices table says what each serves


def test_bench_summary_names_both_models_and_labels_cross_class(tmp_path):
    rows = [row(**GEMMA, cpu_model="AMD Ryzen 9 7950X", machine_id="ryzen")]
    mine = tmp_path / "prices.toml"
    mine.write_text('[[hardware]]\nname = "ryzen-box"\npurchase_usd = 1600\n'
                    'match = ["Ryzen 9 7950X"]\ndate = "2026"\nsource = "test"\n')
    text = bench_summary_text(rows, load_catalog([mine]))
    assert "vs groq-llama-3.1-8b [CROSS-CLASS: local tiny gemma-3-270m vs small " \
           "llama-3.1-8b]" in text
    assert "[CROSS-CLASS: local tiny gemma-3-270m vs frontier claude-sonnet-4.6]" in text


@pytest.mark.parametrize("entry, message", [
    ({"name": "x", "input_usd_per_mtok": 1, "output_usd_per_mtok": 1, "date": "2026",
      "source": "s", "class": "huge"}, "class must be one of tiny, small, mid, frontier"),
    ({"name": "x", "input_usd_per_mtok": 1, "output_usd_per_mtok": 1, "date": "2026",
      "source": "s", "model": 3}, "model must be the name of a [[model]] entry"),
])
def test_a_bad_class_or_model_is_one_line_naming_the_entry(entry, message):
    with pytest.raises(UserError, match=r"mine: \[\[api\]\] #1 'x'"):
        parse_catalog([("mine", {"api": [entry]})])
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_catalog([("mine", {"api": [entry]})])


def test_a_model_entry_needs_a_class():
    with pytest.raises(UserError, match=r"\[\[model\]\] #1 'm': class must be one of"):
        parse_catalog([("mine", {"model": [{"name": "m", "match": ["m"]}]})])


def test_cli_compares_like_for_like_by_default(tmp_path, capsys):
    path = write_csv(tmp_path / "r.csv", [row(**LLAMA_70B)])
    assert main(["breakeven", str(path), "--hardware-price", "15000", "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "compared (like for like first)" in out
    table = out.split("**Break-even volume**", 1)[1].split("**", 1)[0]
    lines = [ln for ln in table.splitlines() if ln.startswith("| 1 |")]
    assert len(lines) == 5
    assert "same model: llama-3-70b" in lines[0] and "same model" in lines[1]
    assert "same class (mid)" in lines[2] and "CROSS-CLASS" in lines[-1]

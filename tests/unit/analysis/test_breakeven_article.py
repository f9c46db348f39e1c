"""The source article's break-even, reproduced from its own inputs, and why it fails.

Article (shared/seed-article.txt): a Mac Studio M4 Ultra at $6,000 amortized over 36
months = $167/month, plus $30/month electricity at 350 W = $197/month; Claude Sonnet 4.6 at
$3/M input and $15/M output blends to about $7/M at 2:1 input:output; break-even 28 M
tokens/month. But 3 tokens/s for a month of 30 days is 3 x 86,400 x 30 = 7.78 M tokens,
not the "7.8 million tokens per day or 234 million tokens per month" the article states,
so one machine cannot make the 28.1 M tokens it would need, and more machines cost more
than they save: no break-even exists.
"""

from __future__ import annotations

import pytest

from harness.analysis.breakeven.model import (
    SECONDS_PER_MONTH,
    Assumptions,
    Economics,
    Measured,
    blended_usd_per_mtok,
    break_even,
    capacity_tok_per_month,
    cost_model,
    economics_from_hardware,
    energy_usd_per_month,
    hardware_usd_per_month,
    local_monthly_usd,
)
from harness.analysis.prices import ApiPrice, load_catalog

# The article's inputs, as stated.
PURCHASE_USD = 6000.0
AMORTIZE_MONTHS = 36
POWER_W = 350.0
ELECTRICITY_USD_PER_MONTH = 30.0
CLAIMED_TOK_S = 3.0
INPUT_SHARE = 2 / 3  # 2:1 input:output
SONNET = ApiPrice(name="sonnet", input_usd_per_mtok=3.0, output_usd_per_mtok=15.0,
                  date="2026", source="seed article")
# The electricity price that makes 350 W for a 720-hour month cost $30.
KWH_PRICE = ELECTRICITY_USD_PER_MONTH / (POWER_W / 1000 * 720)


def article_economics() -> Economics:
    return Economics(name="mac-studio-m4-ultra", kind="owned", purchase_usd=PURCHASE_USD,
                     amortize_months=AMORTIZE_MONTHS, electricity_usd_per_kwh=KWH_PRICE)


def article_machine(tok_s: float = CLAIMED_TOK_S) -> Measured:
    # The article assumes a constant 350 W average draw: load and idle alike.
    return Measured(total_tok_s=tok_s, input_share=INPUT_SHARE, load_power_w=POWER_W,
                    idle_power_w=POWER_W)


def test_monthly_cost_is_167_plus_30_is_197():
    econ = article_economics()
    assert hardware_usd_per_month(econ) == pytest.approx(6000 / 36)
    assert hardware_usd_per_month(econ) == pytest.approx(166.67, abs=0.005)
    assert energy_usd_per_month(POWER_W, POWER_W, 0.5, KWH_PRICE) == pytest.approx(30.0)
    model = cost_model(article_machine(), econ)
    assert model.machine_fixed_usd == pytest.approx(196.67, abs=0.005)
    assert round(model.machine_fixed_usd) == 197
    assert model.marginal_usd_per_mtok == pytest.approx(0.0)  # constant draw: no extra


def test_blended_price_is_7_at_two_to_one():
    assert blended_usd_per_mtok(SONNET, INPUT_SHARE) == pytest.approx((2 * 3 + 15) / 3)
    assert blended_usd_per_mtok(SONNET, INPUT_SHARE) == pytest.approx(7.0)


def test_article_api_column_is_seven_dollars_per_million():
    p = blended_usd_per_mtok(SONNET, INPUT_SHARE)
    assert [round(p * v) for v in (5, 20, 50, 200, 500)] == [35, 140, 350, 1400, 3500]


def test_break_even_would_be_28_1_million_tokens_per_month():
    model = cost_model(article_machine(), article_economics())
    be = break_even(model, 7.0)
    assert be.one_machine_volume_tok / 1e6 == pytest.approx(196.67 / 7, rel=1e-4)
    assert round(be.one_machine_volume_tok / 1e6, 1) == 28.1


def test_three_tokens_per_second_is_7_8_million_per_month_not_per_day():
    assert SECONDS_PER_MONTH == 86_400 * 30
    assert capacity_tok_per_month(CLAIMED_TOK_S) == pytest.approx(3 * 86_400 * 30)
    assert capacity_tok_per_month(CLAIMED_TOK_S) / 1e6 == pytest.approx(7.776)
    per_day = CLAIMED_TOK_S * 86_400
    assert per_day / 1e6 == pytest.approx(0.2592)  # not 7.8 M per day


def test_so_no_break_even_exists_capacity_below_break_even():
    model = cost_model(article_machine(), article_economics())
    be = break_even(model, 7.0)
    assert be.volume_tok is None and be.machines is None
    assert be.reason.startswith("capacity below break-even")
    assert "7.78 M" in be.reason and "28.1 M" in be.reason
    # Each machine makes 7.78 M tokens worth $54 at the API and costs $197.
    assert 7.776 * 7.0 < model.machine_fixed_usd


def test_the_flat_197_column_needs_65_machines_at_500m():
    model = cost_model(article_machine(), article_economics())
    assert local_monthly_usd(model, 5e6) == (1, pytest.approx(196.67, abs=0.01))
    n, usd = local_monthly_usd(model, 500e6)
    assert n == 65  # ceil(500 / 7.776)
    assert usd == pytest.approx(65 * 196.67, abs=1)


def test_with_the_articles_claimed_capacity_the_28_1m_break_even_would_hold():
    # 234 M tokens/month is what the article claims; that is 90.3 tokens/s, not 3.
    claimed_tok_s = 234e6 / SECONDS_PER_MONTH
    be = break_even(cost_model(article_machine(claimed_tok_s), article_economics()), 7.0)
    assert be.machines == 1
    assert round(be.volume_tok / 1e6, 1) == 28.1


def test_the_built_in_catalog_holds_the_articles_figures():
    catalog = load_catalog()
    # The article's figures are the first entries, each dated and sourced.
    assert next(iter(catalog.hardware)) == "mac-mini-m4-16gb"
    assert next(iter(catalog.apis)) == "claude-sonnet-4.6"
    for entry in [*catalog.hardware.values(), *catalog.apis.values()]:
        assert entry.date and entry.source
    mac = catalog.hardware_named("mac-studio-m4-ultra-192gb")
    assert (mac.purchase_usd, mac.amortize_months, mac.power_w) == (6000, 36, 350)
    a = Assumptions(electricity_usd_per_kwh=catalog.defaults.electricity_usd_per_kwh)
    econ = economics_from_hardware(mac, a)
    measured = Measured(total_tok_s=mac.claimed_tok_s, input_share=INPUT_SHARE,
                        load_power_w=mac.power_w, idle_power_w=mac.power_w)
    model = cost_model(measured, econ)
    assert round(model.machine_fixed_usd) == 197
    sonnet = catalog.api_named("claude-sonnet-4.6")
    assert blended_usd_per_mtok(sonnet, INPUT_SHARE) == pytest.approx(7.0)
    assert break_even(model, 7.0).volume_tok is None
    # Rentals: the article's "monthly (24/7)" column is the hourly rate x 720 h.
    for name, monthly in (("lambda-a100-40gb", 929), ("runpod-h100-sxm", 1793)):
        hw = catalog.hardware_named(name)
        assert round(hardware_usd_per_month(economics_from_hardware(hw, a))) == monthly

"""The break-even cost model: hand-computed cases and properties (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from harness.analysis.breakeven.model import (
    MTOK,
    Economics,
    Measured,
    blended_usd_per_mtok,
    break_even,
    capacity_tok_per_month,
    cost_model,
    cost_per_mtok,
    energy_usd_per_month,
    hardware_usd_per_month,
    hybrid_plan,
    local_monthly_usd,
    machines_needed,
    sensitivity,
)
from harness.analysis.prices import ApiPrice


def owned(price: float = 3000.0, months: float = 36, kwh: float = 0.25, pue: float = 1.0,
          ops: float = 0.0, utilization: float = 1.0) -> Economics:
    return Economics(name="box", kind="owned", purchase_usd=price, amortize_months=months,
                     electricity_usd_per_kwh=kwh, pue=pue, ops_usd_per_month=ops,
                     utilization=utilization)


def rented(per_hour: float = 2.0, utilization: float = 1.0, ops: float = 0.0) -> Economics:
    return Economics(name="gpu", kind="rented", rent_usd_per_hour=per_hour,
                     utilization=utilization, ops_usd_per_month=ops)


def machine(tok_s: float = 100.0, load_w: float | None = 300.0,
            idle_w: float | None = 100.0, share: float = 0.5) -> Measured:
    return Measured(total_tok_s=tok_s, input_share=share, load_power_w=load_w,
                    idle_power_w=idle_w)


# ------------------------------------------------------------------ hand-computed cases

def test_energy_weights_load_and_idle_by_duty_cycle():
    # 1 kW for 720 h at $1/kWh is $720; half busy at 300 W, half idle at 100 W = 200 W avg.
    assert energy_usd_per_month(1000, 1000, 0.3, 1.0) == pytest.approx(720.0)
    assert energy_usd_per_month(300, 100, 0.5, 0.25) == pytest.approx(0.2 * 720 * 0.25)
    assert energy_usd_per_month(300, 100, 0.5, 0.25, pue=1.5) == pytest.approx(
        0.2 * 720 * 0.25 * 1.5)


def test_owned_cost_model_by_hand():
    m = cost_model(machine(), owned())
    assert m.capacity_full_tok == pytest.approx(100 * 2_592_000)
    assert m.hardware_usd == pytest.approx(3000 / 36)
    assert m.idle_energy_usd == pytest.approx(0.1 * 720 * 0.25)  # $18
    # 200 W above idle / 100 tok/s = 2 J/token = 2e6 J per M tokens = 0.5556 kWh
    assert m.marginal_usd_per_mtok == pytest.approx(2e6 / 3.6e6 * 0.25)
    # At full load one machine draws 300 W all month: 0.3 x 720 x 0.25 = $54.
    n, usd = local_monthly_usd(m, m.capacity_tok)
    assert n == 1 and usd == pytest.approx(3000 / 36 + 54.0)


def test_cost_per_mtok_at_full_and_at_utilization():
    m = cost_model(machine(), owned(utilization=0.5))
    cap_full_mtok = 259.2
    full = (3000 / 36 + 0.3 * 720 * 0.25) / cap_full_mtok
    half = (3000 / 36 + 0.2 * 720 * 0.25) / (cap_full_mtok / 2)
    assert cost_per_mtok(m, 1.0) == pytest.approx(full)
    assert cost_per_mtok(m) == pytest.approx(half)
    assert m.capacity_tok == pytest.approx(cap_full_mtok / 2 * MTOK)


def test_rented_machine_pays_rent_every_hour_and_no_energy():
    econ = rented(per_hour=2.49)
    assert hardware_usd_per_month(econ) == pytest.approx(2.49 * 720)
    m = cost_model(machine(tok_s=1000), econ)
    assert m.machine_fixed_usd == pytest.approx(1792.8)
    assert m.marginal_usd_per_mtok == 0.0
    be = break_even(m, 7.0)
    assert be.machines == 1 and be.volume_tok == pytest.approx(1792.8 / 7.0 * MTOK)
    # Lower utilization: same rent, less capacity, higher cost per token.
    half = cost_model(machine(tok_s=1000), rented(per_hour=2.49, utilization=0.5))
    assert cost_per_mtok(half) == pytest.approx(2 * cost_per_mtok(m, 1.0))


def test_more_volume_than_capacity_needs_more_machines():
    m = cost_model(machine(tok_s=10), owned())  # 25.92 M tokens/month per machine
    assert local_monthly_usd(m, 25.92e6)[0] == 1
    assert local_monthly_usd(m, 25.93e6)[0] == 2
    n, usd = local_monthly_usd(m, 100e6)
    assert n == 4
    assert usd == pytest.approx(4 * m.machine_fixed_usd + m.marginal_usd_per_mtok * 100)


def test_break_even_with_operations_cost_needs_several_machines():
    # A machine: $100/month fixed, 10 M tokens/month capacity, no energy; API $20/M:
    # a full machine saves $100/month. Ops $250/month: 3 machines, V = (250 + 300)/20.
    econ = Economics(name="x", kind="rented", rent_usd_per_hour=100 / 720,
                     ops_usd_per_month=250.0)
    m = cost_model(Measured(total_tok_s=10e6 / 2_592_000, input_share=0.5), econ)
    be = break_even(m, 20.0)
    assert be.machines == 3
    assert be.volume_tok == pytest.approx(27.5e6)
    assert "3 machines" in be.reason
    assert local_monthly_usd(m, be.volume_tok)[1] == pytest.approx(20.0 * 27.5)


def test_no_break_even_when_energy_alone_beats_the_api_price():
    m = cost_model(machine(tok_s=0.01, load_w=1000, idle_w=0), owned())
    be = break_even(m, 0.5)
    assert be.volume_tok is None and be.reason.startswith("energy alone")


def test_hybrid_runs_full_machines_and_sends_the_rest_to_the_api():
    # $100/month per machine, 10 M tokens/month each, API $20/M: a machine pays off
    # from 5 M tokens on. At 23 M: 2 full machines + 3 M on the API ($60) = $260 beats
    # 3 machines ($300) and pure API ($460).
    econ = Economics(name="x", kind="rented", rent_usd_per_hour=100 / 720)
    m = cost_model(Measured(total_tok_s=10e6 / 2_592_000, input_share=0.5), econ)
    h = hybrid_plan(m, 20.0, 23e6)
    assert (h.machines, h.local_tok, h.api_tok) == (2, pytest.approx(20e6), pytest.approx(3e6))
    assert h.usd == pytest.approx(260.0)
    assert h.local_only_usd == pytest.approx(300.0) and h.api_only_usd == pytest.approx(460.0)
    # At 27 M the third machine pays: all local.
    assert hybrid_plan(m, 20.0, 27e6).machines == 3
    # Below the break-even: pure API.
    assert hybrid_plan(m, 20.0, 4e6).machines == 0


def test_cached_input_price_applies_only_where_given():
    api = ApiPrice(name="a", input_usd_per_mtok=2.0, output_usd_per_mtok=8.0,
                   cached_input_usd_per_mtok=0.5, date="2025", source="test")
    no_cache = ApiPrice(name="b", input_usd_per_mtok=2.0, output_usd_per_mtok=8.0,
                        date="2025", source="test")
    assert blended_usd_per_mtok(api, 0.75) == pytest.approx(0.75 * 2 + 0.25 * 8)
    assert blended_usd_per_mtok(api, 0.75, 0.5) == pytest.approx(0.75 * 1.25 + 0.25 * 8)
    assert blended_usd_per_mtok(no_cache, 0.75, 0.5) == pytest.approx(0.75 * 2 + 0.25 * 8)


def test_sensitivity_moves_the_right_way():
    measured = machine()
    rows = sensitivity(measured, owned(), {"api": 3.0})
    by = {(r["parameter"], r["value"]): r for r in rows}
    base = by[("base", "")]["cost_per_mtok_at_utilization"]
    params = {r["parameter"] for r in rows}
    assert {"electricity", "utilization", "amortize months", "hardware price",
            "throughput", "pue"} <= params
    for (param, value), r in by.items():
        cost = r["cost_per_mtok_at_utilization"]
        if param == "electricity":
            assert (cost > base) == value.startswith("$0.5")  # 0.25 x 2
        if param == "hardware price":
            assert (cost > base) == value.endswith("(+25%)")
        if param == "throughput":
            assert (cost < base) == value.endswith("(+25%)")
        if param == "utilization":
            assert cost > base  # base is full utilization
        if param == "amortize months":
            assert (cost < base) == (int(value) > 36)
    assert sum(r["parameter"] == "rent" for r in sensitivity(measured, rented(), {"a": 3})) == 2


# ------------------------------------------------------------------ properties

prices = st.floats(min_value=10, max_value=100_000, allow_nan=False)
speeds = st.floats(min_value=0.1, max_value=50_000, allow_nan=False)
watts = st.floats(min_value=0, max_value=5_000, allow_nan=False)
utils = st.floats(min_value=0.01, max_value=1.0, allow_nan=False)
kwh = st.floats(min_value=0.01, max_value=1.0, allow_nan=False)
api_prices = st.floats(min_value=0.01, max_value=100, allow_nan=False)


@settings(deadline=None)  # timing-free: the CI machine is shared
@given(price=prices, factor=st.floats(min_value=1.01, max_value=10), tok_s=speeds,
       load=watts, u=utils, e=kwh)
def test_cost_rises_with_hardware_price(price, factor, tok_s, load, u, e):
    m = machine(tok_s=tok_s, load_w=load, idle_w=load / 3)
    cheap = cost_per_mtok(cost_model(m, owned(price=price, kwh=e, utilization=u)))
    dear = cost_per_mtok(cost_model(m, owned(price=price * factor, kwh=e, utilization=u)))
    assert dear > cheap


@settings(deadline=None)  # timing-free: the CI machine is shared
@given(tok_s=speeds, factor=st.floats(min_value=1.01, max_value=10), price=prices,
       load=watts, u=utils)
def test_cost_falls_with_throughput(tok_s, factor, price, load, u):
    econ = owned(price=price, utilization=u)
    slow = cost_per_mtok(cost_model(machine(tok_s=tok_s, load_w=load, idle_w=0), econ))
    fast = cost_per_mtok(cost_model(machine(tok_s=tok_s * factor, load_w=load, idle_w=0), econ))
    assert fast < slow


@settings(deadline=None)  # timing-free: the CI machine is shared
@given(price=prices, tok_s=speeds, load=watts, idle_frac=st.floats(0, 1), u=utils, e=kwh,
       p=api_prices, ops=st.floats(min_value=0, max_value=10_000))
def test_at_break_even_both_sides_cost_the_same(price, tok_s, load, idle_frac, u, e, p, ops):
    m = cost_model(machine(tok_s=tok_s, load_w=load, idle_w=load * idle_frac),
                   owned(price=price, kwh=e, utilization=u, ops=ops))
    be = break_even(m, p)
    if be.volume_tok is None:
        # No break-even: a full machine's tokens cost at least the API price, or the
        # fully used deployment never gets cheaper than the API.
        assert be.reason
        for n in (1, 2, 10, 1000):
            assert local_monthly_usd(m, n * m.capacity_tok)[1] >= p * n * m.capacity_tok / MTOK \
                - 1e-6 * p * n * m.capacity_tok / MTOK
        return
    n, local = local_monthly_usd(m, be.volume_tok)
    assert n == be.machines
    assert local == pytest.approx(p * be.volume_tok / MTOK, rel=1e-9)
    # Just below it the API is cheaper.
    below = be.volume_tok * (1 - 1e-6)
    assert local_monthly_usd(m, below)[1] > p * below / MTOK


@settings(deadline=None)  # timing-free: the CI machine is shared
@given(volume=st.floats(min_value=1, max_value=1e13), cap=st.floats(min_value=1, max_value=1e12))
def test_machines_needed_cover_the_volume_and_no_more(volume, cap):
    n = machines_needed(volume, cap)
    assert n >= 1
    assert n * cap >= volume * (1 - 1e-9)
    if n > 1:
        assert (n - 1) * cap < volume
    if volume > cap * (1 + 1e-9):
        assert n >= 2


@settings(deadline=None)  # timing-free: the CI machine is shared
@given(tok_s=speeds, u=utils)
def test_capacity_units(tok_s, u):
    # tokens/month = tokens/s x seconds in 30 days x utilization; linear in each.
    assert capacity_tok_per_month(tok_s, u) == pytest.approx(tok_s * 30 * 24 * 3600 * u)
    assert capacity_tok_per_month(2 * tok_s, u) == pytest.approx(
        2 * capacity_tok_per_month(tok_s, u))


@settings(deadline=None)  # timing-free: the CI machine is shared
@given(price=prices, tok_s=speeds, load=watts, u=utils, e=kwh, p=api_prices,
       volume=st.floats(min_value=1e3, max_value=1e12))
def test_hybrid_never_costs_more_than_either_pure_plan(price, tok_s, load, u, e, p, volume):
    m = cost_model(machine(tok_s=tok_s, load_w=load, idle_w=load / 2),
                   owned(price=price, kwh=e, utilization=u))
    h = hybrid_plan(m, p, volume)
    assert h.usd <= h.local_only_usd * (1 + 1e-9)
    assert h.usd <= h.api_only_usd * (1 + 1e-9) + 1e-9
    assert h.local_tok + h.api_tok == pytest.approx(volume)
    assert h.local_tok <= h.machines * m.capacity_tok * (1 + 1e-9)


@settings(deadline=None)  # timing-free: the CI machine is shared
@given(price=prices, tok_s=speeds, load=watts, u=utils, e=kwh)
def test_cost_per_mtok_times_volume_is_the_monthly_cost(price, tok_s, load, u, e):
    m = cost_model(machine(tok_s=tok_s, load_w=load, idle_w=load / 4),
                   owned(price=price, kwh=e, utilization=u))
    assume(m.capacity_tok > 0)
    monthly = local_monthly_usd(m, m.capacity_tok)[1]
    assert cost_per_mtok(m) * m.capacity_tok / MTOK == pytest.approx(monthly)
    assert math.isfinite(monthly)

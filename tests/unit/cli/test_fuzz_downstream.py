"""Property-based test of the commands that read result CSVs (compare, breakeven, report):
result files with odd but readable values (zeros, negatives, huge, inf, nan, empty cells,
partial rows, one scenario or many) give output or one error line, never a traceback."""

from __future__ import annotations

import contextlib
import csv
import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli.main import main
from harness.results.files import rows_to_csv
from harness.results.schema import TYPES
from tests.support.result_factory import row

EXAMPLES = max(10, int(os.environ.get("HARNESS_FUZZ_EXAMPLES", "200")) // 5)
NUMERIC = sorted(c for c, t in TYPES.items() if t in ("int", "float"))
ODD = ["", "0", "-1", "1e300", "nan", "inf", "-inf", "0.000001", "3"]


@st.composite
def result_files(draw: st.DrawFn) -> list[str]:
    """Texts of one or two result CSVs built from plausible rows, then damaged."""
    texts = []
    for _ in range(draw(st.integers(1, 2))):
        rows = [row(machine=draw(st.sampled_from(["cpu", "h100"])),
                    scenario=draw(st.sampled_from(["decode", "prefill", ""])),
                    concurrency=draw(st.sampled_from([1, 4])),
                    status=draw(st.sampled_from(["complete", "partial"])),
                    energy=draw(st.sampled_from([None, 10.0])))
                for _ in range(draw(st.integers(1, 3)))]
        table = list(csv.reader(io.StringIO(rows_to_csv(rows))))
        header = table[0]
        for cells in table[1:]:
            for col in draw(st.lists(st.sampled_from(NUMERIC), max_size=10)):
                cells[header.index(col)] = draw(st.sampled_from(ODD))
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(table)
        texts.append(buf.getvalue())
    return texts


def run_cli(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return code, err.getvalue()


@pytest.mark.slow  # 40 examples x three commands (report draws charts): ~30-60 s here
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(result_files())
def test_readers_of_results_never_crash(tmp_path_factory: pytest.TempPathFactory,
                                        texts: list[str]) -> None:
    d = tmp_path_factory.mktemp("results")
    paths = []
    for i, text in enumerate(texts):
        (d / f"r{i}.csv").write_text(text)
        paths.append(str(d / f"r{i}.csv"))
    for args in (["compare", *paths], ["compare", paths[0], "--baseline", paths[-1],
                                       "--fail-on-regression", "10"],
                 ["breakeven", *paths], ["breakeven", *paths, "--format", "json"],
                 ["report", *paths, "-o", str(d / "report.html")]):
        code, err = run_cli(args)  # an exception other than SystemExit fails the test
        assert code in (0, 1, 2), (args, code, err)
        if code == 2:
            assert len(err.strip().splitlines()) == 1, err

"""Result files: a CSV row per scenario, per-request JSONL, power timeline, machine.json.

Layout: `<output>/<machine_id>/machine.json` and, per run,
`<run_id>_<workload>.csv`, `<run_id>_<workload>.requests.jsonl`,
`<run_id>_<workload>.power.jsonl`. Requests are handed to a writer thread (the event
loop that times other streams does no file I/O): it writes each line and hands it to
the operating system as it comes, and at the end of each scenario the requests file is
fsynced before the CSV is rewritten to a temporary file and renamed. A run that is
interrupted or killed leaves valid files: every row counts exactly the requests of the
JSONL, and every completed request is in it unless the process was killed within the
moment between a request's end and its line's write.
"""

from __future__ import annotations

import csv
import json
import math
import os
import queue
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.results.imports import FORMATS_HELP, is_own_companion, read_foreign
from harness.results.schema import COLUMNS, TYPES, migrate
from harness.results.summary import run_summary, summary_json
from harness.secrets import redact, redact_obj


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` (secrets masked) to `path` through a temporary file and a rename."""
    text = redact(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ""
        return f"{value:.6g}" if abs(value) < 1e15 else repr(value)
    return str(value)


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV text with the schema's columns in order, then any extra columns sorted."""
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    columns = COLUMNS + extra
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_format(row.get(c)) for c in columns])
    return buf.getvalue()


def _parse(name: str, text: str) -> Any:
    if text == "":
        return None
    typ = TYPES.get(name, "str")
    try:
        if typ == "int":
            return int(float(text))
        if typ == "float":
            value = float(text)
            return value if math.isfinite(value) else None  # as the writer writes them
    except (ValueError, OverflowError):
        return text
    return text


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a result CSV, typed by the schema and migrated to the current version.

    A file that is not a well-formed result CSV raises UserError naming the file and
    line: more fields than the header, text in a numeric column, a newer schema."""
    rows: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            for raw in reader:
                where = f"{path}:{reader.line_num}"
                if None in raw:
                    raise UserError(f"{where}: more fields than the header has columns")
                parsed = {k: _parse(k, v or "") for k, v in raw.items()}
                for checked in (parsed, None):
                    if checked is None:  # after migration, once more
                        try:
                            checked = parsed = migrate(parsed)
                        except (ValueError, OverflowError, TypeError) as exc:
                            raise UserError(f"{where}: {exc}") from None
                    for name, value in checked.items():
                        if isinstance(value, str) and TYPES.get(name) in ("int", "float"):
                            raise UserError(f"{where}: column '{name}' must be a number, "
                                            f"got {value[:40]!r}")
                rows.append(parsed)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read as a result CSV ({exc})") from None
    return rows


class JsonlWriter:
    """Append-only JSON lines (secrets masked), each flushed (and fsynced unless
    `sync=False`: then `sync()` makes them durable) as written."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f = open(path, "a", encoding="utf-8")

    def write(self, obj: dict[str, Any], sync: bool = True) -> None:
        self._f.write(json.dumps(redact_obj(obj), default=str, allow_nan=False) + "\n")
        self._f.flush()
        if sync:
            os.fsync(self._f.fileno())

    def sync(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


class _Sync:
    """A marker in the writer's queue: fsync, then set `done`."""

    def __init__(self) -> None:
        self.done = threading.Event()


class BackgroundJsonl:
    """A JsonlWriter fed through a queue by a writer thread: `put` costs the caller a
    queue append; the thread builds each line (an item may be a dict or a function
    returning one), writes and flushes it; `sync()` waits until every line put before it
    is written and fsynced. A write that failed is raised by the next `sync()`."""

    def __init__(self, path: Path) -> None:
        self.writer = JsonlWriter(path)
        self.path = path
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="jsonl-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                if isinstance(item, _Sync):
                    try:
                        self.writer.sync()
                    finally:
                        item.done.set()
                    continue
                self.writer.write(item() if callable(item) else item, sync=False)
            except BaseException as exc:  # noqa: BLE001 - raised in the caller by sync()
                self._error = self._error or exc

    def put(self, item: dict[str, Any] | Callable[[], dict[str, Any]]) -> None:
        self._queue.put(item)

    def sync(self) -> None:
        """Every line put so far written and fsynced; a failed write raised here."""
        if self._thread.is_alive():
            marker = _Sync()
            self._queue.put(marker)
            marker.done.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        if self._thread.is_alive():
            self.sync()
            self._queue.put(None)
            self._thread.join()
        self.writer.close()


class RunFiles:
    """The files of one `harness bench` run for one workload on one machine."""

    def __init__(self, output_dir: Path, machine: dict[str, Any], run_id: str,
                 workload: str) -> None:
        self.dir = Path(output_dir) / machine["machine_id"]
        self.dir.mkdir(parents=True, exist_ok=True)
        stem = f"{run_id}_{workload}"
        self.csv_path = self.dir / f"{stem}.csv"
        self.requests_path = self.dir / f"{stem}.requests.jsonl"
        self.power_path = self.dir / f"{stem}.power.jsonl"
        self.machine_path = self.dir / "machine.json"
        self.server_log_path = self.dir / f"{stem}.server.log"
        self.server_metrics_path = self.dir / f"{stem}.server_metrics.json"
        self.summary_path = self.dir / f"{stem}.json"  # harness.results.summary
        self.run_id, self.workload, self.machine = run_id, workload, machine
        # engine, settings and labels of the run summary (set once the engine is open)
        self.summary_context: dict[str, Any] = {}
        self.server_metrics: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []
        self.requests = BackgroundJsonl(self.requests_path)
        self._power: JsonlWriter | None = None
        atomic_write_text(self.machine_path, json.dumps(machine, indent=2, default=str) + "\n")

    def add_request(self, record: dict[str, Any] | Callable[[], dict[str, Any]]) -> None:
        """Queue one request's line for the writer thread (a dict, or a function that
        builds it there); durable at the next `sync()` (every `add_row` syncs first)."""
        self.requests.put(record)

    def sync(self) -> None:
        """Every request and power line added so far written and fsynced."""
        self.requests.sync()
        if self._power is not None:
            self._power.sync()

    def add_power_sample(self, sample: dict[str, Any]) -> None:
        """Append one power sample (fsynced with the scenario's row)."""
        if self._power is None:
            self._power = JsonlWriter(self.power_path)
        self._power.write(sample, sync=False)

    def add_server_metrics(self, entry: dict[str, Any]) -> None:
        """Append one load level's engine-side metrics (vLLM /metrics) and rewrite the
        JSON file atomically."""
        self.server_metrics.append(entry)
        atomic_write_text(self.server_metrics_path,
                          json.dumps(self.server_metrics, indent=1, default=str) + "\n")

    def add_row(self, row: dict[str, Any]) -> None:
        """Append a scenario row and rewrite the CSV atomically, after every request line
        added before it is on disk (the row never counts a request the JSONL lacks)."""
        self.sync()
        self.rows.append(row)
        self.flush_rows()

    def flush_rows(self) -> None:
        """Rewrite the CSV and the run summary JSON (atomically) with the rows so far."""
        if self.rows:
            atomic_write_text(self.csv_path, rows_to_csv(self.rows))
            atomic_write_text(self.summary_path, summary_json(self.summary()))

    def summary(self) -> dict[str, Any]:
        """The run summary (`harness.results.summary.run_summary`) of the rows so far."""
        files = {"csv": self.csv_path.name, "requests": self.requests_path.name,
                 "machine": self.machine_path.name}
        return run_summary(self.rows, run_id=self.run_id, workload=self.workload,
                           machine=self.machine, files=files, **self.summary_context)

    def close(self) -> None:
        self.requests.close()
        if self._power is not None:
            self._power.close()

    def written(self) -> list[Path]:
        return [p for p in (self.csv_path, self.summary_path, self.requests_path,
                            self.power_path, self.machine_path, self.server_log_path,
                            self.server_metrics_path) if p.exists()]


def requests_path_for(csv_path: str | Path) -> Path:
    """The per-request JSONL written beside a result CSV (`<stem>.requests.jsonl`)."""
    path = Path(csv_path)
    return path.with_name(path.name.removesuffix(".csv") + ".requests.jsonl")


def read_request_records(csv_path: str | Path) -> list[dict[str, Any]] | None:
    """The per-request records written beside a result CSV, or None when there is no
    such file (CSVs copied without it). Lines that do not parse (the cut-off last line
    of a killed run) are skipped."""
    path = requests_path_for(csv_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    records = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            records.append(obj)
    return records


RESULT_SUFFIXES = (".csv", ".json", ".jsonl")


def copy_result_files(files: list[Path], dest: Path) -> list[Path]:
    """Copy result files into dest/<their folder's name>/ with what `harness bench` wrote
    beside each (the files sharing its stem: requests, power, server log and metrics, run
    summary) and the folder's machine.json; the copies, in order. For keeping a run as a
    baseline (`harness compare --new-hardware-baseline`)."""
    import shutil

    copied: list[Path] = []
    for f in files:
        target = dest / f.parent.name
        target.mkdir(parents=True, exist_ok=True)
        stem = f.name.removesuffix(f.suffix)
        beside = sorted(q for q in f.parent.glob(f"{stem}.*") if q.is_file())
        machine = f.parent / "machine.json"
        for src in [*beside, *([machine] if machine.is_file() else [])]:
            out = target / src.name
            if out not in copied:
                shutil.copy2(src, out)
                copied.append(out)
    return copied


def _candidates(paths: list[str | Path]) -> list[tuple[Path, bool]]:
    """(file, named by the user) for every possible result file: files as given, folders
    searched recursively for CSV, JSON and JSONL files (not hidden ones, not the requests,
    power and machine files `harness bench` writes beside its CSVs)."""
    found: list[tuple[Path, bool]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(q for q in p.rglob("*") if q.suffix.lower() in RESULT_SUFFIXES
                           and q.is_file() and not q.name.startswith(".")
                           and not is_own_companion(q))
            if not files:
                raise UserError(f"{p}: folder holds no result CSV files (nor JSON of other "
                                f"tools); give {FORMATS_HELP}, or a results/ folder written "
                                "by `harness bench`")
            found.extend((q, False) for q in files)
        elif p.is_file():
            found.append((p, True))
        else:
            raise UserError(f"{p}: no such file or folder")
    return found


def find_result_files(paths: list[str | Path]) -> list[Path]:
    """Possible result files named by the user: files as given, folders searched
    recursively (CSV, and JSON/JSONL of other tools; see `harness.results.imports`)."""
    return [p for p, _ in _candidates(paths)]


def _read_any(path: Path, named: bool) -> list[dict[str, Any]] | None:
    """Rows of one result file: our CSV, or another tool's file (`read_foreign`); None
    for a file found in a folder that is neither (e.g. a run summary JSON)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        try:
            with open(path, encoding="utf-8", newline="") as f:
                header = next(csv.reader(f), [])
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise UserError(f"{path}: cannot read as a result CSV ({exc})") from None
        if "schema_version" in header and "scenario" in header:
            try:
                return read_rows(path)
            except ValueError as exc:  # a schema newer than this harness
                raise UserError(f"{path}: {exc}") from None
    rows = read_foreign(path)
    if rows is not None:
        return [migrate(r) for r in rows]
    if named or suffix == ".csv":
        raise UserError(f"{path}: not a harness result file (no schema_version and scenario "
                        f"columns) nor another tool's known output; give {FORMATS_HELP}")
    return None


def load_frame(paths: list[str | Path]) -> Any:
    """All rows of the given result files/folders as one pandas DataFrame, migrated to
    the current schema; a `source_file` column says where each row came from. Other
    tools' files (vllm bench serve, guidellm, llama-bench) are read through
    `harness.results.imports`, with `source_tool` set."""
    import pandas as pd

    frames = []
    for path, named in _candidates(paths):
        rows = _read_any(path, named)
        if not rows:
            continue
        frame = pd.DataFrame(rows)
        frame["source_file"] = str(path)
        frames.append(frame)
    if not frames:
        raise UserError("no result rows found in " + ", ".join(map(str, paths)))
    return pd.concat(frames, ignore_index=True)

"""Prompts from real datasets: a JSONL file, a ShareGPT-format JSON file, or a Hugging
Face dataset (through the `datasets` library), read once and checked at the edge.

Sources (`dataset` in a scenario, `harness bench --dataset SOURCE`):
- `prompts.jsonl`: one JSON object per line, `{"prompt": "...", "output_tokens": 128}`
  or `{"messages": [{"role": "user", "content": "..."}, ...]}` (chat); `output_tokens`
  is optional; blank lines are skipped; other keys are ignored.
- `data.json`: a JSON array of such objects, or of ShareGPT conversations
  (`{"conversations": [{"from": "human", "value": "..."}, {"from": "gpt", ...}]}`): the
  first human turn is the prompt, the reply that follows sizes the output.
- a Hugging Face dataset: a folder written by `Dataset.save_to_disk`, a folder of data
  files, a `.parquet`/`.csv`/`.arrow` file, or `hf:owner/name[:split]` (the hub when
  online; the local cache offline, e.g. with HF_HUB_OFFLINE=1). Its rows have the same
  columns: `prompt`, `messages` or `conversations`, and optionally `output_tokens`.

A chat entry whose last message is the assistant's keeps that message as the reference
reply (not sent): like a ShareGPT reply, its length in the model's tokens is the output
length asked for. Bad input ends as one line naming the file, the line (or item, or row)
and the fix.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError, one_line

SAMPLES = ("random", "first")  # seeded random sample, or the first entries in file order
HF_PREFIX = "hf:"
_HF_FILE_KINDS = {".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
_USER_ROLES = ("user", "human")
_REPLY_ROLES = ("assistant", "gpt", "chatgpt", "bard", "bing", "model")
_FORMAT_HINT = ('one JSON object per line like {"prompt": "Explain KV caches.", '
                '"output_tokens": 128} or {"messages": [{"role": "user", "content": "..."}]}')


@dataclass(frozen=True)
class DatasetPrompt:
    """One entry: the prompt text, the chat messages (role, content) when it is a chat,
    the output length the dataset gives (`output_tokens`), or the reference reply whose
    length in tokens sizes the output (`reply`); `where` names its file and line."""

    prompt: str
    messages: tuple[tuple[str, str], ...] = ()
    output_tokens: int | None = None
    reply: str | None = None
    where: str = ""

    @property
    def gives_output_length(self) -> bool:
        """True when the dataset says how long the answer is."""
        return self.output_tokens is not None or bool(self.reply)


@dataclass(frozen=True)
class Dataset:
    """The entries of one dataset source, in file order, and how many were left out
    (ShareGPT conversations without a human turn followed by a reply)."""

    source: str
    kind: str  # jsonl | json | sharegpt | hf
    prompts: tuple[DatasetPrompt, ...]
    skipped: int = 0
    _orders: dict[tuple[str, int], tuple[int, ...]] = field(
        default_factory=dict, compare=False, hash=False, repr=False)

    def order(self, sample: str, seed: int) -> tuple[int, ...]:
        """Entry indices in the order requests draw them: file order for `first`
        (truncation), a permutation seeded by `seed` for `random` (made once)."""
        key = (sample, seed)
        if key not in self._orders:
            indices = list(range(len(self.prompts)))
            if sample == "random":
                random.Random(seed).shuffle(indices)
            self._orders[key] = tuple(indices)
        return self._orders[key]

    def pick(self, index: int, sample: str, seed: int) -> DatasetPrompt:
        """The entry request `index` sends: the `index`-th of `order`, wrapping around
        when a scenario asks for more requests than the dataset has."""
        order = self.order(sample, seed)
        return self.prompts[order[index % len(order)]]

    def length_bounds(self, count: int | None, sample: str,
                      seed: int) -> tuple[int, int | None]:
        """(prompt, output) upper bounds in tokens over the entries the first `count`
        requests draw (every entry when None), before any tokenizer is at hand: a prompt's
        UTF-8 bytes (a token of a byte-level or byte-fallback tokenizer holds at least one
        byte), an output's `output_tokens` or its reply's bytes; output None when none of
        them gives a length."""
        order = self.order(sample, seed)
        n = len(order) if count is None else min(count, len(order))
        chosen = [self.prompts[i] for i in order[:n]]
        longest_in = max(len(p.prompt.encode()) for p in chosen)
        outs = [p.output_tokens if p.output_tokens is not None else len(p.reply.encode())
                for p in chosen if p.gives_output_length and (p.output_tokens or p.reply)]
        return longest_in, max(outs) if outs else None

    def label(self, sample: str, seed: int) -> str:
        """How the rows name the prompts: source, kind, size, sampling and seed."""
        how = f"random, seed {seed}" if sample == "random" else "first entries"
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        return f"{self.source} ({self.kind}, {len(self.prompts)} prompts{skipped}; {how})"


def resolve_source(text: str, base_dir: Path | None = None) -> str:
    """A dataset source as written (flag or workload key) → `hf:...` unchanged, or an
    absolute path (relative paths are taken from `base_dir`, else the current folder)."""
    text = text.strip()
    if text.startswith(HF_PREFIX):
        return text
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return str(path.resolve())


def load_dataset(source: str) -> Dataset:
    """The entries of a dataset source (see the module docstring); read once per
    source and file version, then cached. Raises UserError naming file, line and fix."""
    if source.startswith(HF_PREFIX):
        return _load_cached(source, 0, 0)
    path = Path(source)
    try:
        stat = path.stat()
    except OSError:
        raise UserError(f"dataset not found: {source} (--dataset or the scenario's 'dataset'"
                        "); give a .jsonl, .json, .parquet, .csv or .arrow file, a folder "
                        "of a Hugging Face dataset, or hf:owner/name") from None
    return _load_cached(source, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _load_cached(source: str, mtime_ns: int, size: int) -> Dataset:
    if source.startswith(HF_PREFIX):
        return _from_hf(source)
    path = Path(source)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in _HF_FILE_KINDS:
        return _from_hf(source)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save "
                        "the dataset as UTF-8") from None
    except OSError as exc:
        raise UserError(f"cannot read dataset {path}: {exc.strerror or exc}") from None
    if suffix == ".json":
        return _from_json(path, text)
    return _from_jsonl(path, text)


# -- JSONL ------------------------------------------------------------------------------


def _from_jsonl(path: Path, text: str) -> Dataset:
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(one_line(f"{where}: not valid JSON ({exc.msg} at column "
                                     f"{exc.colno}); write {_FORMAT_HINT}")) from None
        prompts.append(_entry(obj, where))
    if not prompts:
        raise UserError(f"{path}: holds no prompts; write {_FORMAT_HINT}")
    return Dataset(str(path), "jsonl", tuple(prompts))


# -- JSON array (records or ShareGPT) ---------------------------------------------------


def _json_items(path: Path, text: str) -> list[tuple[int, Any]]:
    """(line, item) for each element of a top-level JSON array, decoded one by one so
    that every item keeps the line it starts on."""
    decoder = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if i >= len(text) or text[i] != "[":
        what = "empty" if i >= len(text) else f"starts with {text[i]!r}"
        raise UserError(f"{path}:{text.count(chr(10), 0, i) + 1}: a JSON dataset must be "
                        f"an array of prompts ({what}); write [{{\"prompt\": \"...\"}}, ...], "
                        "a ShareGPT file, or use .jsonl for one object per line")
    items: list[tuple[int, Any]] = []
    i = _skip_ws(text, i + 1)
    while i < len(text) and text[i] != "]":
        line = text.count("\n", 0, i) + 1
        try:
            item, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise UserError(one_line(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at "
                                     f"column {exc.colno}); fix the item that starts on "
                                     f"line {line}")) from None
        items.append((line, item))
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
        elif i < len(text) and text[i] != "]":
            raise UserError(f"{path}:{text.count(chr(10), 0, i) + 1}: expected ',' or ']' "
                            "after an item; separate the items with commas")
    if i >= len(text):
        raise UserError(f"{path}: the JSON array is not closed; end the file with ']'")
    return items


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n\ufeff":
        i += 1
    return i


def _from_json(path: Path, text: str) -> Dataset:
    items = _json_items(path, text)
    if not items:
        raise UserError(f"{path}: holds no prompts (an empty array); write "
                        "[{\"prompt\": \"...\"}, ...] or a ShareGPT file")
    sharegpt = isinstance(items[0][1], dict) and "conversations" in items[0][1]
    prompts, skipped = [], 0
    for line, item in items:
        where = f"{path}:{line}"
        if sharegpt:
            entry = _sharegpt_entry(item, where)
            if entry is None:
                skipped += 1
                continue
            prompts.append(entry)
        else:
            prompts.append(_entry(item, where))
    if not prompts:
        raise UserError(f"{path}: none of its {len(items)} conversations has a human turn "
                        "followed by a reply; give ShareGPT conversations like "
                        '{"conversations": [{"from": "human", "value": "..."}, '
                        '{"from": "gpt", "value": "..."}]}')
    return Dataset(str(path), "sharegpt" if sharegpt else "json", tuple(prompts), skipped)


# -- entries ----------------------------------------------------------------------------


def _entry(obj: Any, where: str) -> DatasetPrompt:
    """One record: `prompt` text or chat `messages` (or ShareGPT `conversations`), and
    an optional `output_tokens`."""
    if not isinstance(obj, dict):
        raise UserError(one_line(f"{where}: expected a JSON object, got "
                                 f"{type(obj).__name__}; write {_FORMAT_HINT}"))
    output = _output_tokens(obj, where)
    if "prompt" in obj:
        prompt = obj["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError(one_line(f"{where}: 'prompt' must be non-empty text, got "
                                     f"{_show(prompt)}"))
        return DatasetPrompt(prompt, output_tokens=output, where=where)
    if "messages" in obj:
        messages = _messages(obj["messages"], where, "messages", "role", "content")
        return _chat_entry(messages, output, where)
    if "conversations" in obj:
        entry = _sharegpt_entry(obj, where)
        if entry is None:
            raise UserError(one_line(f"{where}: the conversation has no human turn followed "
                                     "by a reply; start it with {\"from\": \"human\", ...}"))
        return DatasetPrompt(entry.prompt, entry.messages, output, entry.reply, where)
    keys = ", ".join(sorted(map(str, obj))) or "none"
    raise UserError(one_line(f"{where}: no 'prompt' or 'messages' (keys: {keys}); write "
                             f"{_FORMAT_HINT}"))


def _output_tokens(obj: dict[str, Any], where: str) -> int | None:
    value = obj.get("output_tokens")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(one_line(f"{where}: 'output_tokens' must be an integer >= 1, got "
                                 f"{_show(value)}; leave it out to use the scenario's"))
    return value


def _messages(raw: Any, where: str, key: str, role_key: str,
              content_key: str) -> list[tuple[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise UserError(one_line(f"{where}: '{key}' must be a non-empty list like "
                                 f'[{{"{role_key}": "user", "{content_key}": "..."}}], got '
                                 f"{_show(raw)}"))
    out = []
    for n, message in enumerate(raw, start=1):
        role = message.get(role_key) if isinstance(message, dict) else None
        content = message.get(content_key) if isinstance(message, dict) else None
        if not isinstance(role, str) or not isinstance(content, str):
            raise UserError(one_line(f"{where}: {key}[{n}] needs '{role_key}' and "
                                     f"'{content_key}' text, got {_show(message)}"))
        out.append((role.lower(), content))
    return out


def _chat_entry(messages: list[tuple[str, str]], output: int | None,
                where: str) -> DatasetPrompt:
    """A chat: the messages up to the last user turn are sent; a final assistant turn is
    the reference reply."""
    reply = None
    if len(messages) > 1 and messages[-1][0] in _REPLY_ROLES:
        reply = messages[-1][1]
        messages = messages[:-1]
    if not any(role in _USER_ROLES for role, _ in messages):
        raise UserError(one_line(f"{where}: 'messages' has no user turn; add "
                                 '{"role": "user", "content": "..."}'))
    if not any(content.strip() for _, content in messages):
        raise UserError(one_line(f"{where}: 'messages' holds no text"))
    return DatasetPrompt(flatten(messages), tuple(messages), output, reply or None, where)


def _sharegpt_entry(item: Any, where: str) -> DatasetPrompt | None:
    """The first human turn and the reply after it, or None when the conversation has no
    such pair (such conversations are counted as skipped, as peers skip them)."""
    if not isinstance(item, dict) or "conversations" not in item:
        keys = ", ".join(sorted(map(str, item))) if isinstance(item, dict) else \
            type(item).__name__
        raise UserError(one_line(f"{where}: a ShareGPT item needs 'conversations' (found: "
                                 f"{keys}); write {{\"conversations\": [{{\"from\": "
                                 '"human", "value": "..."}, {"from": "gpt", "value": '
                                 '"..."}]}'))
    turns = _messages(item["conversations"], where, "conversations", "from", "value") \
        if item["conversations"] else []
    for k, (role, text) in enumerate(turns[:-1]):
        if role in _USER_ROLES and text.strip():
            reply_role, reply = turns[k + 1]
            if reply_role in _REPLY_ROLES and reply.strip():
                return DatasetPrompt(text, output_tokens=None, reply=reply, where=where)
            return None
    return None


def flatten(messages: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> str:
    """The text of chat messages as one prompt (for completions endpoints and counting):
    their contents, a blank line apart."""
    return "\n\n".join(content for _, content in messages)


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- Hugging Face datasets ---------------------------------------------------------------


def _from_hf(source: str) -> Dataset:
    """Rows of a Hugging Face dataset (a saved folder, data files, or a hub id) read
    through the `datasets` library."""
    try:
        import datasets as hf  # optional and heavy: only for Hugging Face sources
    except ImportError:
        raise UserError(f"{source}: reading Hugging Face datasets needs the `datasets` "
                        "package: pip install datasets (or use a .jsonl/.json file)") from None
    hf.disable_progress_bars()  # the harness draws its own progress
    hf.logging.set_verbosity_error()
    try:
        rows, name = _hf_rows(hf, source)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the library's many errors end as one line
        hint = ("; offline, a hub dataset must already be in the Hugging Face cache "
                "(HF_HUB_OFFLINE=1 reads it from there)" if source.startswith(HF_PREFIX)
                else "; give a folder written by Dataset.save_to_disk, a folder of data "
                "files, or a .parquet/.csv/.arrow file")
        raise UserError(one_line(f"{source}: cannot load as a Hugging Face dataset "
                                 f"({type(exc).__name__}: {exc}){hint}")) from None
    columns = list(getattr(rows, "column_names", None) or [])
    if not any(c in columns for c in ("prompt", "messages", "conversations")):
        raise UserError(one_line(f"{source}: no 'prompt', 'messages' or 'conversations' "
                                 f"column (columns: {', '.join(columns) or 'none'}); rename "
                                 "the prompt column to 'prompt' (dataset.rename_column)"))
    if len(rows) == 0:
        raise UserError(f"{source}: the dataset holds no rows; give one with prompts")
    prompts, skipped = [], 0
    sharegpt = "prompt" not in columns and "messages" not in columns
    for n, row in enumerate(rows, start=1):
        where = f"{source} row {n}"
        record = {k: v for k, v in row.items() if k in ("prompt", "messages",
                                                          "conversations", "output_tokens")}
        if sharegpt:
            entry = _sharegpt_entry(record, where)
            if entry is None:
                skipped += 1
                continue
            prompts.append(DatasetPrompt(entry.prompt, entry.messages,
                                         _output_tokens(record, where), entry.reply, where))
        else:
            if record.get("prompt") is None:
                record.pop("prompt", None)  # a column present but empty in this row
            prompts.append(_entry(record, where))
    if not prompts:
        raise UserError(f"{source}: none of its {len(rows)} conversations has a human turn "
                        "followed by a reply")
    return Dataset(name, "hf", tuple(prompts), skipped)


def _hf_rows(hf: Any, source: str) -> tuple[Any, str]:
    """(rows, name) of a Hugging Face source: one split of it."""
    if source.startswith(HF_PREFIX):
        ident, _, split = source[len(HF_PREFIX):].partition(":")
        if not ident:
            raise UserError(f"{source}: give the dataset id, like hf:owner/name or "
                            "hf:owner/name:test")
        return hf.load_dataset(ident, split=split or "train"), source
    path = Path(source)
    if path.is_dir() and ((path / "state.json").is_file()
                          or (path / "dataset_dict.json").is_file()):
        loaded = hf.load_from_disk(str(path))
    elif path.is_dir():
        loaded = hf.load_dataset(str(path))
    else:
        loaded = hf.load_dataset(_HF_FILE_KINDS[path.suffix.lower()], data_files=str(path))
    if isinstance(loaded, hf.DatasetDict):
        split = "train" if "train" in loaded else next(iter(loaded), None)
        if split is None:
            raise UserError(f"{source}: the dataset has no splits")
        loaded = loaded[split]
    return loaded, source


__all__ = ["Dataset", "DatasetPrompt", "SAMPLES", "flatten", "load_dataset",
           "resolve_source"]

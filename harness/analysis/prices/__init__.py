"""The dated, sourced price catalog: hardware purchase prices, cloud GPU hourly rates and
API prices per million tokens, read from TOML.

The built-in catalog is `harness/analysis/prices/catalog.toml` (the source article's figures
first). Each API offer names the model it serves (`model`, for hosted open-weight models)
and its class (`class`: tiny, small, mid, frontier), and `[[model]]` entries tell which
open model (and so which class) a local run measured, so the break-even compares like for
like first (`like_for_like`) and labels a cross-class comparison as such. Users add or replace entries with their own files (`--prices FILE`, or the
`HARNESS_PRICES` environment variable: paths separated by the OS path separator); an entry
with the same name or alias replaces the built-in one whole. Every entry needs `date` and
`source`; bad files are reported as one line naming the file, the entry and the key.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError, did_you_mean

BUILTIN_CATALOG = Path(__file__).with_name("catalog.toml")
ENV_VAR = "HARNESS_PRICES"

_HARDWARE_KEYS = {"name", "aliases", "kind", "purchase_usd", "amortize_months", "usd_per_hour",
                  "power_w", "idle_power_w", "claimed_tok_s", "match", "date", "source", "note"}
_API_KEYS = {"name", "aliases", "input_usd_per_mtok", "output_usd_per_mtok",
             "cached_input_usd_per_mtok", "model", "class", "date", "source", "note"}
_MODEL_KEYS = {"name", "aliases", "class", "match", "params_b", "note"}
# Capability classes, coarse on purpose: an open model's class is its [[model]] entry's,
# else it follows from its parameter count (CLASS_BY_PARAMS_B); a closed API's is given.
CLASSES = ("tiny", "small", "mid", "frontier")
CLASS_BY_PARAMS_B = ((2.0, "tiny"), (15.0, "small"), (120.0, "mid"))  # below -> class
_DEFAULT_KEYS = {"electricity_usd_per_kwh", "pue", "amortize_months", "apis", "date", "source",
                 "note"}
_TOP_KEYS = {"defaults", "hardware", "api", "model"}


@dataclass(frozen=True)
class HardwarePrice:
    """A machine you buy (`owned`: purchase price, amortized) or rent (`rented`: per hour)."""

    name: str
    kind: str  # owned | rented
    date: str
    source: str
    purchase_usd: float | None = None
    amortize_months: float | None = None
    usd_per_hour: float | None = None
    power_w: float | None = None
    idle_power_w: float | None = None
    claimed_tok_s: float | None = None
    match: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class ApiPrice:
    """A hosted API's list price per million tokens (input, output, cached input)."""

    name: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    date: str
    source: str
    cached_input_usd_per_mtok: float | None = None
    aliases: tuple[str, ...] = ()
    note: str = ""
    model: str = ""  # the open-weight model a hosted offer serves ([[model]] name); "" closed
    model_class: str = ""  # tiny | small | mid | frontier; "" unknown


@dataclass(frozen=True)
class ModelInfo:
    """An open-weight model a local run may measure: its name, class and the patterns
    (regular expressions, any case) that find it in a result row's model and path."""

    name: str
    model_class: str
    match: tuple[str, ...] = ()
    params_b: float | None = None
    aliases: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class LocalModel:
    """What a result row measured, as the catalog sees it: the [[model]] it is (or ""),
    its class (or "") and how that was found."""

    label: str  # the row's model as written
    name: str
    model_class: str
    how: str  # "catalog" | "parameter count" | "unknown"


@dataclass(frozen=True)
class Defaults:
    """Catalog-wide defaults: electricity price, PUE, amortization, APIs compared."""

    electricity_usd_per_kwh: float = 0.119
    pue: float = 1.0
    amortize_months: float = 36.0
    apis: tuple[str, ...] = ()
    date: str = ""
    source: str = ""


@dataclass(frozen=True)
class Catalog:
    """Hardware and API prices by name, with the files they came from."""

    hardware: dict[str, HardwarePrice]
    apis: dict[str, ApiPrice]
    defaults: Defaults
    files: tuple[str, ...] = field(default=())
    models: dict[str, ModelInfo] = field(default_factory=dict)

    def local_model(self, row: dict[str, Any]) -> LocalModel:
        """The open model a result row measured: the first [[model]] entry whose `match`
        fits its model name or path, else a class from its parameter count."""
        label = str(row.get("model") or row.get("model_path") or "?")
        fields = [str(row.get(k) or "") for k in ("model", "model_path")]
        for m in self.models.values():
            if any(re.search(pat, f, re.IGNORECASE) for pat in m.match for f in fields if f):
                return LocalModel(label, m.name, m.model_class, "catalog")
        cls = class_from_params(row.get("model_params"))
        return LocalModel(label, "", cls or "", "parameter count" if cls else "unknown")

    def hardware_named(self, name: str) -> HardwarePrice:
        """The hardware entry with this name or alias; UserError naming the nearest."""
        found = _lookup(self.hardware, name)
        if found is None:
            names = _names(self.hardware)
            raise UserError(f"--hardware {name!r}: not in the price catalog."
                            f"{did_you_mean(name, names)} Known: {', '.join(sorted(self.hardware))}"
                            " (or add a [[hardware]] entry with --prices FILE)")
        return found

    def api_named(self, name: str) -> ApiPrice:
        """The API entry for this name, alias or model id; UserError naming the nearest."""
        found = find_api(self, name)
        if found is None:
            names = _names(self.apis)
            raise UserError(f"--api {name!r}: not in the price catalog."
                            f"{did_you_mean(name, names)} Known: {', '.join(sorted(self.apis))}"
                            " (or add an [[api]] entry with --prices FILE)")
        return found

    def hardware_for(self, row: dict[str, Any]) -> list[HardwarePrice]:
        """Hardware entries whose `match` patterns (regular expressions, any case) fit
        this result row's machine, in catalog order: its GPU name where it has a GPU,
        else its CPU model; or its machine_id or hostname."""
        device = "gpu_name" if str(row.get("gpu_name") or "") else "cpu_model"
        fields = [str(row.get(k) or "") for k in (device, "machine_id", "hostname")]
        found = []
        for hw in self.hardware.values():
            if any(re.search(pat, f, re.IGNORECASE) for pat in hw.match for f in fields if f):
                found.append(hw)
        return found


def class_from_params(params: Any) -> str | None:
    """The class of an open model of this many parameters (CLASS_BY_PARAMS_B), or None."""
    try:
        n = float(params)
    except (TypeError, ValueError):
        return None
    if not n > 0:
        return None
    for limit_b, cls in CLASS_BY_PARAMS_B:
        if n < limit_b * 1e9:
            return cls
    return "frontier"


def comparison(local: LocalModel, api: ApiPrice) -> tuple[int, str, str]:
    """How a local run compares with an API offer: (rank, kind, label); rank 0 the same
    open model, 1 the same class, 2 another class, 3 a class unknown on one side."""
    served = api.model or api.name
    api_text = f"{served} ({api.model_class})" if api.model_class else served
    if local.name and api.model and local.name == api.model:
        return 0, "same model", f"same model: {local.name}"
    if local.model_class and api.model_class and local.model_class == api.model_class:
        return 1, "same class", (f"same class ({local.model_class}): local "
                                 f"{local.name or local.label} vs {served}")
    if local.model_class and api.model_class:
        return 2, "cross-class", (f"CROSS-CLASS: local {local.model_class} "
                                  f"{local.name or local.label} vs {api.model_class} {served}")
    return 3, "class unknown", (f"class unknown: local {local.name or local.label} "
                                f"({local.model_class or '?'}) vs {api_text}")


def like_for_like(catalog: Catalog, local: LocalModel,
                  names: list[str] | None = None) -> list[ApiPrice]:
    """The APIs to compare a local run with, like for like first. Given `names`, those,
    ordered same model, same class, then the rest. Else every offer of the same open
    model, then the two cheapest offers of the same class (where there are none of either:
    the two cheapest of the nearest class), then the catalog's default APIs (which may be
    of another class: the source article's local-vs-Claude case)."""
    if names:
        apis = [catalog.api_named(n) for n in names]
        return sorted(apis, key=lambda a: comparison(local, a)[0])
    def cheapest(cls: str) -> list[ApiPrice]:
        return sorted((a for a in catalog.apis.values() if a.model_class == cls
                       and comparison(local, a)[0] != 0),
                      key=lambda a: (a.output_usd_per_mtok, a.input_usd_per_mtok))[:2]

    same = [a for a in catalog.apis.values() if comparison(local, a)[0] == 0]
    klass = cheapest(local.model_class) if local.model_class else []
    nearest: list[ApiPrice] = []
    if not same and not klass and local.model_class:  # the closest class offered
        here = CLASSES.index(local.model_class)
        for cls in sorted(CLASSES, key=lambda c: (abs(CLASSES.index(c) - here), c)):
            nearest = cheapest(cls)
            if nearest:
                break
    chosen = list(dict.fromkeys([*same, *klass, *nearest,
                                 *(catalog.api_named(n) for n in catalog.defaults.apis)]))
    return sorted(chosen, key=lambda a: comparison(local, a)[0])


def _names(entries: dict[str, Any]) -> list[str]:
    out = list(entries)
    for e in entries.values():
        out.extend(e.aliases)
    return out


def _lookup(entries: dict[str, Any], name: str) -> Any:
    key = name.strip().lower()
    for e in entries.values():
        if key == e.name.lower() or key in (a.lower() for a in e.aliases):
            return e
    return None


_VERSION_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def find_api(catalog: Catalog, name_or_model: str) -> ApiPrice | None:
    """The API entry for a catalog name, an alias, or a model id as APIs report it:
    a provider prefix (`openai/gpt-4o`) and a dated suffix (`gpt-4o-mini-2024-07-18`,
    `claude-sonnet-4-20250514`, `-latest`) are ignored. None when unknown."""
    text = name_or_model.strip()
    candidates = [text]
    if "/" in text:
        candidates.append(text.rsplit("/", 1)[1])
    for c in list(candidates):
        stripped = _VERSION_SUFFIX.sub("", c)
        if stripped != c:
            candidates.append(stripped)
    for c in candidates:
        found = _lookup(catalog.apis, c)
        if found is not None:
            return found
    return None


def _date_text(value: Any, where: str) -> str:
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()[:10]
    if isinstance(value, str) and re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", value.strip()):
        return value.strip()
    raise UserError(f"{where}: date must be 'YYYY', 'YYYY-MM' or 'YYYY-MM-DD' (got {value!r})")


def _positive(entry: dict[str, Any], key: str, where: str, required: bool = False) -> float | None:
    value = entry.get(key)
    if value is None:
        if required:
            raise UserError(f"{where}: needs {key} = <number > 0>")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UserError(f"{where}: {key} must be a number > 0 (got {value!r})")
    return float(value)


def _check_keys(entry: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in entry:
        if key not in allowed:
            raise UserError(f"{where}: unknown key {key!r}.{did_you_mean(key, sorted(allowed))}"
                            f" Allowed: {', '.join(sorted(allowed))}")


def _str_tuple(entry: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = entry.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def _dated(entry: dict[str, Any], where: str) -> tuple[str, str]:
    if "date" not in entry or not str(entry.get("source") or "").strip():
        raise UserError(f"{where}: every price needs date = \"YYYY-MM-DD\" and source = "
                        "\"where the figure comes from\"")
    return _date_text(entry["date"], where), str(entry["source"]).strip()


def _parse_hardware(entry: dict[str, Any], path: str, i: int) -> HardwarePrice:
    name = entry.get("name")
    where = f"{path}: [[hardware]] #{i + 1}" + (f" {name!r}" if name else "")
    _check_keys(entry, _HARDWARE_KEYS, where)
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{where}: needs name = \"...\"")
    date, source = _dated(entry, where)
    kind = entry.get("kind", "owned")
    if kind not in ("owned", "rented"):
        raise UserError(f"{where}: kind must be 'owned' or 'rented' (got {kind!r})")
    if kind == "owned":
        purchase = _positive(entry, "purchase_usd", where, required=True)
        hourly = None
        if "usd_per_hour" in entry:
            raise UserError(f"{where}: usd_per_hour is for kind = 'rented'")
    else:
        hourly = _positive(entry, "usd_per_hour", where, required=True)
        purchase = None
        if "purchase_usd" in entry or "amortize_months" in entry:
            raise UserError(f"{where}: purchase_usd/amortize_months are for kind = 'owned'")
    patterns = _patterns(entry, where)
    return HardwarePrice(
        name=name.strip(), kind=kind, date=date, source=source, purchase_usd=purchase,
        amortize_months=_positive(entry, "amortize_months", where), usd_per_hour=hourly,
        power_w=_positive(entry, "power_w", where),
        idle_power_w=_positive(entry, "idle_power_w", where),
        claimed_tok_s=_positive(entry, "claimed_tok_s", where), match=patterns,
        aliases=_str_tuple(entry, "aliases", where), note=str(entry.get("note", "")))


def _patterns(entry: dict[str, Any], where: str) -> tuple[str, ...]:
    """The entry's `match` list, each a checked regular expression."""
    patterns = _str_tuple(entry, "match", where)
    for pat in patterns:
        try:
            re.compile(pat)
        except re.error as exc:
            raise UserError(f"{where}: match pattern {pat!r} is not a regular expression "
                            f"({exc})") from None
    return patterns


def _class(entry: dict[str, Any], where: str, required: bool = False) -> str:
    value = entry.get("class", "")
    if (required or value != "") and value not in CLASSES:
        raise UserError(f"{where}: class must be one of {', '.join(CLASSES)} (got {value!r})")
    return str(value)


def _parse_model(entry: dict[str, Any], path: str, i: int) -> ModelInfo:
    name = entry.get("name")
    where = f"{path}: [[model]] #{i + 1}" + (f" {name!r}" if name else "")
    _check_keys(entry, _MODEL_KEYS, where)
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{where}: needs name = \"...\"")
    patterns = _patterns(entry, where)
    return ModelInfo(name=name.strip(), model_class=_class(entry, where, required=True),
                     match=patterns, params_b=_positive(entry, "params_b", where),
                     aliases=_str_tuple(entry, "aliases", where),
                     note=str(entry.get("note", "")))


def _parse_api(entry: dict[str, Any], path: str, i: int) -> ApiPrice:
    name = entry.get("name")
    where = f"{path}: [[api]] #{i + 1}" + (f" {name!r}" if name else "")
    _check_keys(entry, _API_KEYS, where)
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{where}: needs name = \"...\"")
    model = entry.get("model", "")
    if not isinstance(model, str):
        raise UserError(f"{where}: model must be the name of a [[model]] entry (a string)")
    date, source = _dated(entry, where)
    return ApiPrice(
        name=name.strip(),
        input_usd_per_mtok=_positive(entry, "input_usd_per_mtok", where, required=True) or 0.0,
        output_usd_per_mtok=_positive(entry, "output_usd_per_mtok", where, required=True) or 0.0,
        cached_input_usd_per_mtok=_positive(entry, "cached_input_usd_per_mtok", where),
        date=date, source=source, aliases=_str_tuple(entry, "aliases", where),
        note=str(entry.get("note", "")), model=model.strip(),
        model_class=_class(entry, where))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--prices {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--prices {path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"--prices {path}: not valid TOML ({exc})") from None


def _replace(entries: dict[str, Any], new: Any) -> None:
    """Insert `new`, replacing any entry whose name or aliases it shares; the replaced
    entry's names stay aliases of the new one, so references to them still resolve."""
    keys = {new.name.lower(), *(a.lower() for a in new.aliases)}
    inherited: list[str] = []
    for name, old in list(entries.items()):
        if keys & {old.name.lower(), *(a.lower() for a in old.aliases)}:
            del entries[name]
            inherited += [n for n in (old.name, *old.aliases) if n.lower() not in keys]
    if inherited:
        new = dataclasses.replace(new, aliases=(*new.aliases, *inherited))
    entries[new.name] = new


def parse_catalog(docs: list[tuple[str, dict[str, Any]]]) -> Catalog:
    """A catalog from parsed TOML documents (label, data), later ones overriding earlier."""
    hardware: dict[str, HardwarePrice] = {}
    apis: dict[str, ApiPrice] = {}
    models: dict[str, ModelInfo] = {}
    defaults: dict[str, Any] = {}
    for label, data in docs:
        _check_keys(data, _TOP_KEYS, label)
        d = data.get("defaults", {})
        if not isinstance(d, dict):
            raise UserError(f"{label}: [defaults] must be a table")
        where = f"{label}: [defaults]"
        _check_keys(d, _DEFAULT_KEYS, where)
        for key in ("electricity_usd_per_kwh", "amortize_months", "pue"):
            if key in d:
                defaults[key] = _positive(d, key, where)
        if "pue" in defaults and defaults["pue"] < 1.0:
            raise UserError(f"{where}: pue must be >= 1.0 (got {defaults['pue']})")
        if "apis" in d:
            defaults["apis"] = _str_tuple(d, "apis", where)
        for key in ("date", "source"):
            if key in d:
                defaults[key] = str(d[key])
        for section, parse, target in (("hardware", _parse_hardware, hardware),
                                       ("api", _parse_api, apis),
                                       ("model", _parse_model, models)):
            entries = data.get(section, [])
            if not isinstance(entries, list):
                raise UserError(f"{label}: {section} must be written as [[{section}]] tables")
            for i, entry in enumerate(entries):
                _replace(target, parse(entry, label, i))
    catalog = Catalog(hardware=hardware, apis=apis, defaults=Defaults(**defaults),
                      files=tuple(label for label, _ in docs), models=models)
    for name in catalog.defaults.apis:
        catalog.api_named(name)
    return catalog


def load_catalog(extra: list[Path] | None = None) -> Catalog:
    """The built-in catalog, then files named in $HARNESS_PRICES, then `extra` files;
    later entries replace earlier ones with the same name."""
    paths = [BUILTIN_CATALOG]
    env = os.environ.get(ENV_VAR, "")
    paths += [Path(p) for p in env.split(os.pathsep) if p.strip()]
    paths += [Path(p) for p in (extra or [])]
    return parse_catalog([(str(p), _read_toml(p)) for p in paths])


@functools.lru_cache(maxsize=1)
def _default_catalog() -> Catalog:
    return load_catalog()


def api_price(name_or_model: str) -> tuple[float, float] | None:
    """(input, output) USD per million tokens for an API name or model id, from the
    built-in catalog plus $HARNESS_PRICES; None when the catalog does not know it."""
    found = find_api(_default_catalog(), name_or_model)
    if found is None:
        return None
    return (found.input_usd_per_mtok, found.output_usd_per_mtok)


__all__ = ["CLASSES", "ApiPrice", "Catalog", "Defaults", "HardwarePrice", "LocalModel",
           "ModelInfo", "api_price", "class_from_params", "comparison", "find_api",
           "like_for_like", "load_catalog", "parse_catalog"]

"""Signal files as their sources let people download them, recognised by content.

- our CSV (docs/contracts.md: `time,country,region,asn,signal,value`);
- IODA's dashboard CSV export: `"Time (UTC)"` then one column per signal, one row per bin, values normalised
  (percent of the signal's own baseline) or raw; the entity is not in the file, only in its name
  (`ioda-iran-(islamic-republic-of)-26-01-01-00-00-normalized.csv`);
- IODA's API v2 answer to `signals/raw/{entityType}/{code}`: `{"type": "signals", "error": null,
  "data": [[{"entityType", "entityCode", "datasource", "subtype", "from", "step", "values": [...]}, ...]]}`;
- Cloudflare Radar's API answer for a time series (netflows, HTTP requests): `{"success": true, "errors": [],
  "result": {"meta": {...}, "serie_0": {"timestamps": [...], "values": [...]}}}`; the location is only in the
  request, so the entity comes from the flags.

Each series gets the signal name its source uses (IODA's datasource ids), so the detector's per-signal
thresholds apply. A file that is none of these, a source's error answer, or a file whose entity cannot be known
raises one ParseError before anything is read into the store; a bad row inside a good file is a ParseError item
naming file:line, and the rest is kept.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from observatory.csvrows import BadRow, CsvRows
from observatory.errors import ParseError
from observatory.signals import (
    CSV_COLUMNS,
    MAX_FIELD,
    SignalPoint,
    country_code,
    parse_signal_time,
    read_signals_csv,
)

IODA_TIME_COLUMN = "time (utc)"
MAX_JSON_BYTES = 200 * 1024 * 1024  # two months of 5-minute bins for many series is a few MB; this is a guard

# IODA's dashboard column titles -> IODA's datasource ids (the names its API and our thresholds use)
IODA_COLUMNS = (("bgp", "bgp"), ("active probing", "ping-slash24"), ("telescope", "merit-nt"),
                ("mozilla", "mozilla"))
# Google Transparency Report products: the dashboard shows the product, the API gives it as the subtype
GOOGLE_SUBTYPES = {"search": "WEB_SEARCH"}


@dataclass(frozen=True, slots=True)
class Entity:
    """What the series describe, when the file does not say: a country, optionally a region or a network."""

    country: str | None = None
    region: str | None = None
    asn: int | None = None


@dataclass(frozen=True, slots=True)
class SignalFile:
    """A recognised file: its format, the default source name, and its points (ParseError items for bad rows)."""

    format: str
    source: str
    points: list[SignalPoint | ParseError]


def read_signal_file(path: str, *, source: str | None = None, entity: Entity = Entity()) -> SignalFile:
    """Recognises the file's format by its content and reads it; raises ParseError when it cannot be used."""
    raw = Path(path).read_bytes()[:MAX_JSON_BYTES + 1]
    if len(raw) > MAX_JSON_BYTES:
        raise ParseError(f"larger than {MAX_JSON_BYTES // 2**20} MB: split it", where=path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", where=path) from None
    if not text.strip():
        raise ParseError("empty file", where=path)
    if text.lstrip()[:1] in "{[":
        return _read_json(text, path, source=source, entity=entity)
    return _read_csv(text, path, source=source, entity=entity)


# --- CSV: ours or IODA's export ------------------------------------------------------------------------------


def _read_csv(text: str, path: str, *, source: str | None, entity: Entity) -> SignalFile:
    table = CsvRows(io.StringIO(text), name=path)
    header = [h.strip().lower() for h in table.header]
    if header and header[0] == IODA_TIME_COLUMN:
        ent = _ioda_entity(path, entity)
        return SignalFile("ioda-csv", source or "ioda", list(_ioda_csv_rows(table, path, ent, source or "ioda")))
    if set(header) == set(CSV_COLUMNS) and len(header) == len(CSV_COLUMNS):
        if not source:
            raise ParseError("our signals CSV does not say where its series come from: give --source "
                             "(e.g. --source ioda)", where=path)
        if entity != Entity():
            raise ParseError("our signals CSV names its entity in each row: drop --country/--asn/--region",
                             where=path)
        return SignalFile("csv", source, list(read_signals_csv(io.StringIO(text), source=source, name=path)))
    shown = ",".join(header)[:120]
    raise ParseError(f"not a signals file: header {shown!r} is neither ours ({','.join(CSV_COLUMNS)}) nor IODA's "
                     "export (\"Time (UTC)\", then one column per signal)", where=f"{path}:1")


def ioda_signal_name(column: str) -> str:
    """IODA's datasource id for a dashboard column title such as 'BGP (#Visible /24s)' or 'Google (Search)'."""
    title = column.strip().lower()
    for prefix, name in IODA_COLUMNS:
        if title.startswith(prefix):
            return name
    google = re.fullmatch(r"google\s*\((.+)\)", title)
    if google:
        product = google.group(1).strip()
        return "gtr." + GOOGLE_SUBTYPES.get(product, re.sub(r"\W+", "_", product).upper().strip("_"))
    return re.sub(r"[^a-z0-9]+", "-", title).strip("-") or "unnamed"


def _ioda_csv_rows(table: CsvRows, path: str, entity: Entity, source: str) -> Iterator[SignalPoint | ParseError]:
    columns = table.header
    names = [ioda_signal_name(c) for c in columns[1:]]
    if len(set(names)) != len(names):
        yield ParseError(f"two columns name the same signal: {', '.join(columns[1:])}", where=f"{path}:1")
        return
    for row in table.rows():
        if isinstance(row, BadRow):
            yield ParseError(row.reason, where=f"{path}:{row.line}")
            continue
        line, fields = row
        where = f"{path}:{line}"
        try:
            t = _ioda_time(fields[0])
        except ValueError as exc:
            yield ParseError(str(exc), where=where)
            continue
        for name, cell in zip(names, fields[1:], strict=True):
            if not cell.strip():
                continue  # IODA leaves a cell empty when the signal has no value then: missing, not zero
            try:
                value = _number(cell)
            except ValueError as exc:
                yield ParseError(f"{name}: {exc}", where=where)
                continue
            yield SignalPoint(time=t, country=entity.country or "", region=entity.region, asn=entity.asn,
                              signal=name, source=source, value=value)


def _ioda_time(value: str) -> datetime:
    """IODA's export writes 'YYYY-MM-DD HH:MM:SS' in UTC without a zone (the column title says UTC)."""
    v = value.strip()
    if len(v) > MAX_FIELD:
        raise ValueError("time: field too long")
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time {value!r}: expected YYYY-MM-DD HH:MM:SS (UTC)") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _number(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"value {value!r}: not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"value {value!r}: not a finite number")
    return x


_IODA_NAME = re.compile(r"ioda-(?P<entity>.+?)-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}(?:-[a-z]+)?(?: ?\(\d+\))?\.csv",
                        re.IGNORECASE)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", re.sub(r"\(.*?\)", "", name.lower())).strip("-")


def _ioda_entity(path: str, given: Entity) -> Entity:
    """The flags when given, else the country IODA wrote in the file name; else one clear error."""
    if given.country:
        return given
    if given.asn or given.region:
        raise ParseError("give --country too: our series belong to a country", where=path)
    m = _IODA_NAME.fullmatch(Path(path).name)
    if m is None:
        raise ParseError("IODA's export does not name its country, network or region inside the file: give "
                         "--country (and --asn or --region), or keep IODA's file name (ioda-<country>-...csv)",
                         where=path)
    wanted = _slug(m.group("entity"))
    for alpha2, name in _country_names().items():
        if _slug(name) == wanted:
            return Entity(country=alpha2)
    raise ParseError(f"IODA's file name names {m.group('entity')!r}, not a country we know: give --country",
                     where=path)


def _country_names() -> dict[str, str]:
    from observatory.report.countries import countries

    return {cc: c.name for cc, c in countries().items()}


# --- JSON: IODA's API v2 or Cloudflare Radar's API -------------------------------------------------------------


def _read_json(text: str, path: str, *, source: str | None, entity: Entity) -> SignalFile:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc.msg} at line {exc.lineno}", where=path) from None
    if isinstance(doc, dict) and ("result" in doc or "success" in doc):
        return SignalFile("radar-json", source or "radar", _radar_points(doc, path, source or "radar", entity))
    if isinstance(doc, dict) and ("data" in doc and (doc.get("type") == "signals" or "error" in doc)):
        return SignalFile("ioda-json", source or "ioda", _ioda_json_points(doc, path, source or "ioda", entity))
    raise ParseError("JSON that is neither IODA's API v2 signals answer (type, data) nor Cloudflare Radar's "
                     "(success, result)", where=path)


def _ioda_json_points(doc: dict[str, Any], path: str, source: str, given: Entity) -> list[SignalPoint | ParseError]:
    if doc.get("error"):
        raise ParseError(f"IODA answered with an error: {str(doc['error'])[:200]}", where=path)
    data = doc.get("data")
    if not isinstance(data, list):
        raise ParseError("IODA answer without a data list", where=path)
    # signals/raw answers one list per entity, each a list of series; accept a flat list of series too
    series = [s for item in data for s in (item if isinstance(item, list) else [item])]
    out: list[SignalPoint | ParseError] = []
    for i, s in enumerate(series):
        where = f"{path}:data[{i}]"
        if not isinstance(s, dict):
            out.append(ParseError("series is not an object", where=where))
            continue
        try:
            entity = _ioda_json_entity(s, given)
            name = _ioda_json_signal(s)
            start, step = int(s["from"]), int(s["step"])
            values = s["values"]
            if step <= 0 or not isinstance(values, list):
                raise ValueError("step must be positive and values a list")
        except ParseError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            out.append(ParseError(f"series unreadable: {exc}", where=where))
            continue
        for j, v in enumerate(values):
            if v is None:
                continue  # no value in that bin: missing, not zero
            try:
                out.append(SignalPoint(time=parse_signal_time(str(start + j * step)), country=entity.country or "",
                                       region=entity.region, asn=entity.asn, signal=name, source=source,
                                       value=_number(v)))
            except ValueError as exc:
                out.append(ParseError(str(exc), where=f"{where}.values[{j}]"))
    return out


def _ioda_json_signal(s: dict[str, Any]) -> str:
    name = str(s["datasource"]).strip()
    if not name or len(name) > 64:
        raise ValueError("datasource missing")
    subtype = str(s.get("subtype") or "").strip()
    return f"{name}.{subtype}" if subtype else name


def _ioda_json_entity(s: dict[str, Any], given: Entity) -> Entity:
    kind, code = str(s.get("entityType", "")).lower(), str(s.get("entityCode", "")).strip()
    country = given.country
    if kind == "country" and code:
        own = country_code(code)
        if country and country != own:  # the file says whose series they are: a flag cannot relabel them
            raise ParseError(f"IODA's series are {own}'s, not {country}: drop --country or give the right file")
        return Entity(country=own, region=given.region, asn=given.asn)
    if not country:
        raise ParseError(f"IODA's {kind or 'unnamed'} series {code!r} does not say its country: give --country")
    if kind == "asn" and code.isdigit():
        return Entity(country=country, region=given.region, asn=given.asn or int(code))
    if kind == "region":
        region = given.region or str(s.get("entityName") or code).strip() or None
        return Entity(country=country, region=region, asn=given.asn)
    return given


def _radar_points(doc: dict[str, Any], path: str, source: str, entity: Entity) -> list[SignalPoint | ParseError]:
    errors = doc.get("errors") or []
    if doc.get("success") is False or errors:
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        detail = f"{first.get('code', '')} {first.get('message', '')}".strip() or "no detail"
        raise ParseError(f"Cloudflare Radar answered with an error: {detail[:200]}", where=path)
    result = doc.get("result")
    if not isinstance(result, dict):
        raise ParseError("Cloudflare Radar answer without a result object", where=path)
    series = {k: v for k, v in result.items() if isinstance(v, dict) and "timestamps" in v and "values" in v}
    if not series:
        raise ParseError("Cloudflare Radar answer without a time series (result.serie_0.timestamps/values)",
                         where=path)
    if len(series) > 1:
        raise ParseError(f"Cloudflare Radar answer with {len(series)} series ({', '.join(sorted(series))}): "
                         "export one location per file", where=path)
    if not entity.country:
        raise ParseError("Cloudflare Radar's answer does not name its location: give --country (and --asn)",
                         where=path)
    [(key, serie)] = series.items()
    stamps, values = serie["timestamps"], serie["values"]
    if not isinstance(stamps, list) or not isinstance(values, list) or len(stamps) != len(values):
        raise ParseError(f"result.{key}: timestamps and values must be lists of one length", where=path)
    name = radar_signal_name(path)
    out: list[SignalPoint | ParseError] = []
    for j, (t, v) in enumerate(zip(stamps, values, strict=True)):
        if v is None:
            continue
        try:
            # Radar gives values as strings of numbers ("0.8512"); both kinds are accepted
            out.append(SignalPoint(time=parse_signal_time(str(t)), country=entity.country, region=entity.region,
                                   asn=entity.asn, signal=name, source=source, value=_number(v)))
        except ValueError as exc:
            out.append(ParseError(str(exc), where=f"{path}:result.{key}[{j}]"))
    return out


def radar_signal_name(path: str) -> str:
    """Radar's answer does not say which endpoint it came from; the saved file's name usually does."""
    name = Path(path).name.lower()
    if "netflow" in name:
        return "netflows"
    if "http" in name:
        return "http_requests"
    return "traffic"

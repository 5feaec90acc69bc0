"""classify, reclassify: per-measurement verdicts, on files (no store) or over the whole store."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from observatory.cli.app import DbOption, FormatOption, app, check_choice, store_for
from observatory.errors import ConfigError, ParseError
from observatory.ingest import Reject, expand_paths, read_file
from observatory.measurement import parse_measurement
from observatory.reclassify import reclassify as reclassify_store
from observatory.reclassify import report_json, report_lines
from observatory.verdict import classify as classify_measurement
from observatory.verdict.ooni import ooni_blocking


def classify_document(data: bytes, *, where: str) -> dict[str, Any]:
    """The verdict record of one document (raises ParseError when it is not a measurement)."""
    m = parse_measurement(data, where=where)
    c = classify_measurement(m)
    uid = m.doc.get("measurement_uid")
    return {
        "measurement_uid": uid if isinstance(uid, str) else None,
        "test_name": m.test_name,
        "input": m.input,
        "platform": m.platform,
        "verdict": c.verdict,
        "ooni_blocking": ooni_blocking(m),
        "rule": c.rule,
        "kbps": round(c.kbps, 3) if c.kbps is not None else None,
        "kbps_source": c.kbps_source,
    }


@app.command("classify")
def classify_cmd(
    files: Annotated[list[Path], typer.Argument(help="OONI-format files (.jsonl, .jsonl.gz, .json) or dirs.")],
    format: FormatOption = "json",
) -> None:
    """Per-measurement verdicts of OONI-format files, without a store: one JSON object per line with
    line, measurement_uid, test_name, input, platform, verdict, ooni_blocking (plus file, rule, kbps and
    kbps_source: where the throughput was read from).
    Unreadable lines are reported on stderr with file:line and the reason; the others are still classified;
    the exit code is 1 when any line was rejected.

    Example: observatory classify measurements.jsonl --format table
    """
    check_choice(format, ("json", "table"), "--format")
    paths = _measurement_files(files)
    if not paths:
        raise ConfigError("no input files found in " + ", ".join(map(str, files)))
    rows: list[dict[str, Any]] = []
    rejected = 0
    for path, shown in paths:
        for line, item in read_file(path):
            if isinstance(item, Reject):
                rejected += 1
                typer.echo(f"rejected {item}", err=True)
                continue
            try:
                rec = {"file": str(path), "line": line, "shown": shown} | classify_document(
                    item, where=f"{path}:{line}")
            except ParseError as exc:
                rejected += 1
                typer.echo(f"rejected {path}:{line}: {exc.reason}", err=True)
                continue
            if format == "json":
                del rec["shown"]
                typer.echo(json.dumps(rec, ensure_ascii=False))
            else:
                rows.append(rec)
    if format == "table":
        _print_table(rows)
    if rejected:
        raise typer.Exit(1)


# OONI's netem QA cases keep each measurement beside OONI's own analysis of it (analysis_classic.json): a
# result, not a measurement, so a directory's analyses are skipped (and said so) rather than rejected.
_ANALYSIS_PREFIX = "analysis_"


def _measurement_files(args: list[Path]) -> list[tuple[Path, str]]:
    """(file, name shown in the table) for each input; a directory's files are named relative to it, so the
    cases of a QA tree stay apart (every one of them is a measurement.json)."""
    out: list[tuple[Path, str]] = []
    skipped = 0
    for arg in args:
        if not arg.is_dir():
            out.append((arg, str(arg)))
            continue
        for f in expand_paths([arg]):
            if f.name.startswith(_ANALYSIS_PREFIX) and f.name.endswith(".json"):
                skipped += 1
                continue
            out.append((f, str(f.relative_to(arg))))
    if skipped:
        typer.echo(f"skipped {skipped} {_ANALYSIS_PREFIX}*.json file{'s' if skipped != 1 else ''} "
                   "(OONI's analyses of the measurements beside them, not measurements)", err=True)
    return out


def _print_table(rows: list[dict[str, Any]]) -> None:
    table = Table(show_header=True, header_style="bold")
    table.add_column("file:line", no_wrap=True)  # copied into editors and greps: kept whole
    for col in ("test", "input", "platform", "verdict", "ooni_blocking", "rule"):
        table.add_column(col, overflow="fold")
    for r in rows:
        ob = r["ooni_blocking"]
        table.add_row(f"{r['shown']}:{r['line']}", r["test_name"], r["input"] or "",
                      r["platform"] or "", r["verdict"], json.dumps(ob) if not isinstance(ob, str) else ob,
                      r["rule"])
    Console(width=240 if not sys.stdout.isatty() else None).print(table)


@app.command()
def reclassify(db: DbOption, format: FormatOption = "table") -> None:
    """Recompute every stored verdict (and throughput) from the stored raw documents, after the verdict rules
    or the block-page fingerprints changed, and record the rule that decided each one and the rules version.
    Prints how many verdicts changed, which rows an older rules version had decided, and the changes by rule
    (old rule -> new rule, old verdict -> new verdict, with example uids). `--format json` gives the same as
    one object: changed, measurements, rules_version, older_rules, older_rules_versions, rule_recorded,
    by_rule, by_verdict. `--format text` is the table format's other name.

    Example: observatory reclassify --db obs.duckdb
    """
    check_choice(format, ("table", "text", "json"), "--format")
    store = store_for(db, create=False)
    try:
        report = reclassify_store(store)
    finally:
        store.close()
    if format == "json":
        typer.echo(json.dumps(report_json(report)))
    else:
        typer.echo("\n".join(report_lines(report)))

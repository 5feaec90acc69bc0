"""The one CSV row reader behind our signals CSV, IODA's export and OONI's observation rows: the same broken
file gets the same reasons on the same lines from all three, and what one of them learnt (a byte-order mark,
a row of blank fields) holds for the others."""

from __future__ import annotations

import io
from pathlib import Path

from observatory.errors import ParseError
from observatory.signals import read_signals_csv, read_signals_file
from observatory.signals.formats import Entity, read_signal_file
from observatory.sources import obsrows

# line 3 has a field too few; the row of lines 4-5 holds a quoted line break (its number is the line it ends
# on); line 6 has a field too many
OURS = ('time,country,region,asn,signal,value\n'
        '2024-01-20T13:00:00Z,PK,,17557,bgp,10\n'
        '2024-01-20T13:05:00Z,PK,,17557,bgp\n'
        '2024-01-20T13:10:00Z,PK,"Pun\njab",17557,bgp,10\n'
        '2024-01-20T13:15:00Z,PK,,17557,bgp,10,11\n')
IODA = ('"Time (UTC)","BGP (# Visible /24s)","Active Probing (# /24s Up)"\n'
        '"2024-01-20 13:00:00",100,200\n'
        '"2024-01-20 13:05:00",100\n'
        '"2024-01-20 13:10:00","10\n0",200\n'
        '"2024-01-20 13:15:00",100,200,300\n')
ROWS = ('measurement_uid,test_name,probe_cc,probe_asn,measurement_start_time,report_id,ip,port,tcp_failure\n'
        'u1,telegram,KE,AS33771,2023-11-10 10:00:00,r1,149.154.167.51,443,\n'
        'u1,telegram,KE,AS33771,2023-11-10 10:00:00,r1,149.154.167.51\n'
        'u1,telegram,KE,AS33771,2023-11-10 10:00:00,r1,"149.154.\n167.50",443,\n'
        'u1,telegram,KE,AS33771,2023-11-10 10:00:00,r1,149.154.167.52,443,,extra\n')
EXPECTED_OURS = [(3, "5 fields where the header has 6"), (6, "7 fields where the header has 6")]


def _problems(items: list[object]) -> list[tuple[int, str]]:
    out = []
    for p in items:
        if isinstance(p, ParseError):
            out.append((int(p.where.rsplit(":", 1)[1]), p.reason))
    return out


def test_the_three_readers_name_the_same_lines_and_reasons(tmp_path: Path) -> None:
    ours = _problems(list(read_signals_csv(io.StringIO(OURS), source="ioda", name="ours.csv")))
    ioda_file = tmp_path / "ioda-pakistan-24-01-20-00-00-normalized.csv"
    ioda_file.write_text(IODA)
    ioda = _problems(list(read_signal_file(str(ioda_file), entity=Entity(country="PK")).points))
    rows_file = tmp_path / "rows.csv"
    rows_file.write_text(ROWS)
    rows = [(b.line, b.reason) for b in obsrows.read_measurements(rows_file, "csv")
            if isinstance(b, obsrows.BadRow)]
    assert ours == EXPECTED_OURS
    assert ioda == [(3, "2 fields where the header has 3"), (5, "bgp: value '10\\n0': not a number"),
                    (6, "4 fields where the header has 3")]
    assert rows == [(3, "7 fields where the header has 9"), (6, "10 fields where the header has 9")]


def test_a_byte_order_mark_before_our_header_is_not_part_of_its_first_column(tmp_path: Path) -> None:
    """Spreadsheets save CSV with one; OONI's rows and IODA's export were read past it, ours was not."""
    path = tmp_path / "signals.csv"
    path.write_text("\ufeff" + OURS, encoding="utf-8")
    items = list(read_signals_file(str(path), source="ioda"))
    assert _problems(items) == EXPECTED_OURS
    assert sum(1 for p in items if not isinstance(p, ParseError)) == 2


def test_a_row_of_blank_fields_holds_nothing_in_every_format(tmp_path: Path) -> None:
    """Our CSV and IODA's skipped it; the observation rows rejected it as a row of no measurement."""
    rows_file = tmp_path / "rows.csv"
    header, first = ROWS.splitlines()[:2]
    rows_file.write_text(f"{header}\n{first}\n,,,,,,,,\n")
    items = list(obsrows.read_measurements(rows_file, "csv"))
    assert [type(i).__name__ for i in items] == ["Measurement"]
    ours = list(read_signals_csv(io.StringIO("time,country,region,asn,signal,value\n ,,,,,\n"), source="x"))
    assert ours == []

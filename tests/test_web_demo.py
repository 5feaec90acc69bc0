"""The main job, bounded: `observatory demo` replays a short cut of the reference case through the collector
and prints the disruption as it is confirmed and ended (real server on loopback, real DuckDB, real detector)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCENARIO = Path(__file__).parent / "data" / "pk-short.toml"


def test_demo_replays_confirms_and_ends_the_20_january_disruption() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "observatory", "demo", "--scenario", str(SCENARIO), "--speed", "max",
         "--until-done", "--port", "0"],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "open http://127.0.0.1:" in text
    confirmed = [line for line in text.splitlines() if "CONFIRMED" in line]
    assert any("restricted in Pakistan" in line and line.startswith("[2024-01-20") for line in confirmed), text
    assert "Confirmed: metrics show a nation-scale disruption to social media platforms across Pakistan" in text
    assert "Restored: X/Twitter, Facebook, Instagram and YouTube are reachable again across Pakistan" in text
    assert "replay finished" in text and "1 confirmed" in text

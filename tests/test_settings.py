"""Settings in one place (issue 23, item 5): defaults < config file < environment < flags, each level shown to
win over the one below, through the library and through the real entry point (`observatory.cli.main`); a bad
file or variable is one line naming the file and key, exit status 2; `probe`'s explicit --targets beats its
config file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result

from observatory.errors import ConfigError
from observatory.settings import KEYS, Settings, load_settings
from observatory.web.settings import WebSettings

TOKEN_FILE = "file-token-0123456789"
TOKEN_ENV = "env-token-0123456789"
TOKEN_FLAG = "flag-token-0123456789"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting of the machine running the tests leaks in; the working directory has no observatory.toml."""
    for key in KEYS:
        monkeypatch.delenv(key.env, raising=False)
    monkeypatch.delenv("OBSERVATORY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- each level wins over the one below -----------------------------------------------------------------------


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    assert load_settings(env={}, cwd=tmp_path) == Settings()


def test_the_file_wins_over_the_defaults(tmp_path: Path) -> None:
    cfg = _write(tmp_path / "o.toml", f'[store]\ndb = "file.duckdb"\n[serve]\nadmin_token = "{TOKEN_FILE}"\n'
                                      "detect_every = 5\napi_rate = 0\n")
    s = load_settings(cfg, env={})
    assert (s.db, s.admin_token, s.detect_every, s.api_rate) == ("file.duckdb", TOKEN_FILE, 5.0, 0.0)
    web = WebSettings.from_settings(s)
    assert (web.admin_token, web.detect_every_seconds, web.api_rate) == (TOKEN_FILE, 5.0, 0.0)


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    cfg = _write(tmp_path / "o.toml", f'[store]\ndb = "file.duckdb"\n[serve]\nadmin_token = "{TOKEN_FILE}"\n'
                                      "detect_every = 5\n")
    s = load_settings(cfg, env={"OBSERVATORY_DB": "env.duckdb", "OBSERVATORY_ADMIN_TOKEN": TOKEN_ENV})
    assert (s.db, s.admin_token, s.detect_every) == ("env.duckdb", TOKEN_ENV, 5.0)  # what env leaves alone stays


def test_flags_win_over_the_environment(tmp_path: Path) -> None:
    s = load_settings(env={"OBSERVATORY_ADMIN_TOKEN": TOKEN_ENV, "OBSERVATORY_DETECT_EVERY": "7"}, cwd=tmp_path)
    flagged = s.with_flags(admin_token=TOKEN_FLAG, detect_every=None)  # None: the flag was not given
    assert (flagged.admin_token, flagged.detect_every) == (TOKEN_FLAG, 7.0)


def test_the_config_file_is_found_by_flag_then_variable_then_working_directory(tmp_path: Path) -> None:
    here = _write(tmp_path / "observatory.toml", '[store]\ndb = "cwd.duckdb"\n')
    by_var = _write(tmp_path / "var.toml", '[store]\ndb = "var.duckdb"\n')
    by_flag = _write(tmp_path / "flag.toml", '[store]\ndb = "flag.duckdb"\n')
    assert load_settings(env={}, cwd=tmp_path).db == "cwd.duckdb"
    assert load_settings(env={"OBSERVATORY_CONFIG": str(by_var)}, cwd=tmp_path).db == "var.duckdb"
    assert load_settings(by_flag, env={"OBSERVATORY_CONFIG": str(by_var)}, cwd=tmp_path).db == "flag.duckdb"
    assert load_settings(env={}, cwd=tmp_path).config_file == str(here)


def test_the_store_a_command_opens_follows_the_precedence(tmp_path: Path, run: Callable[..., Result],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real entry point: `stats` names the store it looked for (none exists: exit 3)."""
    _write(tmp_path / "observatory.toml", '[store]\ndb = "from-file.duckdb"\n')
    r = run("stats")
    assert r.code == 3 and "from-file.duckdb" in r.err, r.err
    monkeypatch.setenv("OBSERVATORY_DB", "from-env.duckdb")
    r = run("stats")
    assert r.code == 3 and "from-env.duckdb" in r.err, r.err
    r = run("stats", "--db", "from-flag.duckdb")
    assert r.code == 3 and "from-flag.duckdb" in r.err, r.err
    _write(tmp_path / "other.toml", '[store]\ndb = "from-other.duckdb"\n')
    monkeypatch.delenv("OBSERVATORY_DB")
    r = run("--config", "other.toml", "stats")
    assert r.code == 3 and "from-other.duckdb" in r.err, r.err


def test_serve_lets_the_environment_set_its_detection_period() -> None:
    """`serve --detect-every` has no default of its own any more: the 60 s default used to override
    $OBSERVATORY_DETECT_EVERY, which the help promised to read."""
    from typer.main import get_command

    from observatory.cli import app

    serve = get_command(app).commands["serve"]  # type: ignore[attr-defined]
    option = next(p for p in serve.params if p.name == "detect_every")
    assert option.default is None
    s = load_settings(env={"OBSERVATORY_DETECT_EVERY": "7"}).with_flags(detect_every=option.default)
    assert WebSettings.from_settings(s).detect_every_seconds == 7.0
    assert WebSettings.from_settings(Settings()).detect_every_seconds == 60.0


# --- bad files and variables: one line naming the file and key, exit 2 ----------------------------------------


@pytest.mark.parametrize(("text", "names"), [
    ("[store\ndb = 1\n", ["not valid TOML"]),
    ('[serve]\napi_rat = 5\n', ["[serve] api_rat", "unknown key"]),
    ('[server]\napi_rate = 5\n', ["'server'", "unknown table"]),
    ('db = "x.duckdb"\n', ["'db'", "unknown table"]),  # keys live in their table
    ('[serve]\napi_rate = "fast"\n', ["[serve] api_rate", "expected a number"]),
    ('[serve]\nadmin_failures = 2.5\n', ["[serve] admin_failures", "expected a whole number"]),
    ('[serve]\ndetect_every = true\n', ["[serve] detect_every", "expected a number"]),
    ('[store]\ndb = 3\n', ["[store] db", "expected a string"]),
])
def test_a_bad_config_file_is_one_line_naming_file_and_key(text: str, names: list[str], tmp_path: Path,
                                                          run: Callable[..., Result]) -> None:
    cfg = _write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert str(cfg) in str(err.value) and all(n in str(err.value) for n in names), err.value
    r = run("--config", str(cfg), "stats", "--db", str(tmp_path / "x.duckdb"))
    assert r.code == 2 and r.err.startswith("error: ") and r.err.count("\n") == 1, r.err
    assert str(cfg) in r.err


def test_a_bad_file_in_the_working_directory_is_not_ignored(tmp_path: Path, run: Callable[..., Result]) -> None:
    _write(tmp_path / "observatory.toml", "[serve]\nunknown = 1\n")
    r = run("stats", "--db", str(tmp_path / "x.duckdb"))
    assert r.code == 2 and "observatory.toml" in r.err and "[serve] unknown" in r.err, r.err


def test_a_named_config_file_must_exist(tmp_path: Path, run: Callable[..., Result],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    r = run("--config", "missing.toml", "stats")
    assert r.code == 2 and "missing.toml" in r.err and "no such file" in r.err, r.err
    monkeypatch.setenv("OBSERVATORY_CONFIG", "gone.toml")
    r = run("stats")
    assert r.code == 2 and "gone.toml" in r.err and "OBSERVATORY_CONFIG" in r.err, r.err


def test_a_bad_variable_names_itself() -> None:
    with pytest.raises(ConfigError, match="OBSERVATORY_API_RATE='fast': expected a number"):
        load_settings(env={"OBSERVATORY_API_RATE": "fast"})


def test_every_key_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for key in KEYS:
        assert f"`{key.name}`" in readme and key.env in readme and f"[{key.table}]" in readme, key


# --- probe: an explicit --targets wins over its config file ---------------------------------------------------


def test_probe_targets_flag_wins_over_the_config_file(tmp_path: Path, run: Callable[..., Result]) -> None:
    """The file names targets that do not exist; `--targets social` given explicitly must be the ones used.
    The run stops at the next check (--mmdb names no file), before any measurement: no network needed."""
    cfg = _write(tmp_path / "probe.toml", '[probe]\ntargets = "no-such-targets"\n')
    common = ["probe", "--config", str(cfg), "--state-dir", str(tmp_path), "--helper", "http://127.0.0.1:9/",
              "--mmdb", str(tmp_path / "missing.mmdb"), "--quiet"]
    r = run(*common, "--targets", "social")
    assert r.code == 2 and "--mmdb" in r.err and "no-such-targets" not in r.err, r.err
    r = run(*common)  # no flag: the file's targets are used (and rejected)
    assert r.code == 2 and "no-such-targets" in r.err, r.err

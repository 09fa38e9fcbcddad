"""Config file loading, command-line overrides and the one-line error messages users see."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

import vramtop.config as config_module
from vramtop.config import (
    DEFAULT_CONFIG_TOML,
    Config,
    ConfigError,
    DisplayConfig,
    default_config_path,
    load_config,
    resolve_screenshot_dir,
)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return {"HOME": str(home)}


def write_default(home: Path, text: str) -> Path:
    path = home / ".config" / "vramtop" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error_of(text: str, home: Path, env: dict[str, str]) -> str:
    write_default(home, text)
    with pytest.raises(ConfigError) as info:
        load_config(env=env)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    return message


# --- defaults and paths ------------------------------------------------------------------------


def test_missing_default_file_gives_defaults(env: dict[str, str]) -> None:
    config = load_config(env=env)
    assert config.source == "defaults"
    assert config.general.refresh_rate == 1.0
    assert config.general.history_length == 300
    assert config.general.process_slots == 1024
    assert config.display.theme == "dark"
    assert config.display.layout == "auto"
    assert config.display.show_other_users is False
    assert config.display.enable_kill is True
    assert config.display.phase_indicator is True
    assert config.display.accessible is False
    assert config.display.screenshot_dir == ""
    assert config.alerts.oom_warning_seconds == 300
    assert config.alerts.temp_warning_celsius == 85
    assert config.alerts.oom_min_confidence == 0.15
    assert config.scraping.enable is True
    assert config.scraping.rate_limit_seconds == 5.0
    assert config.scraping.timeout_ms == 500
    assert config.scraping.allowed_ports == (8000, 8080, 9931, 11434, 3000, 30000)
    assert config.oom_prediction.algorithm == "variance"
    assert config.oom_prediction.min_sustained_samples == 10
    assert config.oom_prediction.min_rate_mb_per_sec == 1.0


def test_default_path_falls_back_to_home_dot_config(home: Path) -> None:
    expected = home / ".config" / "vramtop" / "config.toml"
    assert default_config_path({"HOME": str(home)}) == expected
    # An empty or relative XDG_CONFIG_HOME is invalid per the XDG spec and ignored.
    assert default_config_path({"HOME": str(home), "XDG_CONFIG_HOME": ""}) == expected
    assert default_config_path({"HOME": str(home), "XDG_CONFIG_HOME": "rel/dir"}) == expected


def test_xdg_config_home_is_honoured(tmp_path: Path, home: Path) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "vramtop").mkdir(parents=True)
    (xdg / "vramtop" / "config.toml").write_text('[display]\ntheme = "nord"\n')
    # A file in the fallback location must be ignored when XDG_CONFIG_HOME is set.
    write_default(home, '[display]\ntheme = "light"\n')
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)}
    assert default_config_path(env) == xdg / "vramtop" / "config.toml"
    config = load_config(env=env)
    assert config.display.theme == "nord"
    assert config.source == str(xdg / "vramtop" / "config.toml")


def test_fallback_file_is_read(home: Path, env: dict[str, str]) -> None:
    path = write_default(home, '[display]\ntheme = "light"\n')
    config = load_config(env=env)
    assert config.display.theme == "light"
    assert config.source == str(path)


def test_explicit_path_wins_over_default(tmp_path: Path, home: Path, env: dict[str, str]) -> None:
    write_default(home, "[general]\nrefresh_rate = 3\n")
    explicit = tmp_path / "other.toml"
    explicit.write_text("[general]\nrefresh_rate = 7\n")
    assert load_config(explicit, env=env).general.refresh_rate == 7.0
    assert load_config(str(explicit), env=env).source == str(explicit)


# --- every key read back --------------------------------------------------------------------

ALL_KEYS_SET = """
[general]
refresh_rate = 2.5
history_length = 1000
process_slots = 64

[display]
theme = "catppuccin"
layout = "compact"
show_other_users = true
enable_kill = false
phase_indicator = false
clock = "minutes"
accessible = true
screenshot_dir = "/srv/shots"

[alerts]
oom_warning_seconds = 60
temp_warning_celsius = 90.5
oom_min_confidence = 0.75

[scraping]
enable = false
rate_limit_seconds = 0.5
timeout_ms = 2000
allowed_ports = [9000, 1]

[oom_prediction]
algorithm = "pelt"
min_sustained_samples = 25
min_rate_mb_per_sec = 0.25
restart_window_seconds = 120.0

[exporter]
max_process_series = 50
"""


def test_every_key_is_read_back(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(ALL_KEYS_SET)
    config = load_config(path, env=env)
    assert config.to_dict() == tomllib.loads(ALL_KEYS_SET)
    # Typed as declared: ints given for floats become floats, ports a tuple.
    assert isinstance(config.alerts.oom_warning_seconds, float)
    assert config.scraping.allowed_ports == (9000, 1)
    # Every key in the file differs from its default, so the test proves each one was applied.
    defaults = Config().to_dict()
    for section, values in config.to_dict().items():
        for key, value in values.items():
            assert value != defaults[section][key], f"{section}.{key}"


def test_partial_file_keeps_other_defaults(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[alerts]\noom_min_confidence = 1\n")
    config = load_config(path, env=env)
    assert config.alerts.oom_min_confidence == 1.0
    assert dataclasses.replace(config, alerts=Config().alerts, source="") == Config()


def test_to_dict_is_plain_and_replace_friendly() -> None:
    config = Config()
    data = config.to_dict()
    assert data["scraping"]["allowed_ports"] == [8000, 8080, 9931, 11434, 3000, 30000]
    assert set(data) == {"general", "display", "alerts", "scraping", "oom_prediction", "exporter"}
    changed = dataclasses.replace(
        config, general=dataclasses.replace(config.general, refresh_rate=2.0)
    )
    assert changed.to_dict()["general"]["refresh_rate"] == 2.0
    assert config.general.refresh_rate == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.general.refresh_rate = 3.0  # type: ignore[misc]


# --- errors: one line, naming file, key and reason --------------------------------------------

FILE = "~/.config/vramtop/config.toml"


def test_unknown_section(home: Path, env: dict[str, str]) -> None:
    message = error_of("[colours]\nbg = 1\n", home, env)
    assert message.startswith(f"{FILE}: unknown section [colours]")
    assert "general" in message and "oom_prediction" in message


def test_section_that_is_not_a_table(home: Path, env: dict[str, str]) -> None:
    message = error_of("general = 5\n", home, env)
    assert message.startswith(f"{FILE}: general ")
    assert "table" in message


def test_unknown_key_lists_known_keys(home: Path, env: dict[str, str]) -> None:
    message = error_of('[display]\ncolour = "red"\n', home, env)
    assert message.startswith(f"{FILE}: unknown key display.colour (known: theme, layout, ")
    assert "screenshot_dir" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[general]\nrefresh_rate = "fast"\n',
            'general.refresh_rate must be a number (got "fast")',
        ),
        ("[general]\nhistory_length = true\n", "general.history_length must be an integer"),
        ("[general]\nhistory_length = 300.0\n", "general.history_length must be an integer"),
        ("[scraping]\nenable = 1\n", "scraping.enable must be true or false (got 1)"),
        ("[display]\ntheme = 3\n", "display.theme must be a string (got 3)"),
        ("[scraping]\nallowed_ports = 8000\n", "scraping.allowed_ports must be an array"),
        ('[scraping]\nallowed_ports = ["8000"]\n', "scraping.allowed_ports[0] must be an integer"),
        ("[general]\nrefresh_rate = nan\n", "general.refresh_rate must be a finite number"),
    ],
)
def test_wrong_type(text: str, expected: str, home: Path, env: dict[str, str]) -> None:
    assert error_of(text, home, env).startswith(f"{FILE}: {expected}")


@pytest.mark.parametrize(
    ("section", "key", "value", "reason"),
    [
        ("general", "refresh_rate", "0.4", "between 0.5 and 10"),
        ("general", "refresh_rate", "10.5", "between 0.5 and 10"),
        ("general", "history_length", "9", "between 10 and 86400"),
        ("general", "process_slots", "70000", "between 16 and 65536"),
        ("alerts", "oom_warning_seconds", "0", "greater than 0"),
        ("alerts", "temp_warning_celsius", "121", "between 20 and 120"),
        ("alerts", "oom_min_confidence", "1.5", "between 0 and 1"),
        ("scraping", "rate_limit_seconds", "0.05", "at least 0.1"),
        ("scraping", "timeout_ms", "5", "between 10 and 10000"),
        ("oom_prediction", "min_sustained_samples", "1", "between 2 and 100000"),
        ("oom_prediction", "min_rate_mb_per_sec", "-1", "at least 0"),
        ("oom_prediction", "restart_window_seconds", "86401", "between 0 and 86400"),
        ("exporter", "max_process_series", "0", "between 1 and 100000"),
    ],
)
def test_out_of_range(
    section: str, key: str, value: str, reason: str, home: Path, env: dict[str, str]
) -> None:
    message = error_of(f"[{section}]\n{key} = {value}\n", home, env)
    assert message == f"{FILE}: {section}.{key} must be {reason} (got {value})"


@pytest.mark.parametrize(("ports", "index", "bad"), [("[8000, 70000]", 1, 70000), ("[0]", 0, 0)])
def test_port_out_of_range(
    ports: str, index: int, bad: int, home: Path, env: dict[str, str]
) -> None:
    message = error_of(f"[scraping]\nallowed_ports = {ports}\n", home, env)
    assert message == (
        f"{FILE}: scraping.allowed_ports[{index}] must be between 1 and 65535 (got {bad})"
    )


def test_range_bounds_are_inclusive(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[general]\nrefresh_rate = 0.5\n[alerts]\noom_min_confidence = 0\n"
        "[scraping]\nallowed_ports = [1, 65535]\n"
    )
    config = load_config(path, env=env)
    assert config.general.refresh_rate == 0.5
    assert config.alerts.oom_min_confidence == 0.0
    assert config.scraping.allowed_ports == (1, 65535)
    path.write_text("[general]\nrefresh_rate = 10\n")
    assert load_config(path, env=env).general.refresh_rate == 10.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[display]\ntheme = "neon"\n',
            "display.theme must be one of dark, light, nord, catppuccin, dracula, solarized"
            ' (got "neon")',
        ),
        ('[display]\nlayout = "huge"\n', "display.layout must be one of auto, full, compact, mini"),
        ('[oom_prediction]\nalgorithm = "magic"\n', "oom_prediction.algorithm must be one of"),
    ],
)
def test_unknown_enum_value(text: str, expected: str, home: Path, env: dict[str, str]) -> None:
    assert error_of(text, home, env).startswith(f"{FILE}: {expected}")


def test_invalid_toml(home: Path, env: dict[str, str]) -> None:
    message = error_of('[general]\nrefresh_rate = \n"unterminated\n', home, env)
    assert message.startswith(f"{FILE}: invalid TOML: ")
    assert "line 2" in message


def test_not_utf8(home: Path, env: dict[str, str]) -> None:
    path = write_default(home, "")
    path.write_bytes(b'[display]\ntheme = "\xff"\n')
    with pytest.raises(ConfigError, match=r"config\.toml: not valid UTF-8"):
        load_config(env=env)


def test_hostile_key_name_is_cleaned(home: Path, env: dict[str, str]) -> None:
    message = error_of('[display]\n"evil\\u001b[2Jkey" = 1\n', home, env)
    assert "\x1b" not in message
    assert message.startswith(f"{FILE}: unknown key display.evilkey ")


def test_directory_is_a_one_line_error(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env=env)
    assert str(info.value) == f"{tmp_path}: cannot read: is a directory"


def test_default_path_that_is_a_directory_is_an_error(home: Path, env: dict[str, str]) -> None:
    (home / ".config" / "vramtop" / "config.toml").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"^~/\.config/vramtop/config\.toml: cannot read"):
        load_config(env=env)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_a_one_line_error(home: Path, env: dict[str, str]) -> None:
    path = write_default(home, "[general]\n")
    path.chmod(0)
    try:
        with pytest.raises(ConfigError) as info:
            load_config(env=env)
    finally:
        path.chmod(0o600)
    assert str(info.value) == f"{FILE}: cannot read: Permission denied"


def test_missing_explicit_path_is_an_error(tmp_path: Path, env: dict[str, str]) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, env=env)
    assert str(info.value) == f"{missing}: no such file"


def test_error_outside_home_shows_the_path_as_given(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[general]\nrefresh_rate = 20\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    assert str(info.value) == f"{path}: general.refresh_rate must be between 0.5 and 10 (got 20)"


def test_config_error_folds_newlines() -> None:
    assert str(ConfigError("a\nb\r\n  c")) == "a b c"


# --- command-line overrides -------------------------------------------------------------------


def test_overrides_apply_over_defaults(env: dict[str, str]) -> None:
    config = load_config(
        overrides={
            "general.refresh_rate": 0.5,
            "display.enable_kill": False,
            "display.accessible": True,
        },
        env=env,
    )
    assert config.general.refresh_rate == 0.5
    assert config.display.enable_kill is False
    assert config.display.accessible is True
    assert config.display.theme == "dark"


def test_overrides_win_over_the_file(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[general]\nrefresh_rate = 3\nhistory_length = 50\n[display]\nenable_kill = true\n"
    )
    config = load_config(
        path, overrides={"general.refresh_rate": 2, "display.enable_kill": False}, env=env
    )
    assert config.general.refresh_rate == 2.0
    assert config.general.history_length == 50  # from the file, untouched by overrides
    assert config.display.enable_kill is False
    assert config.source == str(path)


def test_unset_flags_pass_through_as_none(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[general]\nrefresh_rate = 3\n")
    config = load_config(path, overrides={"general.refresh_rate": None}, env=env)
    assert config.general.refresh_rate == 3.0


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"general.refresh_rate": 0.2},
            "command line: general.refresh_rate must be between 0.5 and 10 (got 0.2)",
        ),
        (
            {"general.refresh_rate": 10.5},
            "command line: general.refresh_rate must be between 0.5 and 10 (got 10.5)",
        ),
        (
            {"display.enable_kill": "no"},
            'command line: display.enable_kill must be true or false (got "no")',
        ),
        (
            {"general.history_length": True},
            "command line: general.history_length must be an integer (got true)",
        ),
        (
            {"display.theme": "neon"},
            "command line: display.theme must be one of dark, light, nord, catppuccin, dracula,"
            ' solarized (got "neon")',
        ),
        (
            {"scraping.allowed_ports": [70000]},
            "command line: scraping.allowed_ports[0] must be between 1 and 65535 (got 70000)",
        ),
    ],
)
def test_overrides_are_validated_like_the_file(
    overrides: dict[str, object], expected: str, env: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides, env=env)
    assert str(info.value) == expected


@pytest.mark.parametrize("key", ["display.colour", "colours.bg", "general"])
def test_unknown_override_key(key: str, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides={key: 1}, env=env)
    assert str(info.value).startswith(f"command line: unknown key {key} ")


def test_invalid_file_is_reported_even_with_overrides(home: Path, env: dict[str, str]) -> None:
    write_default(home, "[general]\nrefresh_rate = 20\n")
    with pytest.raises(ConfigError, match=r"^~/\.config/vramtop/config\.toml: general\."):
        load_config(overrides={"general.refresh_rate": 2.0}, env=env)


# --- the documented defaults ------------------------------------------------------------------


def test_default_config_toml_is_exactly_the_defaults(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(DEFAULT_CONFIG_TOML)
    loaded = load_config(path, env=env)
    assert dataclasses.replace(loaded, source="") == Config()
    # Loading defaults would also succeed with keys missing: check every key is written out.
    written = tomllib.loads(DEFAULT_CONFIG_TOML)
    assert {s: set(v) for s, v in written.items()} == {
        s: set(v) for s, v in Config().to_dict().items()
    }


def test_module_docstring_documents_every_key() -> None:
    doc = config_module.__doc__ or ""
    for section, values in Config().to_dict().items():
        assert f"[{section}]" in doc
        for key in values:
            assert f"  {key} = " in doc, f"{section}.{key} undocumented"


# --- screenshot directory ---------------------------------------------------------------------


def test_screenshot_dir_default_and_configured(tmp_path: Path, home: Path) -> None:
    env = {"HOME": str(home)}
    expected = home / ".local" / "share" / "vramtop" / "screenshots"
    assert resolve_screenshot_dir(DisplayConfig(), env) == expected
    data = tmp_path / "data"
    env_xdg = {"HOME": str(home), "XDG_DATA_HOME": str(data)}
    assert resolve_screenshot_dir(DisplayConfig(), env_xdg) == data / "vramtop" / "screenshots"
    configured = DisplayConfig(screenshot_dir="~/shots")
    assert resolve_screenshot_dir(configured, env) == home / "shots"
    absolute = DisplayConfig(screenshot_dir=str(tmp_path / "x"))
    assert resolve_screenshot_dir(absolute, env) == tmp_path / "x"


def test_restart_only_keys_keep_their_running_values() -> None:
    from vramtop.config import keep_restart_only

    running = Config()
    general = dataclasses.replace(running.general, history_length=600, process_slots=64)
    display = dataclasses.replace(running.display, theme="light")
    new = dataclasses.replace(running, general=general, display=display)
    kept, note = keep_restart_only(running, new)
    assert kept.general.history_length == 300 and kept.general.process_slots == 1024
    assert kept.display.theme == "light", "every other key takes effect"
    assert note == "history_length and process_slots take effect at the next start"
    assert keep_restart_only(running, dataclasses.replace(running, display=display)) == (
        dataclasses.replace(running, display=display),
        "",
    )

"""vramtop's configuration: one TOML file, command-line overrides, strict validation.

Where it sits: the supervisor calls :func:`load_config` at start-up and again on SIGHUP, and hands
the frozen :class:`Config` to every actor it starts; ``cli.py`` turns flags (``--refresh-rate``,
``--no-kill``, ``--accessible``) into dotted-key overrides that pass through the same checks as the
file. Nothing else reads the file.

The file is ``$XDG_CONFIG_HOME/vramtop/config.toml`` (``~/.config/vramtop/config.toml`` when
``XDG_CONFIG_HOME`` is unset, empty or relative), or the path given with ``--config PATH``. A
missing default file means "all defaults"; a missing ``--config`` file is an error. Every key is
optional. Unknown sections or keys, wrong types (``true`` is not an integer; ``2`` is accepted
where a float is expected, ``2.0`` is not accepted where an integer is), out-of-range values and
unknown names are reported as one line naming the file, the key and the reason, for example::

    ~/.config/vramtop/config.toml: general.refresh_rate must be between 0.5 and 10 (got 20)

Keys, defaults and accepted values:

[general]
  refresh_rate = 1.0            seconds between samples, 0.5 to 10
  history_length = 300          samples kept per GPU and per process, 10 to 86400
  process_slots = 1024          processes tracked at once in shared memory, 16 to 65536
                                (both size the shared memory at start: a SIGHUP reload keeps
                                the running values and says they take effect at the next start)

[display]
  theme = "dark"                dark, light, nord, catppuccin, dracula or solarized
  layout = "auto"               auto, full, compact or mini ("auto" picks by terminal size)
  show_other_users = false      list other users' GPU processes (user and PID only)
  enable_kill = true            allow the kill key (``--no-kill`` sets false)
  phase_indicator = true        the PHASE column and the detail panel's phase badge (growing...)
  clock = "seconds"             the header clock: seconds, minutes or off (an idle screen whose
                                clock shows minutes sends nothing to the terminal for a minute)
  accessible = false            text labels instead of colour alone (``--accessible`` sets true)
  screenshot_dir = ""           where ``s`` saves SVG screenshots; "" means
                                $XDG_DATA_HOME/vramtop/screenshots (~/.local/share/...)

[alerts]
  oom_warning_seconds = 300     warn when the predicted time to OOM is below this, > 0
  temp_warning_celsius = 85     warn at or above this GPU temperature, 20 to 120
  oom_min_confidence = 0.15     hide OOM predictions less certain than this, 0 to 1

[scraping]
  enable = true                 read inference servers' metrics over localhost HTTP
  rate_limit_seconds = 5.0      at most one request per server per this many seconds, >= 0.1
  timeout_ms = 500              per-request timeout, 10 to 10000
  allowed_ports = [8000, 8080, 9931, 11434, 3000, 30000]
                                the only ports ever contacted, each 1 to 65535

[oom_prediction]
  algorithm = "variance"        variance or pelt (pelt needs the ``pelt`` extra: ruptures)
  min_sustained_samples = 10    growth must last this many samples before a prediction, 2 to 100000
  min_rate_mb_per_sec = 1.0     slower growth than this is not a leak, >= 0
  restart_window_seconds = 600  a process that vanishes and one with the same user, command
                                line and GPU that appears within this many seconds are the
                                same job restarted (its lineage), 0 to 86400 (0: never linked)

[exporter]
  max_process_series = 1000     ``vramtop exporter``: process series for the largest this many
                                processes (the rest are counted), 1 to 100000
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import stat
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from vramtop.sanitize import clean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "DEFAULT_CONFIG_TOML",
    "AlertsConfig",
    "Config",
    "ConfigError",
    "DisplayConfig",
    "GeneralConfig",
    "OomPredictionConfig",
    "ScrapingConfig",
    "default_config_path",
    "keep_restart_only",
    "load_config",
    "resolve_screenshot_dir",
]

THEMES: Final = ("dark", "light", "nord", "catppuccin", "dracula", "solarized")
LAYOUTS: Final = ("auto", "full", "compact", "mini")
ALGORITHMS: Final = ("variance", "pelt")
CLOCKS: Final = ("seconds", "minutes", "off")  # the header clock; "minutes" redraws once a minute

# A config file is a few hundred bytes; the cap only stops a mistaken path (a log, a device)
# from being read whole.
_MAX_FILE_BYTES: Final = 1 << 20

COMMAND_LINE: Final = "command line"


class ConfigError(ValueError):
    """A config file or override that vramtop refuses; ``str()`` is always a single line."""

    def __init__(self, message: str) -> None:
        # Parser messages and user-supplied names could carry newlines or escapes; the CLI prints
        # this as one line on stderr, so fold everything here once.
        super().__init__(" ".join(clean(message, limit=1024).split()))


@dataclass(frozen=True, slots=True)
class _Rule:
    """What one key accepts: its kind plus an optional range or set of names."""

    kind: type  # bool, int, float, str or tuple (a tuple of ints)
    low: float | None = None
    high: float | None = None
    above: float | None = None  # exclusive lower bound
    choices: tuple[str, ...] = ()


def _key(default: Any, rule: _Rule) -> Any:
    return field(default=default, metadata={"rule": rule})


@dataclass(frozen=True, slots=True)
class GeneralConfig:
    refresh_rate: float = _key(1.0, _Rule(float, low=0.5, high=10))
    history_length: int = _key(300, _Rule(int, low=10, high=86400))
    process_slots: int = _key(1024, _Rule(int, low=16, high=65536))


@dataclass(frozen=True, slots=True)
class DisplayConfig:
    theme: str = _key("dark", _Rule(str, choices=THEMES))
    layout: str = _key("auto", _Rule(str, choices=LAYOUTS))
    show_other_users: bool = _key(False, _Rule(bool))
    enable_kill: bool = _key(True, _Rule(bool))
    phase_indicator: bool = _key(True, _Rule(bool))
    clock: str = _key("seconds", _Rule(str, choices=CLOCKS))
    accessible: bool = _key(False, _Rule(bool))
    screenshot_dir: str = _key("", _Rule(str))


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    oom_warning_seconds: float = _key(300.0, _Rule(float, above=0))
    temp_warning_celsius: float = _key(85.0, _Rule(float, low=20, high=120))
    oom_min_confidence: float = _key(0.15, _Rule(float, low=0, high=1))


@dataclass(frozen=True, slots=True)
class ScrapingConfig:
    enable: bool = _key(True, _Rule(bool))
    rate_limit_seconds: float = _key(5.0, _Rule(float, low=0.1))
    timeout_ms: int = _key(500, _Rule(int, low=10, high=10000))
    allowed_ports: tuple[int, ...] = _key(
        (8000, 8080, 9931, 11434, 3000, 30000), _Rule(tuple, low=1, high=65535)
    )


@dataclass(frozen=True, slots=True)
class OomPredictionConfig:
    algorithm: str = _key("variance", _Rule(str, choices=ALGORITHMS))
    min_sustained_samples: int = _key(10, _Rule(int, low=2, high=100000))
    min_rate_mb_per_sec: float = _key(1.0, _Rule(float, low=0))
    restart_window_seconds: float = _key(600.0, _Rule(float, low=0, high=86400))


@dataclass(frozen=True, slots=True)
class ExporterConfig:
    max_process_series: int = _key(1000, _Rule(int, low=1, high=100000))


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; ``source`` is the file it came from, or "defaults"."""

    general: GeneralConfig = field(default_factory=GeneralConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    scraping: ScrapingConfig = field(default_factory=ScrapingConfig)
    oom_prediction: OomPredictionConfig = field(default_factory=OomPredictionConfig)
    exporter: ExporterConfig = field(default_factory=ExporterConfig)
    source: str = ""

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The sections as plain nested dicts (tuples as lists), shaped like the TOML file.

        ``source`` is left out so the result can be written back as a config file unchanged.
        """
        out: dict[str, dict[str, Any]] = {}
        for name in _SECTIONS:
            section = getattr(self, name)
            out[name] = {
                f.name: list(v) if isinstance(v := getattr(section, f.name), tuple) else v
                for f in dataclasses.fields(section)
            }
        return out


_SECTIONS: Final[dict[str, type[Any]]] = {
    "general": GeneralConfig,
    "display": DisplayConfig,
    "alerts": AlertsConfig,
    "scraping": ScrapingConfig,
    "oom_prediction": OomPredictionConfig,
    "exporter": ExporterConfig,
}


DEFAULT_CONFIG_TOML: Final = """\
# vramtop configuration: $XDG_CONFIG_HOME/vramtop/config.toml (~/.config/vramtop/config.toml).
# Every key is optional; the values below are the defaults.

[general]
refresh_rate = 1.0          # seconds between samples, 0.5 to 10
history_length = 300        # samples kept per GPU and per process, 10 to 86400 (at start)
process_slots = 1024        # processes tracked at once in shared memory, 16 to 65536 (at start)

[display]
theme = "dark"              # dark, light, nord, catppuccin, dracula, solarized
layout = "auto"             # auto, full, compact, mini
show_other_users = false    # list other users' GPU processes (user and PID only)
enable_kill = true          # allow the kill key; --no-kill sets false
phase_indicator = true      # the PHASE column and the detail panel's phase badge
clock = "seconds"           # the header clock: seconds, minutes, off
accessible = false          # text labels instead of colour alone; --accessible sets true
screenshot_dir = ""         # "" means ~/.local/share/vramtop/screenshots

[alerts]
oom_warning_seconds = 300   # warn when the predicted time to OOM is below this, > 0
temp_warning_celsius = 85   # warn at or above this temperature, 20 to 120
oom_min_confidence = 0.15   # hide less certain OOM predictions, 0 to 1

[scraping]
enable = true               # read inference servers' metrics over localhost HTTP
rate_limit_seconds = 5.0    # per server, at least 0.1
timeout_ms = 500            # per request, 10 to 10000
allowed_ports = [8000, 8080, 9931, 11434, 3000, 30000]  # the only ports contacted, 1 to 65535

[oom_prediction]
algorithm = "variance"      # variance or pelt (needs the "pelt" extra)
min_sustained_samples = 10  # 2 to 100000
min_rate_mb_per_sec = 1.0   # at least 0
restart_window_seconds = 600.0  # same user + command line + GPU again within this: a restart

[exporter]
max_process_series = 1000   # vramtop exporter: the largest processes get series, 1 to 100000
"""


# Keys that size the shared memory, which is created once at start: a reload cannot change them.
RESTART_ONLY: Final = ("history_length", "process_slots")


def keep_restart_only(running: Config, new: Config) -> tuple[Config, str]:
    """``new`` with the running values of the restart-only keys, and a note naming those the
    file changed ("" when none), e.g. "history_length takes effect at the next start"."""
    changed = [k for k in RESTART_ONLY if getattr(new.general, k) != getattr(running.general, k)]
    if not changed:
        return new, ""
    kept = {k: getattr(running.general, k) for k in RESTART_ONLY}
    config = dataclasses.replace(new, general=dataclasses.replace(new.general, **kept))
    verb = "takes" if len(changed) == 1 else "take"
    return config, f"{' and '.join(changed)} {verb} effect at the next start"


# --- paths -----------------------------------------------------------------------------------


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME", "")
    return Path(home) if home else Path.home()


def _xdg_dir(env: Mapping[str, str], var: str, fallback: str) -> Path:
    # The XDG spec says a relative value is invalid and must be ignored.
    value = env.get(var, "")
    if value and os.path.isabs(value):
        return Path(value)
    return _home(env) / fallback


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/vramtop/config.toml``, falling back to ``~/.config/vramtop/...``."""
    env = os.environ if env is None else env
    return _xdg_dir(env, "XDG_CONFIG_HOME", ".config") / "vramtop" / "config.toml"


def resolve_screenshot_dir(display: DisplayConfig, env: Mapping[str, str] | None = None) -> Path:
    """Where SVG screenshots go: ``display.screenshot_dir`` (``~`` expanded) or the data dir."""
    env = os.environ if env is None else env
    if display.screenshot_dir:
        configured = display.screenshot_dir
        if configured == "~" or configured.startswith("~/"):
            return _home(env) / configured[2:]
        return Path(os.path.expanduser(configured))  # ~user/... and plain paths
    return _xdg_dir(env, "XDG_DATA_HOME", ".local/share") / "vramtop" / "screenshots"


def _shown(path: Path, env: Mapping[str, str]) -> str:
    """The path as an error message shows it: under the home directory it starts with ``~``."""
    if path.is_absolute():
        try:
            rest = path.relative_to(_home(env)).as_posix()
        except ValueError:
            pass
        else:
            return "~" if rest == "." else "~/" + rest
    return str(path)


# --- validation ------------------------------------------------------------------------------


def _num(value: float) -> str:
    """A bound as a person writes it: 10, not 10.0."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _got(value: object, depth: int = 0) -> str:
    """The offending value, TOML-style, safe to print (nested lists shown three levels deep)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, Mapping):
        text = "a table"
    elif isinstance(value, list | tuple) and depth >= 3:
        text = "[...]"
    elif isinstance(value, list | tuple):
        items = ", ".join(_got(v, depth + 1) for v in value[:8])
        text = "[" + items + (", ...]" if len(value) > 8 else "]")
    else:
        text = type(value).__name__
    return clean(text, limit=80)


def _check_scalar(where: str, key: str, rule: _Rule, value: object) -> object:
    kind = int if rule.kind is tuple else rule.kind
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false (got {_got(value)})")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string (got {_got(value)})")
        if rule.choices and value not in rule.choices:
            names = ", ".join(rule.choices)
            raise ConfigError(f"{where}: {key} must be one of {names} (got {_got(value)})")
        return value
    # bool is an int subclass in Python; `true` for a number is always a mistake in a config.
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer (got {_got(value)})")
        number: float = value
    else:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: {key} must be a number (got {_got(value)})")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {key} must be a finite number (got {_got(value)})")
        number = float(value)
    _check_range(where, key, rule, number, value)
    return number


def _check_range(where: str, key: str, rule: _Rule, number: float, raw: object) -> None:
    low, high, above = rule.low, rule.high, rule.above
    if low is not None and high is not None:
        if not low <= number <= high:
            bounds = f"between {_num(low)} and {_num(high)}"
            raise ConfigError(f"{where}: {key} must be {bounds} (got {_got(raw)})")
    elif low is not None and number < low:
        raise ConfigError(f"{where}: {key} must be at least {_num(low)} (got {_got(raw)})")
    elif above is not None and number <= above:
        raise ConfigError(f"{where}: {key} must be greater than {_num(above)} (got {_got(raw)})")


def _check(where: str, key: str, rule: _Rule, value: object) -> object:
    if rule.kind is not tuple:
        return _check_scalar(where, key, rule, value)
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{where}: {key} must be an array of integers (got {_got(value)})")
    items = [_check_scalar(where, f"{key}[{i}]", rule, v) for i, v in enumerate(value)]
    # A port listed twice is harmless; keep the first so the order the user wrote is kept.
    return tuple(dict.fromkeys(items))


def _rules(section: type[Any]) -> dict[str, _Rule]:
    return {f.name: f.metadata["rule"] for f in dataclasses.fields(section)}


def _known(names: Iterable[str]) -> str:
    return ", ".join(names)


def _apply(
    config: Config, where: str, values: Mapping[str, Mapping[str, object]], keys: Mapping[str, str]
) -> Config:
    """Validate ``values`` (section -> key -> value) and return ``config`` with them applied.

    ``keys`` maps a section to the dotted prefix to print, so errors from the command line and
    the file read the same way.
    """
    changes: dict[str, Any] = {}
    for section_name, section_values in values.items():
        section_type = _SECTIONS[section_name]
        rules = _rules(section_type)
        checked: dict[str, object] = {}
        for key, value in section_values.items():
            dotted = f"{keys[section_name]}.{clean(key, limit=80)}"
            if key not in rules:
                raise ConfigError(f"{where}: unknown key {dotted} (known: {_known(rules)})")
            checked[key] = _check(where, dotted, rules[key], value)
        changes[section_name] = dataclasses.replace(getattr(config, section_name), **checked)
    return dataclasses.replace(config, **changes)


def _from_document(config: Config, where: str, doc: Mapping[str, object]) -> Config:
    values: dict[str, Mapping[str, object]] = {}
    for name, table in doc.items():
        if name not in _SECTIONS:
            shown = clean(name, limit=80)
            raise ConfigError(f"{where}: unknown section [{shown}] (known: {_known(_SECTIONS)})")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: {name} must be a [{name}] table (got {_got(table)})")
        values[name] = table
    return _apply(config, where, values, {name: name for name in values})


def _from_overrides(config: Config, overrides: Mapping[str, object]) -> Config:
    values: dict[str, dict[str, object]] = {}
    for dotted, value in overrides.items():
        if value is None:  # a flag that was not given; TOML has no null, so no key means None
            continue
        section, _, key = dotted.partition(".")
        if section not in _SECTIONS or not key:
            known = _known(_SECTIONS)
            raise ConfigError(
                f"{COMMAND_LINE}: unknown key {clean(dotted, limit=80)} (sections: {known})"
            )
        values.setdefault(section, {})[key] = value
    return _apply(config, COMMAND_LINE, values, {name: name for name in values})


# --- loading ---------------------------------------------------------------------------------


def _read_capped(path: Path, where: str) -> bytes:
    """At most ``_MAX_FILE_BYTES + 1`` bytes of ``path``, never blocking: only a regular file
    (or ``/dev/null``) is read. A FIFO, a terminal or a device given as the config (or swapped
    in before a SIGHUP) is refused in one line and must not freeze the supervisor."""
    # O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory")
        if not stat.S_ISREG(mode):
            if os.path.realpath(path) == os.devnull:
                return b""  # --config /dev/null: all defaults, as the shell idiom means
            # A FIFO, a terminal or a device is a mistake, not a config: said, never waited on.
            raise ConfigError(f"{where}: not a regular file (a config is a TOML file)")
        chunks: list[bytes] = []
        total = 0
        while total <= _MAX_FILE_BYTES:
            chunk = os.read(fd, min(1 << 16, _MAX_FILE_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read(path: Path, where: str, *, explicit: bool) -> str | None:
    """The file's text, None for a missing default file, ConfigError for anything else."""
    try:
        data = _read_capped(path, where)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{where}: no such file") from None
        return None
    except IsADirectoryError:
        raise ConfigError(f"{where}: cannot read: is a directory") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{where}: cannot read: {reason}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise ConfigError(f"{where}: file is larger than {_MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not valid UTF-8 (at byte {exc.start})") from None


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Load the config file (``path``, or the default location), then apply ``overrides``.

    ``overrides`` maps dotted keys to values, e.g. ``{"general.refresh_rate": 2.0}``; a value of
    None is skipped, so unset CLI flags can be passed through as they are. Raises
    :class:`ConfigError` with a one-line message for anything vramtop would not run with.
    """
    env = os.environ if env is None else env
    explicit = path is not None
    file_path = Path(path) if path is not None else default_config_path(env)
    where = _shown(file_path, env)

    config = Config(source="defaults")
    text = _read(file_path, where, explicit=explicit)
    if text is not None:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: invalid TOML: {exc}") from None
        except RecursionError:
            # The parser recurses per nesting level: `a = [[[[...` a few thousand deep.
            raise ConfigError(f"{where}: invalid TOML: nested too deeply") from None
        config = _from_document(config, where, doc)
        config = dataclasses.replace(config, source=str(file_path))
    if overrides:
        config = _from_overrides(config, overrides)
    return config

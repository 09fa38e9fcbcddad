"""The n/a value, hostile-string cleaning and human formatting."""

from __future__ import annotations

import math
import pickle

from hypothesis import given
from hypothesis import strategies as st

from vramtop.fmt import pct, size, temp, watts
from vramtop.na import NA, NaType, to_json
from vramtop.sanitize import MAX_LEN, clean


def test_na_formats_as_n_a_with_any_spec() -> None:
    assert f"{NA}" == "N/A"
    assert f"{NA:>6}" == "   N/A"
    assert f"{NA:<6.1f}|" == "N/A   |"
    assert f"{NA:,.0f}" == "N/A"
    assert str(NA) == "N/A"


def test_na_never_raises_in_arithmetic_or_comparison() -> None:
    assert NA + 1 is NA and 3 * NA is NA and NA / 2 is NA and -NA is NA
    assert not (NA < 1) and not (NA > 1) and NA != 0
    assert not NA


def test_na_converts_to_nan_for_the_numeric_layers() -> None:
    # float(field) is how shared memory and the analysis take a snapshot field: n/a is NaN.
    assert math.isnan(float(NA))
    assert [float(v) for v in (3, 2.5)] == [3.0, 2.5]


def test_na_is_a_singleton_across_pickling() -> None:
    assert pickle.loads(pickle.dumps(NA)) is NA
    assert NaType() is NA
    assert to_json(NA) is None and to_json(5) == 5


def test_formatting_helpers_show_n_a() -> None:
    assert size(NA) == pct(NA) == temp(NA) == watts(NA) == "N/A"
    assert size(12 * 1024**3 + 300 * 1024**2) == "12.3G"
    assert size(812 * 1024**2) == "812M"
    assert pct(87.4) == "87%" and temp(65) == "65°C" and watts(349.6) == "350W"


def test_clean_strips_escapes_and_controls() -> None:
    hostile = "python \x1b[31mred\x1b[0m \x1b]0;title\x07x\x00y\x07\tz\n\x9b2J"
    assert clean(hostile) == "python red xy z"  # the newline became a space, then trailing


def test_clean_caps_length() -> None:
    assert len(clean("a" * 10_000)) == MAX_LEN


@given(st.text())
def test_clean_output_has_no_control_characters(text: str) -> None:
    out = clean(text)
    assert len(out) <= MAX_LEN
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in out)

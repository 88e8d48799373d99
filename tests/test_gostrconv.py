"""Go's strconv.Quote and strconv.Atoi, as pyslirp's error texts and parsers use them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyslirp.gostrconv import go_atoi, go_quote


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("plain", '"plain"'),
        ('a"b\\c', '"a\\"b\\\\c"'),
        ("\a\b\f\n\r\t\v", '"\\a\\b\\f\\n\\r\\t\\v"'),
        ("\x00\x1f \x7f", '"\\x00\\x1f \\x7f"'),
        ("\x85\u00a0\u200b", '"\\u0085\\u00a0\\u200b"'),
        ("é日本😀\U00010000", '"é日本😀\U00010000"'),
        ("\ue000\uffff", '"\\ue000\\uffff"'),
        ("\U000e0001", '"\\U000e0001"'),
    ],
)
def test_go_quote_matches_strconv_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


@pytest.mark.parametrize(
    ("surrogate", "quoted"),
    [
        # surrogateescape's stand-ins for the bytes 0x80..0xff: Go shows each byte.
        ("\udc80", '"\\x80"'),
        ("\udcff", '"\\xff"'),
        # Any other lone surrogate: its three (invalid UTF-8) bytes, one by one.
        ("\ud800", '"\\xed\\xa0\\x80"'),
        ("\udc7f", '"\\xed\\xb1\\xbf"'),
        ("\udd00", '"\\xed\\xb4\\x80"'),
        ("\udfff", '"\\xed\\xbf\\xbf"'),
    ],
)
def test_go_quote_shows_lone_surrogates_as_the_bytes_go_would_see(
    surrogate: str, quoted: str
) -> None:
    assert go_quote(surrogate) == quoted


def test_go_quote_of_a_non_utf8_file_name_shows_its_bytes() -> None:
    name = b"caf\xe9 \xff.conf".decode("utf-8", "surrogateescape")
    assert go_quote(name) == '"caf\\xe9 \\xff.conf"'


@given(st.text())
def test_go_quote_is_one_line_of_printable_ascii_or_printable_text(text: str) -> None:
    quoted = go_quote(text)
    assert quoted.startswith('"') and quoted.endswith('"')
    assert quoted.isprintable()
    assert '"' not in quoted[1:-1].replace('\\"', "")


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("42", 42),
        ("+7", 7),
        ("-3", -3),
        ("007", 7),
        ("0", 0),
        ("", None),
        ("+", None),
        (" 1", None),
        ("1 ", None),
        ("1_0", None),
        ("\u0661", None),
        ("0x10", None),
        ("1e3", None),
    ],
)
def test_go_atoi_accepts_only_plain_decimal(text: str, number: int | None) -> None:
    assert go_atoi(text) == number

"""Calico selector language."""

from __future__ import annotations

import pytest

from node_controller.selector import SelectorError, parse

LABELS = {"rack": "r1", "zone": "eu-west-1a", "role": "worker", "kubernetes.io/os": "linux"}


@pytest.mark.parametrize(("text", "expected"), [
    ("", True),
    ("all()", True),
    ("global()", True),
    ("has(rack)", True),
    ("!has(rack)", False),
    ("has(gpu)", False),
    ("rack == 'r1'", True),
    ('rack == "r2"', False),
    ("rack != 'r2'", True),
    ("gpu != 'x'", True),  # an absent label is not equal to anything
    ("rack in {'r1', 'r2'}", True),
    ("rack not in {'r1'}", False),
    ("gpu not in {'a'}", True),
    ("rack in {}", False),
    ("zone contains 'west'", True),
    ("zone starts with 'eu-'", True),
    ("zone ends with '1b'", False),
    ("gpu contains 'x'", False),
    ("kubernetes.io/os == 'linux'", True),
    ("rack == 'r1' && role == 'worker'", True),
    ("rack == 'r2' || role == 'worker'", True),
    ("rack == 'r2' || role == 'master' && has(zone)", False),
    ("(rack == 'r2' || role == 'worker') && !has(gpu)", True),
    ("!(rack == 'r1')", False),
])
def test_evaluation(text: str, expected: bool) -> None:
    assert parse(text).matches(LABELS) is expected


@pytest.mark.parametrize(("text", "position", "words"), [
    ("rack = 'r1'", 5, "unexpected character"),
    ("rack == r1", 8, "quoted string"),
    ("rack == 'r1", 8, "unterminated"),
    ("has(rack", 8, "expected ')'"),
    ("rack == 'r1' &&", 15, "expected a label"),
    ("rack in {'a' 'b'}", 13, "expected '}'"),
    ("rack starts 'x'", 12, "expected 'with'"),
    ("(rack == 'a'", 12, "expected ')'"),
    ("rack", 4, "an operator after label 'rack'"),
    ("rack == 'a' rack", 12, "'&&', '||' or end"),
])
def test_errors_name_the_position(text: str, position: int, words: str) -> None:
    with pytest.raises(SelectorError) as exc:
        parse(text)
    assert exc.value.position == position, str(exc.value)
    assert words in str(exc.value) and f"position {position}" in str(exc.value)


def test_equal_selectors_compare_by_text() -> None:
    assert parse("has(a)") == parse("has(a)")

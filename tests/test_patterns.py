"""The shared regex dialect: what it accepts, what it refuses and why, and how `.` and `$` behave."""

from __future__ import annotations

import pytest

from filegate.errors import ContractError
from filegate.patterns import shared_pattern


@pytest.mark.parametrize(
    "source",
    [
        r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$",
        r"^\+[1-9][0-9]{7,14}$",
        r"^(?:ORD|INV)-[0-9]{8}$",
        r"^a.*?b|c+$",
        r"^[^,;]{1,3}\t\{x\}$",
    ],
)
def test_common_patterns_are_shared(source: str) -> None:
    pattern = shared_pattern(source)

    assert pattern.source == source


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (r"^\d{4}$", r"\\d means different characters"),
        (r"\w+", r"\\w means different characters"),
        (r"\bword", r"\\b means different characters"),
        ("(?i)abc", "only plain groups"),
        ("(?P<name>a)", "only plain groups"),
        ("a(?=b)", "only plain groups"),
        ("a*+", "possessive"),
        ("[a[b]]", "nested class in Java"),
        ("[a-z&&[^q]]", "intersection in Java"),
        ("x{", "must start a repetition"),
        ("x{5,2}", "bounds reversed"),
        ("(a", "unclosed '\\('"),
        ("a)", "unbalanced"),
        ("*a", "repeats nothing"),
        ("[abc", r"unclosed '\['"),
        (r"\p{L}", "not shared"),
        ("abc\\", "trailing backslash"),
        ("", "empty"),
    ],
)
def test_a_pattern_outside_the_shared_dialect_is_refused_with_the_reason(source: str, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        shared_pattern(source)


def test_dot_and_dollar_mean_the_same_in_both_engines() -> None:
    pattern = shared_pattern("^A.C$")

    assert pattern.matches("ABC")
    # Java's `.` stops at every line terminator, Python's only at \n: spelled out, both stop at all.
    assert not any(pattern.matches(f"A{terminator}C") for terminator in "\n\r\u0085\u2028\u2029")
    # `$` is the value's end in both, not "before a final line break".
    assert not pattern.matches("ABC\n")
    assert pattern.java == r"^A[^\n\r\u0085\u2028\u2029]C\z"


def test_a_pattern_is_searched_for_as_spark_rlike_does() -> None:
    assert shared_pattern("[0-9]{3}").matches("ab123cd")
    assert not shared_pattern("^[0-9]{3}$").matches("ab123cd")

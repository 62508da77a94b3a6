"""One regular-expression dialect that Python's `re` and Spark's Java regex (`rlike`) read alike.

A contract's `pattern` is checked by the function (Python) on its sample and by the Spark job (Java)
on every row; the two engines must give the same verdict on every value. They agree on a common core
and differ at the edges: `\\d`, `\\w`, `\\s` and `\\b` are Unicode-aware in Python and ASCII in Java,
`.` and `$` stop at different line terminators, Java reads `[a[b]]` and `&&` inside a class as set
operations, possessive quantifiers and inline flags differ. So a pattern is parsed against the core
and refused outside it, and the two compiled forms spell the remaining differences out: `.` becomes
an explicit class, `$` means the very end of the value in both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from filegate.errors import ContractError

# What `.` matches in Java without DOTALL: anything but its line terminators. Spelled out, both agree.
_DOT = "[^\\n\\r\\u0085\\u2028\\u2029]"
_METACHARS = set(".^$|?*+()[]{}\\")
# Escapes whose meaning is the same literal character in both engines.
_LITERAL_ESCAPES = set(".^$|?*+()[]{}\\/-#&~:!=<>,'\"@%_ ")
_CONTROL_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_QUANTIFIER = re.compile(r"\{([0-9]{1,4})(,([0-9]{0,4}))?\}")


@dataclass(frozen=True)
class SharedPattern:
    """A pattern in the shared dialect, compiled for each engine."""

    source: str
    python: str
    java: str

    @property
    def regex(self) -> re.Pattern[str]:
        return _compiled(self.python)

    def matches(self, text: str) -> bool:
        """Whether the pattern occurs in `text`, as Spark's `rlike` (Java `find`) decides."""
        return self.regex.search(text) is not None


@cache
def _compiled(python: str) -> re.Pattern[str]:
    return re.compile(python)


class _Parser:
    """A recursive reader of the shared dialect that writes the Python and the Java forms."""

    def __init__(self, source: str):
        self.source = source
        self.at = 0
        self.python: list[str] = []
        self.java: list[str] = []

    def fail(self, what: str) -> ContractError:
        return ContractError(f"pattern {self.source!r}: {what} (at character {self.at + 1})")

    def emit(self, python: str, java: str | None = None) -> None:
        self.python.append(python)
        self.java.append(python if java is None else java)

    def peek(self) -> str:
        return self.source[self.at] if self.at < len(self.source) else ""

    def parse(self) -> SharedPattern:
        depth = 0
        can_repeat = False
        while self.at < len(self.source):
            char = self.source[self.at]
            if char in "*+?{":
                if not can_repeat:
                    raise self.fail(f"{char!r} repeats nothing")
                self.quantifier()
                can_repeat = False
                continue
            if char == ")" and depth == 0:
                raise self.fail("unbalanced ')'")
            depth += {"(": 1, ")": -1}.get(char, 0)
            can_repeat = self.atom(char)
        if depth:
            raise self.fail("unclosed '('")
        python, java = "".join(self.python), "".join(self.java)
        try:
            re.compile(python)
        except re.error as exc:
            raise self.fail(f"does not compile: {exc}") from exc
        return SharedPattern(self.source, python, java)

    def atom(self, char: str) -> bool:
        """Read one item outside a class; whether a quantifier may follow it."""
        if char == "\\":
            self.escape()
        elif char == "[":
            self.char_class()
        elif char == "(":
            self.group()
            return False
        elif char in "]}":
            raise self.fail(f"unescaped {char!r}")
        else:
            self.at += 1
            if char == ".":
                self.emit(_DOT)
            elif char == "$":
                # Both engines let `$` match before a final line break; the value's very end is meant.
                self.emit(r"\Z", r"\z")
                return False
            else:
                self.emit(char)
                return char not in "^|"
        return True

    def group(self) -> None:
        if self.source.startswith("(?:", self.at):
            self.emit("(?:")
            self.at += 3
        elif self.source.startswith("(?", self.at):
            raise self.fail("only plain groups ( ) and (?: ) are shared; flags, lookarounds and named groups are not")
        else:
            self.emit("(")
            self.at += 1

    def quantifier(self) -> None:
        char = self.source[self.at]
        if char == "{":
            found = _QUANTIFIER.match(self.source, self.at)
            if not found:
                raise self.fail("'{' must start a repetition such as {3}, {2,} or {2,5}; write \\{ for the character")
            low, high = int(found[1]), found[3]
            if found[2] and high and int(high) < low:
                raise self.fail(f"repetition {found[0]} has its bounds reversed")
            self.emit(found[0])
            self.at = found.end()
        else:
            self.emit(char)
            self.at += 1
        if self.peek() == "+":
            raise self.fail("possessive quantifiers (Java only) are not shared")
        if self.peek() == "?":
            self.emit("?")
            self.at += 1

    def escape(self) -> None:
        if self.at + 1 >= len(self.source):
            raise self.fail("a trailing backslash")
        char = self.source[self.at + 1]
        self.at += 2
        if char in _CONTROL_ESCAPES:
            self.emit("\\" + char)
        elif char in _LITERAL_ESCAPES:
            self.emit(re.escape(char), _java_literal(char))
        elif char in "dDwWsSbB":
            raise self.fail(
                f"\\{char} means different characters in Python (Unicode) and Java (ASCII); "
                "write the class, e.g. [0-9] or [A-Za-z0-9_]"
            )
        else:
            raise self.fail(f"the escape \\{char} is not shared by Python and Java")

    def char_class(self) -> None:
        self.emit("[")
        self.at += 1
        if self.peek() == "^":
            self.emit("^")
            self.at += 1
        first = True
        while True:
            char = self.peek()
            if char == "":
                raise self.fail("unclosed '['")
            if char == "]" and not first:
                self.emit("]")
                self.at += 1
                return
            if char == "\\":
                self.escape()
            elif char == "[":
                raise self.fail("'[' inside a class is a nested class in Java and a character in Python; write \\[")
            elif char == "&" and self.source.startswith("&&", self.at):
                raise self.fail("'&&' inside a class is an intersection in Java only")
            elif char == "]":
                raise self.fail("a class cannot start with ']'; write \\]")
            else:
                self.emit(char)
                self.at += 1
            first = False


def _java_literal(char: str) -> str:
    """The character as a Java regex literal: a metacharacter or other punctuation escaped."""
    return "\\" + char if char in _LITERAL_ESCAPES and char != " " else char


@cache
def shared_pattern(source: str) -> SharedPattern:
    """Parse `source` in the shared dialect; ContractError naming the construct when it is outside."""
    if source == "":
        raise ContractError("pattern is empty")
    return _Parser(source).parse()

"""The layout rules `terraform fmt` enforces, checked in Python so CI needs no terraform binary.

It follows hclwrite's formatter (hashicorp/hcl, hclwrite/format.go) for what it checks:
- indentation: two spaces per level; a line that opens more brackets than it closes is indented at the
  current level and raises it by one, a line that closes more lowers it first (`${`/`%{` count too);
- alignment: the `=` of consecutive lines holding a whole `name = value` line up one space after the
  longest name; a blank line, a comment-only line or a line opening a multi-line value ends the run,
  and such an opening line gets exactly one space before its `=`;
- one space after `=`; no tabs or carriage returns.
Two house rules go further than `terraform fmt`, which leaves them alone: no trailing whitespace (fmt
keeps it after a comment) and exactly one newline at the end of the file. Heredoc bodies and block
comments are not checked, as hclwrite does not reformat them; neither is spacing inside expressions,
which is why `terraform fmt -check` still runs wherever terraform is installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_OPENERS = "{[("
_CLOSERS = "}])"
_HEREDOC = re.compile(r"<<-?([A-Za-z_][A-Za-z0-9_-]*)[ \t]*$")


@dataclass
class _Line:
    text: str
    brackets: int = 0  # net opening minus closing brackets, template interpolations included
    equals: int | None = None  # column of the line's first `=` token, if it is not the first token
    after_equals: int = 0  # net brackets from that `=` to the end of the line
    has_token: bool = False  # any code before a trailing comment
    skip: bool = False  # inside a heredoc body or a block comment: not formatted by hclwrite
    problems: list[str] = field(default_factory=list)


def _is_assignment(text: str, i: int) -> bool:
    """An `=` token, not part of `==`, `!=`, `<=`, `>=` or `=>`."""
    return text[i] == "=" and text[i + 1 : i + 2] not in ("=", ">") and text[i - 1 : i] not in ("=", "!", "<", ">")


def _scan(lines: list[str]) -> list[_Line]:
    """Tokenise just enough HCL to know each line's brackets and assignment."""
    scanned = [_Line(text) for text in lines]
    stack: list[str] = []  # "string", "interp" (a ${ } or %{ } inside a string) or a bracket
    heredoc: str | None = None
    in_block_comment = False
    for line in scanned:
        text = line.text
        if heredoc is not None:
            line.skip = True
            if text.strip() == heredoc:
                heredoc = None
            continue
        if in_block_comment:
            line.skip = True
            if "*/" in text:
                in_block_comment = False
            continue
        i = 0
        seen_equals = False
        while i < len(text):
            mode = stack[-1] if stack else "code"
            char, pair = text[i], text[i : i + 2]
            if mode == "string":
                if char == "\\":
                    i += 2
                    continue
                if pair in ("$$", "%%") and text[i + 2 : i + 3] == "{":
                    i += 3
                    continue
                if pair in ("${", "%{"):
                    stack.append("interp")
                    line.brackets += 1
                    if seen_equals:
                        line.after_equals += 1
                    i += 2
                    continue
                if char == '"':
                    stack.pop()
                i += 1
                continue
            if char == "#" or pair == "//":
                break
            if pair == "/*":
                end = text.find("*/", i + 2)
                if end == -1:
                    in_block_comment = True
                    break
                i = end + 2
                continue
            if char in " \t":
                i += 1
                continue
            if match := _HEREDOC.match(text, i):
                heredoc = match[1]
                line.has_token = True
                break
            if char == '"':
                stack.append("string")
            elif char in _OPENERS:
                stack.append(char)
                line.brackets += 1
                if seen_equals:
                    line.after_equals += 1
            elif char in _CLOSERS:
                if stack:
                    stack.pop()
                line.brackets -= 1
                if seen_equals:
                    line.after_equals -= 1
            elif _is_assignment(text, i) and not seen_equals and line.has_token:
                line.equals = i
                seen_equals = True
            line.has_token = True
            i += 1
    return scanned


def format_problems(source: str) -> list[str]:
    """What `terraform fmt` would change in a file, as `line N: problem` messages (empty if none)."""
    problems: list[str] = []
    if "\r" in source:
        problems.append("carriage returns: use LF line endings")
    if source and not source.endswith("\n"):
        problems.append("no newline at the end of the file")
    if source.endswith("\n\n"):
        problems.append("blank lines at the end of the file")
    lines = _scan(source.split("\n")[:-1] if source.endswith("\n") else source.split("\n"))

    indents: list[int] = []
    for line in lines:
        if line.skip:
            continue
        text = line.text
        if text != text.rstrip():
            line.problems.append("trailing whitespace")
        if not text.strip():
            continue
        lead = text[: len(text) - len(text.lstrip())]
        if "\t" in lead:
            line.problems.append("tab in the indentation")
        if line.brackets < 0:
            closed = -line.brackets
            while closed > 0 and indents:
                if closed >= indents[-1]:
                    closed -= indents.pop()
                else:
                    indents[-1] -= closed
                    closed = 0
        expected = 2 * len(indents)
        if len(lead) != expected:
            line.problems.append(f"indented {len(lead)} spaces, expected {expected}")
        if line.brackets > 0:
            indents.append(line.brackets)

    run: list[_Line] = []
    for line in [*lines, _Line("")]:
        if not line.skip and line.equals is not None and line.after_equals == 0:
            run.append(line)
            continue
        if run:
            names = [candidate.text[: candidate.equals].rstrip() for candidate in run]
            column = max(len(name) for name in names) + 1
            for candidate, name in zip(run, names, strict=True):
                if candidate.equals != column:
                    width = candidate.equals - len(name)
                    candidate.problems.append(f"`=` after {width} spaces, expected it aligned at column {column + 1}")
            run = []
    for line in lines:
        if line.equals is None or line.skip:
            continue
        # A line opening a multi-line value stands outside any run: one space on each side of `=`.
        if line.after_equals != 0 and line.text[: line.equals] != line.text[: line.equals].rstrip() + " ":
            line.problems.append("expected exactly one space before `=`")
        after = line.text[line.equals + 1 :]
        if after and (not after.startswith(" ") or after.startswith("  ")):
            line.problems.append("expected exactly one space after `=`")

    problems.extend(f"line {number}: {problem}" for number, line in enumerate(lines, 1) for problem in line.problems)
    return problems

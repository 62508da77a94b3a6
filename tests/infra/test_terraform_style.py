"""Terraform formatting and checkov skip hygiene for infra/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import INFRA
from hcl_format import format_problems

SKIP = re.compile(r"#checkov:skip=([^:\s]*)(?::(.*))?")
TERRAFORM_FILES = sorted([*(INFRA / "azure").glob("*.tf"), *(INFRA / "gcp").glob("*.tf")])
HAS_TERRAFORM = shutil.which("terraform") is not None

FORMATTED = """\
resource "example" "this" {
  name     = "a"
  location = var.location
  template = "${var.prefix}-x"
  # A comment ends a run of aligned lines.
  tags = var.tags
  body = <<-EOT
    key = value
  EOT

  nested {
    for_each = {
      a   = 1
      bcd = 2
    }
    enabled = true
  }
}
"""
# Each breaks one rule of FORMATTED; `terraform fmt` rewrites all of them.
UNFORMATTED = {
    "misaligned =": FORMATTED.replace("  location = var.location", "  location  = var.location"),
    "unpadded =": FORMATTED.replace('  name     = "a"', '  name = "a"'),
    "padded across a comment": FORMATTED.replace("  tags = var.tags", "  tags     = var.tags"),
    "padded multi-line opener": FORMATTED.replace("    for_each = {", "    for_each  = {"),
    "no space after =": FORMATTED.replace("    enabled = true", "    enabled =true"),
    "three-space indent": FORMATTED.replace("    enabled = true", "     enabled = true"),
    "closer not dedented": FORMATTED.replace("    }\n    enabled", "      }\n    enabled"),
    "block at top level": FORMATTED.replace("  nested {", "nested {"),
    "tab indent": FORMATTED.replace("  tags = var.tags", "\ttags = var.tags"),
    "trailing space on code": FORMATTED.replace("  tags = var.tags", "  tags = var.tags "),
}
# House rules the Python check adds on top of `terraform fmt`.
HOUSE_RULES = {
    "no final newline": FORMATTED.rstrip("\n"),
    "blank lines at the end": FORMATTED + "\n",
    "trailing space after a comment": FORMATTED.replace("of aligned lines.", "of aligned lines. "),
}


def terraform_fmt_accepts(text: str, folder: Path) -> bool:
    path = folder / "sample.tf"
    path.write_text(text)
    result = subprocess.run(
        ["terraform", "fmt", "-check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "CHECKPOINT_DISABLE": "1"},
    )
    return result.returncode == 0


@pytest.mark.skipif(not HAS_TERRAFORM, reason="terraform is not installed; test_files_follow_the_fmt_layout checks")
def test_terraform_files_are_formatted() -> None:
    folders = [str(INFRA / "azure"), str(INFRA / "gcp")]

    result = subprocess.run(
        ["terraform", "fmt", "-check", "-diff", "-recursive", *folders],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "CHECKPOINT_DISABLE": "1"},
    )

    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("path", TERRAFORM_FILES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_files_follow_the_fmt_layout(path: Path) -> None:
    assert format_problems(path.read_text(encoding="utf-8")) == []


def test_the_layout_check_accepts_formatted_hcl() -> None:
    assert format_problems(FORMATTED) == []


@pytest.mark.parametrize("case", [*UNFORMATTED, *HOUSE_RULES])
def test_the_layout_check_catches(case: str) -> None:
    text = UNFORMATTED.get(case) or HOUSE_RULES[case]

    assert format_problems(text), case


@pytest.mark.skipif(not HAS_TERRAFORM, reason="terraform is not installed")
def test_the_layout_check_agrees_with_terraform_fmt(tmp_path: Path) -> None:
    assert terraform_fmt_accepts(FORMATTED, tmp_path)
    for case, text in UNFORMATTED.items():
        assert not terraform_fmt_accepts(text, tmp_path), f"terraform fmt accepts {case}: drop the case"
    for case, text in HOUSE_RULES.items():
        assert terraform_fmt_accepts(text, tmp_path), f"terraform fmt now enforces {case}: move it to UNFORMATTED"


def test_every_checkov_skip_names_a_check_and_gives_a_reason() -> None:
    skips = [(path.name, match) for path in sorted(INFRA.glob("*/*.tf")) for match in SKIP.finditer(path.read_text())]

    assert skips
    for filename, match in skips:
        check, reason = match[1], (match[2] or "").strip()
        assert re.fullmatch(r"CKV2?_[A-Z]+_\d+", check), f"{filename}: {match[0]}"
        assert len(reason.split()) >= 6, f"{filename}: {check} needs a reason a reviewer can judge"

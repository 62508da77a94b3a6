"""The READMEs' command blocks work when pasted: tools exist, flags are accepted, uploaded names match a contract."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from filegate.contracts import load_contracts
from filegate.validation import match_dataset
from local_world import ROOT
from local_world.emulators import AZURITE_FLAGS

READMES = [ROOT / "README.md", ROOT / "infra" / "README.md", ROOT / "gcp_function" / "README.md"]
# Tools a reader installs on their own machine; the READMEs say so where they use them.
EXTERNAL = {"make", "cp", "cd", "func", "terraform", "az", "gcloud", "databricks", "curl"}
_BLOCK = re.compile(r"^[ \t]*```sh\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)


def commands(readme: Path) -> list[list[str]]:
    """Each shell command of the file's ```sh blocks, continuation lines joined, comments dropped."""
    found = []
    for block in _BLOCK.findall(readme.read_text(encoding="utf-8")):
        text = re.sub(r"\\\n\s*", " ", block)
        for line in text.splitlines():
            words = shlex.split(line, comments=True)
            if words and (found_sub := re.fullmatch(r"[A-Za-z_]+=\$\((\S+)", words[0])):
                words = [found_sub[1], *words[1:]]  # VAR=$(command ...): the command is what runs
            while words and (re.fullmatch(r"[A-Za-z_]+=.*", words[0]) or words[0] == "export"):
                words = words[1:]
            if words:
                found.append(words)
    return found


ALL = [(readme.relative_to(ROOT), words) for readme in READMES if readme.exists() for words in commands(readme)]


def _subcommand_help(module: str, sub: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", module, sub, "--help"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 0, f"python -m {module} {sub} --help failed: {result.stderr}"
    return result.stdout


@pytest.mark.parametrize(("readme", "words"), ALL, ids=[" ".join(w)[:60] for _, w in ALL])
def test_each_command_runs_a_tool_that_exists_with_flags_it_accepts(readme: Path, words: list[str]) -> None:
    tool = words[0]
    if tool.startswith(".venv/bin/"):
        assert (ROOT / tool).exists() or tool.endswith("/filegate"), f"{readme}: {tool} is not installed by make setup"
    elif tool.startswith("node_modules/.bin/"):
        assert Path(tool).name in {"azurite", "azurite-blob"}, f"{readme}: {tool} is not in package.json"
    else:
        assert tool in EXTERNAL, f"{readme}: {tool} is neither installed by make setup nor a listed external tool"
    if Path(tool).name == "azurite":
        missing = [flag for flag in AZURITE_FLAGS if flag not in words and flag != "--silent"]
        assert not missing, f"{readme}: the Azurite command lacks {missing}, which the demo uses"
    command = None
    if Path(tool).name == "filegate":
        command = ("filegate.cli", words[1:])
    elif Path(tool).name == "python" and words[1:3] == ["-m", "local_world"]:
        command = ("local_world", words[3:])
    if command is not None:
        module, (sub, *rest) = command
        help_text = _subcommand_help(module, sub)
        for flag in (word.split("=")[0] for word in rest if word.startswith("--")):
            assert flag in help_text, f"{readme}: {module} {sub} does not take {flag}"


@pytest.mark.parametrize(("readme", "words"), ALL, ids=[" ".join(w)[:60] for _, w in ALL])
def test_uploaded_csv_names_match_a_contract(readme: Path, words: list[str]) -> None:
    contracts = load_contracts()
    for word in words:
        name = word.rstrip("/").rsplit("/", 1)[-1]
        if name.endswith(".csv") and "$(" not in word:
            contract, business_date, _ = match_dataset(contracts, name)
            assert contract is not None, f"{readme}: no contract matches {name}"
            assert business_date is not None, f"{readme}: {name} carries no business date"

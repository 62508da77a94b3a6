"""Parsed Terraform modules for the infra tests: one fixture per cloud."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"

_VARIABLE_REF = re.compile(r"^\$\{var\.([A-Za-z0-9_]+)\}$")
_LOCAL_REF = re.compile(r"^\$\{local\.([A-Za-z0-9_]+)\}$")
_OBJECT_KEY = re.compile(r"[{,]\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")


@dataclass(frozen=True)
class TerraformModule:
    """The blocks of one Terraform folder, with string quotes stripped as Terraform reads them."""

    folder: Path
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Every resource of one type, by name."""
        return {name: body for (kind, name), body in self.resources.items() if kind == resource_type}

    def resource(self, resource_type: str, name: str) -> dict[str, Any]:
        return self.resources[(resource_type, name)]

    def resolve(self, value: Any) -> Any:
        """Follow `${var.x}` to its default and `${local.x}` to its value, once each level."""
        if isinstance(value, str):
            if match := _VARIABLE_REF.match(value):
                return self.resolve(self.variables[match[1]].get("default"))
            if match := _LOCAL_REF.match(value):
                return self.resolve(self.locals[match[1]])
        return value

    def text(self) -> str:
        return "\n".join(path.read_text() for path in sorted(self.folder.glob("*.tf")))


def object_keys(value: Any, module: TerraformModule) -> set[str]:
    """Keys of a map attribute: a literal map, a local, a merge() of locals, or a conditional object."""
    value = module.resolve(value)
    if isinstance(value, dict):
        return set(value)
    if not isinstance(value, str):
        raise TypeError(f"not a map: {value!r}")
    merged = re.fullmatch(r"\$\{merge\((.*)\)\}", value)
    if merged:
        keys: set[str] = set()
        for part in merged[1].split(","):
            keys |= object_keys("${" + part.strip() + "}", module)
        return keys
    return set(_OBJECT_KEY.findall(value))


def load_module(folder: Path) -> TerraformModule:
    """Parse every *.tf file of a folder with python-hcl2."""
    options = hcl2.SerializationOptions(strip_string_quotes=True, with_comments=False, explicit_blocks=False)
    module = TerraformModule(folder)
    for path in sorted(folder.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle, serialization_options=options)
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    module.resources[(kind, name)] = body
        for block in parsed.get("variable", []):
            module.variables.update(block)
        for block in parsed.get("output", []):
            module.outputs.update(block)
        for block in parsed.get("locals", []):
            module.locals.update(block)
    return module


@pytest.fixture(scope="session")
def azure() -> TerraformModule:
    return load_module(INFRA / "azure")


@pytest.fixture(scope="session")
def gcp() -> TerraformModule:
    return load_module(INFRA / "gcp")

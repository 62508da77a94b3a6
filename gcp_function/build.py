"""Assemble the deployable GCP function: main.py, requirements.txt and the part of `filegate/` it imports.

Cloud Functions uploads one source folder and installs its requirements.txt; the core lives in
`filegate/` at the repository root, so it is copied in here at build time instead of a second copy
living in git. Which modules go in follows from the imports: those main.py reaches, directly or
through other modules (imports inside functions count), plus the package data pyproject.toml
declares (the dataset contracts). Nothing else: no other cloud's store, no operator command.
Output: `build/gcp_function/` (for `gcloud --source`, and the folder `infra/gcp` zips) and
`build/gcp_function.zip` (to upload yourself), byte-identical for identical inputs.

Usage: python gcp_function/build.py [--out DIR]
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTION_DIR = ROOT / "gcp_function"
PACKAGE = "filegate"
FUNCTION_FILES = ("main.py", "requirements.txt")
# Zip entries get a fixed time and mode so the archive's hash changes only when its content does.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_ZIP_MODE = 0o644 << 16


def _module_file(module: str, root: Path) -> Path | None:
    """The file of a module of the package, or None for modules from elsewhere (SDKs, the standard library)."""
    if module.split(".", 1)[0] != PACKAGE:
        return None
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Every module an import statement in the file names, wherever the statement stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def needed_modules(entry: Path, root: Path = ROOT) -> list[Path]:
    """The package's files the entry point reaches through imports; each module's parent packages too."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        for module in _imports(todo.pop()):
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
                found = _module_file(".".join(parts[:depth]), root)
                if found is not None and found not in seen:
                    seen.add(found)
                    todo.append(found)
    return sorted(seen)


def package_data(root: Path = ROOT) -> list[Path]:
    """The package's data files, as pyproject.toml declares them for the wheel."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = project["tool"]["setuptools"]["package-data"][PACKAGE]
    return sorted({path for pattern in patterns for path in (root / PACKAGE).glob(pattern) if path.is_file()})


def assemble(out: Path) -> Path:
    """Write `out/gcp_function/` afresh and return it."""
    target = out / "gcp_function"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in FUNCTION_FILES:
        shutil.copyfile(FUNCTION_DIR / name, target / name)
    for path in [*needed_modules(FUNCTION_DIR / "main.py"), *package_data()]:
        destination = target / path.relative_to(ROOT)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
    return target


def write_zip(folder: Path, archive: Path) -> Path:
    """Zip a folder deterministically: sorted entries, fixed timestamps and permissions."""
    archive.unlink(missing_ok=True)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            entry = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=_ZIP_TIME)
            entry.external_attr = _ZIP_MODE
            entry.create_system = 3
            entry.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(entry, path.read_bytes())
    return archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the deployable GCP function folder and zip.")
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="output folder (default: build/)")
    args = parser.parse_args(argv)
    folder = assemble(args.out)
    archive = write_zip(folder, args.out / "gcp_function.zip")
    print(f"{folder}\n{archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

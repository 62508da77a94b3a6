"""Assemble the deployable GCP function: main.py, requirements.txt and a vendored copy of `filegate/`.

Cloud Functions uploads one source folder and installs its requirements.txt; the core lives in
`filegate/` at the repository root, so it is copied in here at build time instead of a second copy
living in git. Output: `build/gcp_function/` (for `gcloud --source`) and `build/gcp_function.zip`
(for Terraform), byte-identical for identical inputs.

Usage: python gcp_function/build.py [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTION_DIR = ROOT / "gcp_function"
PACKAGE_DIR = ROOT / "filegate"
FUNCTION_FILES = ("main.py", "requirements.txt")
# Not needed in Google Cloud: the other cloud's store, and the operator and local-world commands
# (the local Jobs API, the watcher, the demo, status, sweep, check, the CLI around them).
LEFT_OUT = frozenset(
    {
        "azure_storage.py",
        "batches_command.py",
        "check.py",
        "cli.py",
        "demo.py",
        "doctor.py",
        "emulators.py",
        "files.py",
        "local_jobs",
        "status.py",
        "sweep.py",
        "watch",
        "__pycache__",
    }
)
# Zip entries get a fixed time and mode so the archive's hash changes only when its content does.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_ZIP_MODE = 0o644 << 16


def _package_files(package: Path) -> Iterator[Path]:
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(package)
        if any(part in LEFT_OUT for part in relative.parts) or path.suffix == ".pyc" or not path.is_file():
            continue
        yield path


def assemble(out: Path) -> Path:
    """Write `out/gcp_function/` afresh and return it."""
    target = out / "gcp_function"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in FUNCTION_FILES:
        shutil.copyfile(FUNCTION_DIR / name, target / name)
    for path in _package_files(PACKAGE_DIR):
        destination = target / "filegate" / path.relative_to(PACKAGE_DIR)
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

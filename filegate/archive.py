"""Archive and reject: conditional, create-only moves that never overwrite and never lose a file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote, unquote

from filegate.contracts import Contract, same_name
from filegate.errors import DestinationExists, ObjectNotFound, SourceChanged, StorageError, TransientError
from filegate.events import Upload
from filegate.settings import Location
from filegate.storage import COPY_PENDING, META_EVENT_ID, META_SOURCE, META_SOURCE_VERSION, ObjectInfo, Store

UNMATCHED = "_unmatched"
REPORT_SUFFIX = ".report.json"


@dataclass(frozen=True)
class Placement:
    """Where an upload's bytes now live, and whether an earlier delivery had put them there."""

    container: str
    path: str
    info: ObjectInfo
    reused: bool


def archive_path(dataset: str, business_date: date, file_name: str) -> str:
    """`<dataset>/<yyyy>/<mm>/<dd>/<file name>`: deterministic, so every redelivery computes the same."""
    return f"{dataset}/{business_date:%Y/%m/%d}/{_safe_name(file_name)}"


# Marks of archived files waiting for their run: what the scheduled sweep re-drives, so that a pass costs
# what is pending, not what was ever archived. A delivery writes its copy's mark (create-only) before it
# deletes the landing version and removes it once the run is recorded on the copy; the sweep removes the
# marks of files that have their run. One flat folder, each mark named by its file's encoded path: on an
# account with a hierarchical namespace (the Azure archive), nested marks would leave a directory per day
# behind. Dataset names cannot start with `_`, so no dataset's folder is this one. On GCP the event
# function may delete in the archive only here (an IAM condition on the name).
RUNS_PENDING_FOLDER = "_runs_pending"
_MARK_SUFFIX = ".json"
# An encoded path grows up to threefold (non-ASCII bytes, `/`); past this many characters the mark is
# named by a hash and its note names the file, so that a name the stores take always has a mark they take
# (both refuse names over 1024 bytes).
_MARK_NAME_MAX = 512
HASHED_MARK = "h-"


def run_pending_mark(archived_relative: str) -> str:
    """The mark of the archived file at `archived_relative` (in the archive location); "" gives the folder."""
    if not archived_relative:
        return f"{RUNS_PENDING_FOLDER}/"
    name = quote(archived_relative, safe="")
    if len(name) > _MARK_NAME_MAX:
        name = HASHED_MARK + hashlib.sha256(archived_relative.encode()).hexdigest()
    return f"{RUNS_PENDING_FOLDER}/{name}{_MARK_SUFFIX}"


def marked_file(mark_relative: str) -> str | None:
    """The archived file's path (in the archive location) a mark's path names; "" for a hashed mark, whose
    note names it; None for anything else."""
    folder, _, name = mark_relative.partition("/")
    if folder != RUNS_PENDING_FOLDER or "/" in name or not name.endswith(_MARK_SUFFIX):
        return None
    if name.startswith(HASHED_MARK):
        return ""
    return unquote(name.removesuffix(_MARK_SUFFIX)) or None


# What `set_report_aside` adds to a report's name: `.<yyyymmddThhmmssZ>-<tag>`.
_SET_ASIDE_STAMP = ".20260101T000000Z-00000000"
# Both stores refuse object names over 1024 bytes (Azure counts characters, GCS UTF-8 bytes: bytes are the stricter).
MAX_NAME_BYTES = 1024


def rejected_name(contract: Contract | None, business_date: date | None, file_name: str) -> str:
    """The name an upload is rejected under: the contract's spelling of a name it matched whatever the case
    (`Customers_2025_01_17.csv` is `customers_2025_01_17.csv`), so that a batch finds its rejected member
    with one listing prefix; any other name as it is. The report keeps the name as uploaded."""
    if contract is None or business_date is None:
        return file_name
    spelled = contract.file_name(business_date)
    return spelled if same_name(spelled, file_name) else file_name


def rejected_path(location: Location, dataset: str | None, file_name: str) -> str:
    """Where an upload is rejected to, relative to `location`: `<dataset or _unmatched>/<its name>`.

    A name whose longest form there (version-qualified, with its report's suffix) the stores would refuse
    is named by a hash of it instead, keeping its extension; the report says the whole name. (A landing
    name the stores took can be too long beside the rejected location's folders.)
    """
    folder = dataset or UNMATCHED
    name = _safe_name(file_name)
    if name.endswith(REPORT_SUFFIX):
        # A report's name is another file's report slot (`a.csv.report.json` is `a.csv`'s): an upload named
        # so is kept under a name no report has, and listed as the rejected file it is.
        name += "_"
    longest = location.path(version_qualified(f"{folder}/{name}", "")) + _SET_ASIDE_STAMP + REPORT_SUFFIX
    if len(longest.encode()) > MAX_NAME_BYTES:
        suffix = PurePosixPath(name).suffix
        suffix = suffix if len(suffix.encode()) <= 16 else ""
        name = HASHED_MARK + hashlib.sha256(file_name.encode()).hexdigest() + suffix
    return f"{folder}/{name}"


def report_path(path: str) -> str:
    return f"{path}{REPORT_SUFFIX}"


NO_REPORT = "no report beside the file"
UNREADABLE_REPORT = "the report is unreadable"


def read_report(store: Store, container: str, report: str) -> dict[str, Any]:
    """The report at `report` (its rejected file's `report_path`); one whose reasons say why there is none to read
    (NO_REPORT: a crash between the copy and the report leaves a rejected file without one; UNREADABLE_REPORT)."""
    info = store.stat(container, report)
    if info is None:
        return {"reasons": [NO_REPORT]}
    try:
        loaded = json.loads(store.read_prefix(container, info.path, max(info.size, 1), info.version))
    except (ValueError, ObjectNotFound, SourceChanged):  # not JSON, or gone or replaced since the listing
        return {"reasons": [UNREADABLE_REPORT]}
    return loaded if isinstance(loaded, dict) else {"reasons": ["the report is not a JSON object"]}


def report_reasons(store: Store, container: str, report: str) -> tuple[str, ...]:
    """The reasons the report at `report` gives, as a person reads them; when there is none to read, why."""
    return reasons_in(read_report(store, container, report))


def reasons_in(report: Mapping[str, Any]) -> tuple[str, ...]:
    """The reasons a report (as `read_report` gives it) gives, as a person reads them; when it has none, why."""
    given = report.get("reasons")
    if isinstance(given, str):  # a report written by hand may give its one reason as a string
        given = [given]
    reasons = tuple(map(str, given)) if isinstance(given, list) else ()
    if reasons == (NO_REPORT,):
        return ("rejected earlier; its report is missing",)
    if reasons == (UNREADABLE_REPORT,):
        return ("rejected earlier; its report is unreadable",)
    return reasons


def _safe_name(file_name: str) -> str:
    """Keep the user's name; only names that are path syntax get a prefix."""
    return f"_{file_name}" if file_name.strip(".") == "" else file_name


def version_qualified(path: str, version: str) -> str:
    """The name a different file with the same name is archived under, next to the first one."""
    tag = hashlib.sha256(version.encode()).hexdigest()[:12]
    pure = PurePosixPath(path)
    return str(pure.with_name(f"{pure.stem}__v{tag}{pure.suffix}"))


def unqualified_name(name: str) -> str:
    """A file name without the `__v<hash>` tag a same-named different file is archived under."""
    return re.sub(r"__v[0-9a-f]{12}(?=\.[^.]*$|$)", "", name)


def archived_versions(store: Store, location: Location, relative: str) -> list[ObjectInfo]:
    """Every object archived under `relative`'s name: the first file there, and each different one after it
    under its version-qualified name."""
    path = location.path(relative)
    folder, _, name = path.rpartition("/")
    stem = PurePosixPath(name).stem
    prefix = f"{folder}/{stem}" if folder else stem
    listed = store.list(location.container, prefix)
    return [info for info in listed if unqualified_name(info.path.rsplit("/", 1)[-1]) == name]


def _candidates(location: Location, relative: str, upload: Upload) -> tuple[str, str]:
    return location.path(relative), location.path(version_qualified(relative, upload.version))


def source_label(upload: Upload) -> str:
    """The upload's `container/path`, percent-encoded: Azure sends metadata as HTTP headers (Latin-1)."""
    return quote(f"{upload.container}/{upload.path}", safe="/")


def is_copy_of(info: ObjectInfo, upload: Upload) -> bool:
    """Whether an object is Filegate's copy of exactly this upload (same source, same version)."""
    return (
        info.metadata.get(META_SOURCE) == source_label(upload)
        and info.metadata.get(META_SOURCE_VERSION) == upload.version
    )


def holds_upload(info: ObjectInfo, upload: Upload) -> bool:
    """Whether a copy of this upload is whole: its copy finished well and it has the event's size.

    An Azure copy that is pending, failed or aborted leaves a blob with all of Filegate's metadata but
    not all of the bytes, so the metadata alone must never let the source be deleted.
    """
    return info.copy_finished and info.size == upload.size


def place_upload(
    store: Store, upload: Upload, location: Location, relative: str, *, beside_reports: bool = False
) -> Placement:
    """Copy the upload into `location`; a redelivery finds and reuses its own earlier copy once it is whole.

    `beside_reports` (the rejected location): a name whose report slot holds another upload's report is taken,
    as one holding another file is, so that a stale report never speaks for this file.
    """
    metadata = {
        META_SOURCE: source_label(upload),
        META_SOURCE_VERSION: upload.version,
        META_EVENT_ID: upload.event_id,
    }
    for path in _candidates(location, relative, upload):
        if beside_reports and _taken_report_slot(store, location.container, path, upload):
            continue
        try:
            info = store.copy(upload.container, upload.path, upload.version, location.container, path, metadata)
        except DestinationExists:
            existing = store.stat(location.container, path)
            if existing is None:
                continue
            if is_copy_of(existing, upload) and holds_upload(existing, upload):
                return Placement(location.container, path, existing, reused=True)
            if not (is_copy_of(existing, upload) or _abandoned_copy(existing, upload)):
                continue
            info = _copy_again(store, upload, existing, metadata)
        if info.size != upload.size:
            raise StorageError(f"copy of {upload.path} to {path} has {info.size} bytes, the event said {upload.size}")
        return Placement(location.container, path, info, reused=False)
    raise StorageError(f"both {relative} and its version-qualified name in {location} hold other files")


def _abandoned_copy(info: ObjectInfo, upload: Upload) -> bool:
    """An earlier version's copy from the same landing blob that failed or was aborted.

    Azure ends a copy `failed` when its source changes while the copy runs, and then that version is
    gone: no delivery will ever copy it again. Left in place it held the plain name (every later version
    of the file went to a `__v` name) and read as an archived file without a run in `reconcile` for
    ever. It holds no whole file, so the newer version's delivery replaces it.
    """
    return (
        info.metadata.get(META_SOURCE) == source_label(upload)
        and not info.copy_finished
        and info.copy_status != COPY_PENDING
    )


def _copy_again(store: Store, upload: Upload, unfinished: ObjectInfo, metadata: dict[str, str]) -> ObjectInfo:
    """Replace an earlier delivery's copy that is not whole; one still pending is left to finish."""
    where = f"{unfinished.container}/{unfinished.path}"
    if unfinished.copy_status == COPY_PENDING:
        # The source stays in landing: a redelivery finds the copy finished, or failed and copies again.
        raise TransientError(f"the copy of {upload.path} to {where} is still pending")
    # Failed, aborted or short: delete only that version, so another delivery's new copy is never removed.
    if not store.delete(unfinished.container, unfinished.path, unfinished.version):
        raise TransientError(f"the unfinished copy at {where} changed while it was being replaced")
    try:
        return store.copy(
            upload.container, upload.path, upload.version, unfinished.container, unfinished.path, metadata
        )
    except DestinationExists as exc:
        raise TransientError(f"another delivery is copying {upload.path} to {where}") from exc


def followed_upload(store: Store, upload: Upload, places: Iterable[tuple[Location, str]]) -> Upload | None:
    """The later version of its blob that an earlier delivery of this event followed and copied
    (`ingest.follow_current`), as that version's upload, found by the copy's metadata when the blob is gone
    from landing; None when there is none.

    `places`: each location with the path an upload of this name is placed at (a qualified name shares
    its stem). Reports are not copies.
    """
    if not upload.event_id:
        return None
    for location, relative in places:
        stem = str(PurePosixPath(relative).with_suffix(""))
        for info in store.list(location.container, location.path(stem)):
            followed = info.metadata.get(META_SOURCE_VERSION)
            if (
                not info.path.endswith(REPORT_SUFFIX)
                and info.metadata.get(META_EVENT_ID) == upload.event_id
                and info.metadata.get(META_SOURCE) == source_label(upload)
                and followed
                and followed != upload.version
            ):
                return replace(upload, version=followed, size=info.size)
    return None


def find_placement(store: Store, upload: Upload, location: Location, relative: str) -> Placement | None:
    """An earlier delivery's whole copy of this upload, if there is one."""
    for path in _candidates(location, relative, upload):
        info = store.stat(location.container, path)
        if info is not None and is_copy_of(info, upload) and holds_upload(info, upload):
            return Placement(location.container, path, info, reused=True)
    return None


def write_report(store: Store, placement: Placement, report: Mapping[str, Any]) -> bool:
    """The reasons beside the rejected file, create-only; False when an earlier delivery wrote them first (a
    placement made with `beside_reports` never has another upload's report beside it)."""
    data = json.dumps(report, indent=2, ensure_ascii=False).encode()
    try:
        store.put(placement.container, report_path(placement.path), data, "application/json", {})
    except DestinationExists:
        return False
    return True


def _taken_report_slot(store: Store, container: str, path: str, upload: Upload) -> bool:
    """Whether a report of another upload lies where `path`'s report goes: its rejected file deleted by hand and
    the report left, or a name used again. Such a slot is left alone (the function may not delete there)."""
    report = store.stat(container, report_path(path))
    return report is not None and _report_owner(store, report) != (f"{upload.container}/{upload.path}", upload.version)


def _report_owner(store: Store, info: ObjectInfo) -> tuple[object, object]:
    try:
        document = json.loads(store.read_prefix(info.container, info.path, max(info.size, 1), info.version))
    except (ValueError, ObjectNotFound, SourceChanged):
        return None, None  # unreadable, or gone: not this upload's report
    if not isinstance(document, dict):
        return None, None
    return document.get("source"), document.get("source_version")


# What `set_report_aside` adds to a file's name: `.<UTC stamp>-<version tag>.report.json`.
_ASIDE = re.compile(r"\.\d{8}T\d{6}Z-[0-9a-f]{8}" + re.escape(REPORT_SUFFIX))


def reports_set_aside(store: Store, container: str, path: str) -> list[str]:
    """The reports `set_report_aside` kept for the file at `path`, oldest first."""
    found = store.list(container, path + ".")
    return sorted(info.path for info in found if _ASIDE.fullmatch(info.path.removeprefix(path)))


def _aside_path(path: str, when: datetime, version: str) -> str:
    """Where a report of the file at `path` is kept aside: a name with `when` and a version's tag."""
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    tag = hashlib.sha256(version.encode()).hexdigest()[:8]
    return f"{path}.{stamp}-{tag}{REPORT_SUFFIX}"


def set_report_aside(store: Store, info: ObjectInfo, when: datetime) -> None:
    """Keep a report beside its file under a name with `when` and its own version (two in one second keep both)."""
    kept = _aside_path(info.path.removesuffix(REPORT_SUFFIX), when, info.version)
    # Refused: another delivery set this very version aside first (and may have deleted it).
    with contextlib.suppress(DestinationExists, ObjectNotFound, SourceChanged):
        store.copy(info.container, info.path, info.version, info.container, kept, {})
    store.delete(info.container, info.path, info.version)


def note_no_report_aside(store: Store, info: ObjectInfo, when: datetime) -> None:
    """Keep, as `set_report_aside` would keep its report, a note that the rejected file `info` had none to set aside."""
    note = {"reasons": [NO_REPORT], "reprocessed_at": when.isoformat(timespec="seconds")}
    with contextlib.suppress(DestinationExists):  # an earlier run of the same second noted it already
        store.put(
            info.container,
            _aside_path(info.path, when, info.version),
            json.dumps(note).encode(),
            "application/json",
            {},
        )

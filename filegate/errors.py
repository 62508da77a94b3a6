"""One exception family for Filegate."""


class FilegateError(Exception):
    """Base of every error Filegate raises on purpose."""


class ContractError(FilegateError):
    """A dataset contract is missing fields or contradicts itself."""


class SettingsError(FilegateError):
    """A setting is missing or malformed; fix the configuration, retrying will not help."""


class MalformedSettings(SettingsError):
    """Settings that do not read, each problem on its own: one deployment fixes them all."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class LocationMissing(SettingsError):
    """A container or bucket a setting names does not exist: a configuration error, never "superseded"."""


class AccessDenied(SettingsError):
    """The identity lacks a permission a location needs: grant the one the message names."""


class UsageError(FilegateError):
    """A command's argument names nothing it can act on (a typo, a path outside its location): fix the command."""


class UnsafeSql(FilegateError):
    """A name or value that cannot be written into Spark SQL as it is (a backtick in a name, a quote in a literal)."""


class InvalidEvent(FilegateError):
    """An event that cannot be understood; logged and dropped, never retried."""


class TransientError(FilegateError):
    """A failure that may pass (storage 5xx, Jobs API unavailable): the platform should redeliver."""


class StorageUnreachable(TransientError):
    """The store did not answer, or answered that it is unavailable (5xx, 408, 429), after its own retries."""


class RefusedUntilFixed(TransientError):
    """Redelivered all the same (the fix may come within the platform's retries), but no retry alone mends it:
    a setting or a permission (run-now denied, no such job). The commands exit CONFIG for it."""


class Leased(TransientError):
    """The object cannot be deleted or changed until another party lets go of it: a lease another client holds
    (Azure), a hold or a retention period (GCS). Filegate never breaks or releases one; it retries."""


class RunNotStarted(TransientError):
    """The file is archived but its run-now failed: the archived copy is work to do, not a done file.

    `to_fix`: the cause is a setting or a permission (no such job, run-now denied), which no retry mends:
    the commands exit CONFIG for it. The function still fails the event, so the platform redelivers it
    (the fix may come within the retry window), and the sweep starts the run once the cause is fixed.
    """

    def __init__(
        self,
        archived_path: str,
        cause: str,
        *,
        to_fix: bool = False,
        dataset: str | None = None,
        pipeline: str | None = None,
        business_date: str | None = None,
    ) -> None:
        super().__init__(f"archived at {archived_path}, but its run did not start: {cause}")
        self.archived_path = archived_path
        self.to_fix = to_fix
        # A file's dataset, or a batch's pipeline, and its day: for the outcome that reports it `run pending`.
        self.dataset = dataset
        self.pipeline = pipeline
        self.business_date = business_date


class StorageError(FilegateError):
    """A storage operation failed for a reason the caller can act on."""


class ObjectNotFound(StorageError):
    """The object is not there (any more)."""


class Unreadable(StorageError):
    """The object is there, but no retry reads it until a person acts on it (an Azure blob in the Archive
    tier, or an object encrypted with a key its uploader supplied, on either cloud). When it is the landing
    file the event is about, the event is answered and the file stays put; `container` and `path` say which
    object it is."""

    def __init__(self, message: str, container: str = "", path: str = "") -> None:
        super().__init__(message)
        self.container = container
        self.path = path


class DamagedLeftBehind(StorageError):
    """A write left an object with other bytes than those sent, and it could not be removed: a person deletes
    it before anything reads it (running again only meets it)."""


class ConditionFailed(StorageError):
    """A precondition did not hold: the source changed, or the destination already exists."""


class SourceChanged(ConditionFailed):
    """The source object is no longer the version the event described."""


class DestinationExists(ConditionFailed):
    """A create-only write found an object already there."""

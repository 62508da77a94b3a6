"""One exception family for Filegate."""


class FilegateError(Exception):
    """Base of every error Filegate raises on purpose."""


class ContractError(FilegateError):
    """A dataset contract is missing fields or contradicts itself."""


class SettingsError(FilegateError):
    """A setting is missing or malformed; fix the configuration, retrying will not help."""


class InvalidEvent(FilegateError):
    """An event that cannot be understood; logged and dropped, never retried."""


class TransientError(FilegateError):
    """A failure that may pass (storage 5xx, Jobs API unavailable): the platform should redeliver."""


class StorageError(FilegateError):
    """A storage operation failed for a reason the caller can act on."""


class ObjectNotFound(StorageError):
    """The object is not there (any more)."""


class ConditionFailed(StorageError):
    """A precondition did not hold: the source changed, or the destination already exists."""


class SourceChanged(ConditionFailed):
    """The source object is no longer the version the event described."""


class DestinationExists(ConditionFailed):
    """A create-only write found an object already there."""

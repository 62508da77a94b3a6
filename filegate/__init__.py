"""Filegate: validate each uploaded file, archive or reject it, and start exactly one Databricks run.

The curated surface: adapters call `handle_payload` with a `Gate` built by `build_gate`; everything
else is reachable through its module (`events`, `contracts`, `validation`, `archive`, `jobs`).
"""

from filegate.contracts import Contract, Contracts, load_contracts
from filegate.errors import FilegateError, InvalidEvent, SettingsError, TransientError
from filegate.events import Ignored, Upload, parse_event, parse_events
from filegate.ingest import Gate, Outcome, handle_payload, handle_upload
from filegate.runtime import build_gate
from filegate.settings import Settings

__all__ = [
    "Contract",
    "Contracts",
    "FilegateError",
    "Gate",
    "Ignored",
    "InvalidEvent",
    "Outcome",
    "Settings",
    "SettingsError",
    "TransientError",
    "Upload",
    "build_gate",
    "handle_payload",
    "handle_upload",
    "load_contracts",
    "parse_event",
    "parse_events",
]

"""Writes realistic order-tracking files of a requested size, deterministically and streaming.

    python -m local_world.samples.order_tracking --rows 120 --date 2025-03-03 --days 5 --malformed 3 --out data/samples

Parcels are created in daily cohorts and report statuses over the next days; some reports reach
the carrier's file a day late, some are sent twice, and `--malformed` rows break one rule each.
Each parcel's story comes from its own seeded generator, so any file can be written on its own.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import TextIO

from filegate.contracts import load_contracts
from local_world.samples import check_days

DATASET = "order_tracking"
# A parcel reports about five statuses over up to four days; cohorts older than this are done.
_LIFETIME_DAYS = 4
_EVENTS_PER_PARCEL = 5.2
_CARRIERS = ("UPS", "FEDEX", "USPS", "DHL", "ONTRAC")
_ORIGINS = (("Memphis", "US"), ("Louisville", "US"), ("Leipzig", "DE"), ("Ontario", "US"), ("Shenzhen", "CN"), ("", ""))
_DESTINATIONS = (
    ("Chicago", "60601", "US"),
    ("Austin", "78701", "US"),
    ("Seattle", "98101", "US"),
    ("Toronto", "M5H 2N2", "CA"),
    ("Berlin", "10115", "DE"),
    ("Lyon", "69001", "FR"),
    ("Milano", "20121", "IT"),
    ("Denver", "80202", "US"),
)
_OFFSETS = (UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=1)), timezone(timedelta(hours=-8)))
_MALFORMED = (
    ("status", "LOST_IN_SPACE"),
    ("status_ts", "2025-02-30T10:00:00Z"),
    ("tracking_num", ""),
    ("weight_kg", "12.5kg"),
    ("carrier", "PONY_EXPRESS"),
    ("is_signature_required", "maybe"),
    ("expected_delivery_date", "next week"),
    (None, "too few fields"),
)


@dataclass(frozen=True)
class Event:
    """One status report of one parcel, and the day it reaches a file."""

    file_day: date
    row: tuple[str, ...]


def _tracking_number(carrier: str, rng: random.Random) -> str:
    digits = "".join(rng.choices("0123456789", k=22))
    if carrier == "UPS":
        return "1Z" + "".join(rng.choices("0123456789ABCDEFGHJKLMNPRSTUVWXYZ", k=16))
    if carrier == "FEDEX":
        return digits[:12]
    if carrier == "USPS":
        return "9400" + digits[:18]
    if carrier == "DHL":
        return digits[:10]
    return "C" + digits[:14]


def _timestamp_text(instant: datetime, rng: random.Random) -> str:
    """Carriers disagree on formats: UTC with Z, local time with an offset, or no offset (UTC)."""
    style = rng.random()
    if style < 0.6:
        return instant.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style < 0.9:
        return instant.astimezone(rng.choice(_OFFSETS[1:])).isoformat(timespec="seconds")
    return instant.strftime("%Y-%m-%d %H:%M:%S")


def parcel_events(seed: int, created: date, index: int, late_share: float, duplicate_share: float) -> list[Event]:
    """Every status report of one parcel, in the order they happened (duplicates included)."""
    # An integer seed per parcel: cheap to build, and the same story on every run and machine.
    rng = random.Random((seed * 1_000_003 + created.toordinal()) * 100_000_007 + index)
    carrier = rng.choice(_CARRIERS)
    tracking = _tracking_number(carrier, rng)
    order_id = f"ORD-{rng.randrange(10**8):08d}"
    origin_city, origin_country = rng.choice(_ORIGINS)
    city, postal, country = rng.choice(_DESTINATIONS)
    expected = (created + timedelta(days=rng.randint(2, 4))).isoformat() if rng.random() < 0.9 else ""
    weight = f"{rng.uniform(0.1, 30):.3f}" if rng.random() < 0.95 else ""
    signature = rng.choice(("true", "false", "false", ""))
    # Hours since midnight UTC of the creation day.
    label = rng.uniform(6, 16)
    steps = [
        ("LABEL_CREATED", label),
        ("PICKED_UP", label + rng.uniform(2, 6)),
        ("IN_TRANSIT", label + rng.uniform(8, 20)),
    ]
    steps.append(("OUT_FOR_DELIVERY", 24 * rng.randint(1, 2) + rng.uniform(13, 15)))
    if rng.random() < 0.06:
        steps += [("DELIVERY_EXCEPTION", steps[-1][1] + rng.uniform(3, 6)), ("RETURNED_TO_SENDER", 24 * 3 + 16)]
    else:
        steps.append(("DELIVERED", steps[-1][1] + rng.uniform(1, 6)))
    midnight = datetime(created.year, created.month, created.day, tzinfo=UTC)
    events: list[Event] = []
    for status, hours in steps:
        instant = midnight + timedelta(hours=hours)
        row: tuple[str, ...] = (tracking, order_id, status, _timestamp_text(instant, rng), carrier, origin_city)
        row += (origin_country, city, postal, country, expected, weight, signature)
        file_day = instant.date() + timedelta(days=1 if rng.random() < late_share else 0)
        events.append(Event(file_day, row))
        if rng.random() < duplicate_share:
            events.append(Event(file_day, row))
    return events


def day_rows(seed: int, day: date, rows: int, late_share: float, duplicate_share: float) -> Iterator[tuple[str, ...]]:
    """Exactly `rows` good rows for one day's file: older cohorts' reports first, then new parcels."""
    cohort = max(1, round(rows / _EVENTS_PER_PARCEL))
    emitted = 0
    for age in range(_LIFETIME_DAYS, -1, -1):
        created = day - timedelta(days=age)
        # Today's cohort grows past its nominal size until the file is full.
        limit = cohort if age else sys.maxsize
        for index in range(limit):
            for event in parcel_events(seed, created, index, late_share, duplicate_share):
                if event.file_day != day:
                    continue
                yield event.row
                emitted += 1
                if emitted == rows:
                    return


def malformed_row(row: tuple[str, ...], variant: int, columns: Sequence[str]) -> tuple[str, ...]:
    """A copy of a good row that breaks exactly one rule."""
    column, value = _MALFORMED[variant % len(_MALFORMED)]
    if column is None:
        return row[: len(row) - 3]
    broken = list(row)
    broken[columns.index(column)] = value
    return tuple(broken)


def write_day(
    out: TextIO, seed: int, day: date, rows: int, malformed: int, late_share: float, duplicate_share: float
) -> None:
    """Write one day's file: header, then `rows` data rows of which `malformed` are broken."""
    columns = load_contracts()[DATASET].column_names
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    every = rows // malformed if malformed else 0
    for position, row in enumerate(day_rows(seed, day, rows, late_share, duplicate_share), start=1):
        if every and position % every == 0 and position // every <= malformed:
            writer.writerow(malformed_row(row, seed + position // every, columns))
        else:
            writer.writerow(row)


def file_name(day: date) -> str:
    return f"{DATASET}_{day:%Y_%m_%d}.csv"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local_world samples", description="Write order-tracking files of a requested row count."
    )
    parser.add_argument("--rows", type=int, required=True, help="Data rows per file.")
    parser.add_argument("--date", type=date.fromisoformat, required=True, help="Business date of the first file.")
    parser.add_argument("--out", type=Path, required=True, help="Folder to write into.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=1, help="Consecutive daily files to write.")
    parser.add_argument("--malformed", type=int, default=0, help="Rows per file that break one rule each.")
    parser.add_argument(
        "--late-share", type=float, default=0.05, help="Share of reports that reach a file a day late, below 1."
    )
    parser.add_argument("--duplicate-share", type=float, default=0.03, help="Share of reports sent twice.")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.days < 1 or not 0 <= args.malformed <= args.rows:
        parser.error("--rows and --days must be positive and --malformed at most --rows")
    check_days(parser, args.date, args.days)
    # At 1 no report of the day's new parcels reaches the day's file, which fills up with them: it never ends.
    if not 0 <= args.late_share < 1:
        parser.error(f"--late-share must be at least 0 and below 1, not {args.late_share}")
    if not 0 <= args.duplicate_share <= 1:
        parser.error(f"--duplicate-share must be from 0 to 1, not {args.duplicate_share}")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for offset in range(args.days):
            day = args.date + timedelta(days=offset)
            path = args.out / file_name(day)
            with path.open("w", encoding="utf-8", newline="") as out:
                write_day(out, args.seed, day, args.rows, args.malformed, args.late_share, args.duplicate_share)
            print(f"wrote {path} ({args.rows} rows)")
    except OSError as exc:  # --out a file, a folder this account may not write, a full disk
        parser.exit(1, f"{parser.prog}: cannot write {exc.filename or args.out}: {exc.strerror or exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Deterministic sample files for the demo, the tests and `make samples`: order tracking and an e-commerce batch."""

import argparse
from datetime import date

# The files hold dates decades before their business day (birth dates) and days after it (deliveries):
# near Python's year 1 or 9999 they leave its calendar. A plausible business date is in this range.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2999, 12, 31)


def check_days(parser: argparse.ArgumentParser, first: date, days: int) -> None:
    """Refuse, as an argument error, business days outside FIRST_DAY to LAST_DAY."""
    if first < FIRST_DAY or first.toordinal() + days - 1 > LAST_DAY.toordinal():
        parser.error(f"--date and --days must keep every business day from {FIRST_DAY} to {LAST_DAY}")

"""Writes seed 004's daily e-commerce batch: five CSV files and a trigger per day, with counted flaws.

    python -m local_world ecommerce-samples --date 2025-01-15 --days 2 --seed 7 --out data/samples/ecommerce

The same seed gives the same bytes. Every flaw is planted on purpose and counted in `flaws.json`
beside the files, so tests assert exact numbers instead of "some rows were rejected":
invalid emails and phones, a negative amount, orphan orders, a discontinued product ordered, a stock
status that contradicts its quantity, a delivery before its order, exact and conflicting duplicates,
a product description with a line break, a product missing from the second day's snapshot, and a
customer whose only change is `last_login`. `bad/` holds a customers file with a wrong header.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from filegate.contracts import Contract, load_contracts
from local_world.samples import check_days

PIPELINE = "ecommerce"
MEMBERS = ("customers", "products", "inventory", "orders", "shipping")
SOURCE_SYSTEM = "shop-erp"
_FIRST = ("Ada", "Björn", "Chloé", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Luis")
_LAST = ("Lovelace", "Okafor", "Müller", "Nakamura", "Silva", "Dubois", "Novak", "O'Brien", "Rossi", "Singh")
_CITIES = (
    ("Boston", "MA", "02134", "US", "+1617555"),
    ("Austin", "TX", "78701", "US", "+1512555"),
    ("Seattle", "WA", "98101", "US", "+1206555"),
    ("Toronto", "ON", "M5H 2N2", "CA", "+1416555"),
    ("Berlin", "", "10115", "DE", "+49301234"),
    ("Lyon", "", "69001", "FR", "+33472000"),
)
_TIERS = ("BASIC", "BASIC", "SILVER", "GOLD", "PREMIUM")
_CATEGORIES = {
    "Electronics": (("Audio", "Sonora"), ("Phones", "Kite"), ("Cameras", "Lumen")),
    "Home & Kitchen": (("Cookware", "Ferro"), ("Storage", "Boxwell")),
    "Clothing": (("Outerwear", "Nordkap"), ("Shoes", "Strada")),
    "Sports": (("Cycling", "Veloce"), ("Camping", "Trailhead")),
    "Books": (("Fiction", "Inkwell"),),
    "Beauty": (("Skincare", "Aloe & Co"),),
    "Toys": (("Puzzles", "Brainy"),),
}
_WAREHOUSES = ("WH-BOS-01", "WH-AUS-02", "WH-BER-01")
_PAYMENTS = ("CREDIT_CARD", "CREDIT_CARD", "DEBIT_CARD", "PAYPAL", "BANK_TRANSFER", "GIFT_CARD")
_METHODS = {"STANDARD": ("3.99", 5), "EXPRESS": ("12.50", 2), "OVERNIGHT": ("24.00", 1)}
_CARRIERS = ("UPS", "FEDEX", "USPS", "DHL", "ONTRAC")
_LOW_STOCK = 10


@dataclass
class Flaws:
    """What was planted in one business day's files, in the terms the checks report."""

    rows: dict[str, int] = field(default_factory=dict)
    # Rows the function's rules or the job's column rules and row checks reject, by rule id.
    rejects: Counter[str] = field(default_factory=Counter)
    # Rows kept but counted by a `warn` check, by check id.
    warnings: Counter[str] = field(default_factory=Counter)
    # Cross-dataset findings and other planted situations, each with the keys involved.
    planted: dict[str, list[str]] = field(default_factory=dict)

    def plant(self, what: str, key: str) -> None:
        self.planted.setdefault(what, []).append(key)

    def as_json(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "rejects": dict(sorted(self.rejects.items())),
            "warnings": dict(sorted(self.warnings.items())),
            "planted": self.planted,
        }


@dataclass
class World:
    """The shop's state as the producer knows it, carried from one day to the next."""

    customers: dict[str, dict[str, str]] = field(default_factory=dict)
    products: dict[str, dict[str, str]] = field(default_factory=dict)
    stock: dict[tuple[str, str], int] = field(default_factory=dict)
    orders: dict[str, dict[str, str]] = field(default_factory=dict)
    next_customer: int = 1
    next_order: int = 1


def _stamp(day: date, rng: random.Random, hour_from: int = 6, hour_to: int = 22) -> str:
    # Formatted by hand: strftime was a third of the volume days' time.
    hour, minute, second = rng.randrange(hour_from, hour_to), rng.randrange(60), rng.randrange(60)
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:{second:02d}Z"


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def _ascii(text: str) -> str:
    return text.replace("'", "").replace("ö", "o").replace("é", "e").replace("ü", "u")


def _new_customer(world: World, day: date, rng: random.Random, registered: date | None = None) -> dict[str, str]:
    number = world.next_customer
    world.next_customer += 1
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    city, state, zip_code, country, phone_prefix = rng.choice(_CITIES)
    registered = registered or day - timedelta(days=rng.randrange(0, 900))
    created = _stamp(registered, rng)
    # 21 to 75 years old on the day (1950 to 2003 in 2025): a fixed range made every customer of a day
    # before 2017 a child by plausible_age, a warning flaws.json did not count.
    born = date(rng.randrange(day.year - 75, day.year - 21), rng.randrange(1, 13), rng.randrange(1, 29))
    return {
        "customer_id": f"CUST-{number:06d}",
        "first_name": first,
        "last_name": last,
        "email": _ascii(f"{first}.{last}{number}@example.com".lower()),
        "phone": f"{phone_prefix}{rng.randrange(10**4):04d}",
        "date_of_birth": born.isoformat() if rng.random() > 0.1 else "",
        "registration_date": registered.isoformat(),
        "address": f"{rng.randrange(1, 400)} {rng.choice(('Main', 'Harbor', 'Linden', 'Oak'))} Street",
        "city": city,
        "state": state,
        "zip_code": zip_code,
        "country": country,
        "customer_tier": rng.choice(_TIERS),
        # Never before registration: login_after_registration would warn about a flaw nobody planted.
        "last_login": _stamp(max(registered, day - timedelta(days=rng.randrange(0, 30))), rng)
        if rng.random() > 0.15
        else "",
        "created_timestamp": created,
        "updated_at": created,
    }


def _new_product(number: int, day: date, rng: random.Random) -> dict[str, str]:
    category = rng.choice(sorted(_CATEGORIES))
    subcategory, brand = rng.choice(_CATEGORIES[category])
    price = Decimal(rng.randrange(500, 40000)) / 100
    cost = (price * Decimal(rng.randrange(35, 80)) / 100).quantize(Decimal("0.01"))
    launched = day - timedelta(days=rng.randrange(30, 1500))
    return {
        "product_id": f"PROD-{number:05d}",
        "product_name": f"{brand} {subcategory} {rng.choice(('One', 'Pro', 'Lite', 'Max', 'Mini'))}",
        "category": category,
        "subcategory": subcategory,
        "brand": brand,
        "price": _money(price),
        "cost": _money(cost),
        "currency": "USD",
        "stock_quantity": "0",
        "weight_kg": f"{rng.randrange(50, 9000) / 1000:.3f}",
        "dimensions_cm": f"{rng.randrange(5, 80)}x{rng.randrange(5, 60)}x{rng.randrange(2, 40)}",
        "color": rng.choice(("black", "white", "red", "blue", "")),
        "material": rng.choice(("aluminium", "cotton", "steel", "paper", "")),
        "description": f"{subcategory} by {brand}, {rng.choice(('bestseller', 'new', 'classic'))}.",
        "launch_date": launched.isoformat(),
        "discontinued": "false",
        "created_timestamp": _stamp(launched, rng),
    }


def _stock_status(quantity: int) -> str:
    if quantity <= 0:
        return "OUT_OF_STOCK"
    return "LOW_STOCK" if quantity <= _LOW_STOCK else "IN_STOCK"


def _order(world: World, day: date, customer_id: str, product_id: str, rng: random.Random) -> dict[str, str]:
    number = world.next_order
    world.next_order += 1
    product = world.products[product_id]
    quantity = rng.choice((1, 1, 1, 2, 3))
    customer = world.customers.get(customer_id)
    address = f"{customer['address']}, {customer['city']}" if customer else "12 Unknown Road, Springfield"
    created = _stamp(day, rng, 0, 20)
    return {
        "order_id": f"ORD-{20250000 + number:08d}",
        "customer_id": customer_id,
        "product_id": product_id,
        "quantity": str(quantity),
        "order_date": day.isoformat(),
        "order_amount": _money(Decimal(product["price"]) * quantity),
        "currency": "USD" if rng.random() > 0.08 else "EUR",
        "payment_method": rng.choice(_PAYMENTS),
        "shipping_address": address,
        "order_status": "CONFIRMED",
        "created_timestamp": created,
        "updated_at": created,
    }


def _shipment(order: dict[str, str], day: date, rng: random.Random, delivered: bool) -> dict[str, str]:
    method = rng.choice(sorted(_METHODS))
    cost, days = _METHODS[method]
    ordered = date.fromisoformat(order["order_date"])
    estimated = ordered + timedelta(days=days)
    stamp = _stamp(day, rng)
    return {
        "order_id": order["order_id"],
        "tracking_number": f"1Z{rng.randrange(16**12):012X}",
        "shipping_method": method,
        "carrier": rng.choice(_CARRIERS),
        "shipping_cost": cost,
        "currency": "USD",
        "package_weight": f"{rng.randrange(100, 20000) / 1000:.3f}",
        "dimensions_cm": f"{rng.randrange(10, 60)}x{rng.randrange(10, 40)}x{rng.randrange(5, 30)}",
        "ship_date": ordered.isoformat(),
        "estimated_delivery": estimated.isoformat(),
        "actual_delivery": (ordered + timedelta(days=days + rng.choice((0, 0, 1)))).isoformat() if delivered else "",
        "created_timestamp": stamp,
        "updated_at": stamp,
    }


def day_one(world: World, day: date, rng: random.Random, flaws: Flaws) -> dict[str, list[dict[str, str]]]:
    """The first day: the initial load of customers and catalogue, the day's orders and shipments."""
    customers = [_new_customer(world, day, rng) for _ in range(60)]
    for customer in customers:
        world.customers[customer["customer_id"]] = customer
    # Invalid contact data: rejected by the column rules, on both sides.
    customers[7] = {**customers[7], "email": "not-an-email"}
    customers[19] = {**customers[19], "email": "someone@example"}
    customers[23] = {**customers[23], "phone": "0044 20 7946 0958"}
    customers[41] = {**customers[41], "phone": "+0123456789"}
    flaws.rejects.update({"customers.email.pattern": 2, "customers.phone.pattern": 2})
    for index in (7, 19, 23, 41):
        flaws.plant("invalid_contact", customers[index]["customer_id"])
        world.customers.pop(customers[index]["customer_id"])

    products = [_new_product(number, day, rng) for number in range(1, 25)]
    for product in products:
        world.products[product["product_id"]] = product
    discontinued = products[5]
    discontinued["discontinued"] = "true"
    flaws.plant("discontinued_product", discontinued["product_id"])
    # Free text from the editors: a quoted field with a line break (multiline_records).
    products[2]["description"] = "Two-part set.\nSecond line: care instructions inside."
    flaws.plant("multiline_description", products[2]["product_id"])

    inventory = _inventory(world, day, rng, flaws, contradict=True)
    orders = _orders(world, day, rng, flaws, count=70, discontinued=discontinued["product_id"])
    shipping = _shipping(world, day, rng, flaws, orders, before_order=True)
    return {
        "customers": customers,
        "products": products,
        "inventory": inventory,
        "orders": orders,
        "shipping": shipping,
    }


def day_two(world: World, day: date, rng: random.Random, flaws: Flaws) -> dict[str, list[dict[str, str]]]:
    """The next day: changed and new customers, the catalogue without one product, new orders."""
    known = sorted(world.customers)
    changed = []
    upgraded = world.customers[known[2]]
    upgraded = {**upgraded, "customer_tier": "PREMIUM" if upgraded["customer_tier"] != "PREMIUM" else "GOLD"}
    upgraded["updated_at"] = _stamp(day, rng)
    changed.append(upgraded)
    flaws.plant("tier_change", upgraded["customer_id"])
    moved = {**world.customers[known[9]], "city": "Austin", "state": "TX", "zip_code": "78702"}
    moved["updated_at"] = _stamp(day, rng)
    changed.append(moved)
    flaws.plant("address_change", moved["customer_id"])
    # Only `last_login` changes: SCD2 must update the current version, not open a new one.
    login = {**world.customers[known[14]], "last_login": _stamp(day, rng)}
    login["updated_at"] = _stamp(day, rng, 22, 23)
    changed.append(login)
    flaws.plant("last_login_only_change", login["customer_id"])
    for customer in changed:
        world.customers[customer["customer_id"]] = customer
    new = [_new_customer(world, day, rng, registered=day) for _ in range(8)]
    for customer in new:
        world.customers[customer["customer_id"]] = customer
    # Registered "tomorrow": the row check registered_not_in_future rejects it.
    future = _new_customer(world, day, rng, registered=day + timedelta(days=1))
    flaws.rejects["customers.check.registered_not_in_future"] += 1
    flaws.plant("registered_in_future", future["customer_id"])
    customers = [*changed, *new, future]

    dropped = sorted(world.products)[10]
    world.products.pop(dropped)
    for key in [key for key in world.stock if key[0] == dropped]:
        world.stock.pop(key)
    flaws.plant("missing_from_snapshot", dropped)
    repriced = world.products[sorted(world.products)[0]]
    repriced["price"] = _money(Decimal(repriced["price"]) * Decimal("1.10"))
    flaws.plant("price_change", repriced["product_id"])
    products = [world.products[key] for key in sorted(world.products)]

    inventory = _inventory(world, day, rng, flaws, contradict=False)
    orders = _orders(world, day, rng, flaws, count=80, discontinued=None)
    shipping = _shipping(world, day, rng, flaws, orders, before_order=False)
    return {
        "customers": customers,
        "products": products,
        "inventory": inventory,
        "orders": orders,
        "shipping": shipping,
    }


def _inventory(world: World, day: date, rng: random.Random, flaws: Flaws, contradict: bool) -> list[dict[str, str]]:
    rows = []
    for product_id in sorted(world.products):
        for warehouse in _WAREHOUSES[: 2 + int(product_id[-1]) % 2]:
            quantity = world.stock.get((product_id, warehouse), rng.randrange(0, 120))
            quantity = max(0, quantity - rng.randrange(0, 6))
            world.stock[(product_id, warehouse)] = quantity
            status = "DISCONTINUED" if world.products[product_id]["discontinued"] == "true" else _stock_status(quantity)
            rows.append(
                {
                    "product_id": product_id,
                    "warehouse_location": warehouse,
                    "stock_quantity": str(quantity),
                    "stock_status": status,
                    "last_updated": _stamp(day, rng),
                    "created_timestamp": "2024-06-01T00:00:00Z",
                }
            )
    for product_id in world.products:
        world.products[product_id]["stock_quantity"] = str(
            sum(quantity for (pid, _), quantity in world.stock.items() if pid == product_id)
        )
    if contradict:
        # IN_STOCK with no units: the warn check status_matches_quantity counts it.
        row = next(row for row in rows if row["stock_status"] != "DISCONTINUED")
        row["stock_quantity"] = "0"
        row["stock_status"] = "IN_STOCK"
        world.stock[(row["product_id"], row["warehouse_location"])] = 0
        flaws.warnings["inventory.check.status_matches_quantity"] += 1
        flaws.plant("status_contradicts_quantity", f"{row['product_id']}|{row['warehouse_location']}")
    return rows


def _orders(
    world: World, day: date, rng: random.Random, flaws: Flaws, count: int, discontinued: str | None
) -> list[dict[str, str]]:
    customers = sorted(world.customers)
    products = sorted(pid for pid, product in world.products.items() if product["discontinued"] == "false")
    orders = [_order(world, day, rng.choice(customers), rng.choice(products), rng) for _ in range(count)]
    # Customers nobody ever sent: orders that cannot be linked (a cross-dataset orphan each).
    for index, ghost in ((4, "CUST-999901"), (31, "CUST-999902")):
        orders[index]["customer_id"] = ghost
        flaws.plant("orphan_order", orders[index]["order_id"])
    # A refund booked as a negative amount: the column rule order_amount.min rejects it.
    orders[12]["order_amount"] = "-" + orders[12]["order_amount"]
    flaws.rejects["orders.order_amount.min"] += 1
    flaws.plant("negative_amount", orders[12]["order_id"])
    if discontinued:
        orders[20] = _order(world, day, orders[20]["customer_id"], discontinued, rng)
        flaws.plant("discontinued_product_ordered", orders[20]["order_id"])
    # The same order sent twice, byte for byte: one row survives, nothing is rejected.
    exact = dict(orders[40])
    # The same key twice with different content: unique_keys rejects both rows.
    conflicting = {**orders[50], "quantity": str(int(orders[50]["quantity"]) + 1)}
    flaws.plant("exact_duplicate", exact["order_id"])
    flaws.plant("conflicting_duplicate", conflicting["order_id"])
    flaws.rejects["orders.row.duplicate_key"] += 2
    for order in orders:
        if order["order_id"] not in (orders[12]["order_id"], conflicting["order_id"]):
            world.orders[order["order_id"]] = order
    return [*orders[:45], exact, *orders[45:51], conflicting, *orders[51:]]


def _shipping(
    world: World, day: date, rng: random.Random, flaws: Flaws, orders: list[dict[str, str]], before_order: bool
) -> list[dict[str, str]]:
    shipped = [world.orders[order["order_id"]] for order in orders if order["order_id"] in world.orders][::3]
    seen: set[str] = set()
    rows = []
    for order in shipped:
        if order["order_id"] in seen:
            continue
        seen.add(order["order_id"])
        rows.append(_shipment(order, day, rng, delivered=rng.random() < 0.3))
    if before_order:
        # Delivered the day before it was ordered: cross-dataset rule, shipping against orders.
        row = rows[3]
        ordered = date.fromisoformat(world.orders[row["order_id"]]["order_date"])
        row["ship_date"] = (ordered - timedelta(days=2)).isoformat()
        row["estimated_delivery"] = (ordered - timedelta(days=1)).isoformat()
        row["actual_delivery"] = (ordered - timedelta(days=1)).isoformat()
        flaws.plant("delivered_before_ordered", row["tracking_number"])
    return rows


def file_name(dataset: str, day: date) -> str:
    return f"{dataset}_{day:%Y_%m_%d}.csv"


def trigger_name(day: date) -> str:
    return f"trigger_{day:%Y_%m_%d}.json"


def trigger(day: date, files: dict[str, tuple[str, int, int]]) -> bytes:
    """The producer's trigger file: the batch date and, per member, its file, rows and bytes."""
    document = {
        "batch_date": day.isoformat(),
        "source_system": SOURCE_SYSTEM,
        "created_at": f"{day + timedelta(days=1)}T02:10:00Z",
        "files": [
            {"dataset": dataset, "file": name, "rows": rows, "bytes": size}
            for dataset, (name, rows, size) in files.items()
        ],
    }
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


class _MemberFile:
    """One member file written row by row, in the bytes `render` gives."""

    def __init__(self, out: TextIO, contract: Contract) -> None:
        self._writer = csv.writer(out, lineterminator="\n")
        self._columns = contract.column_names
        self._writer.writerow(self._columns)
        self.rows = 0

    def write(self, rows: Iterable[dict[str, str]]) -> None:
        columns, writer = self._columns, self._writer
        for row in rows:
            writer.writerow([row[name] for name in columns])
            self.rows += 1


DayRows = dict[str, Iterable[dict[str, str]]]


def write_days(
    first_day: date, days: int, seed: int, out: Path, build_day: Callable[[int, date, random.Random, Flaws], DayRows]
) -> dict[str, Flaws]:
    """Write each day's member files (streamed), its trigger and `flaws.json`; the flaws of each day, by date."""
    contracts = load_contracts()
    found: dict[str, Flaws] = {}
    out.mkdir(parents=True, exist_ok=True)
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        rng = random.Random(f"{seed}-{day.isoformat()}")
        flaws = Flaws()
        rows = build_day(offset, day, rng, flaws)
        files = {}
        for dataset in MEMBERS:
            path = out / file_name(dataset, day)
            with path.open("w", encoding="utf-8", newline="") as sink:
                member = _MemberFile(sink, contracts[dataset])
                member.write(rows[dataset])
            flaws.rows[dataset] = member.rows
            files[dataset] = (path.name, member.rows, path.stat().st_size)
        (out / trigger_name(day)).write_bytes(trigger(day, files))
        found[day.isoformat()] = flaws
    summary = {day: flaws.as_json() for day, flaws in found.items()}
    (out / "flaws.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return found


def generate(first_day: date, days: int, seed: int, out: Path) -> dict[str, Flaws]:
    """Write `days` business days of the batch into `out`; the flaws of each day, by date."""
    world = World()

    def build_day(offset: int, day: date, rng: random.Random, flaws: Flaws) -> DayRows:
        return dict((day_one if offset == 0 else day_two)(world, day, rng, flaws))

    found = write_days(first_day, days, seed, out, build_day)
    last = first_day + timedelta(days=days - 1)
    header = ",".join(load_contracts()["customers"].column_names).replace("email", "e_mail")
    bad = out / "bad"
    bad.mkdir(exist_ok=True)
    good = (out / file_name("customers", last)).read_text(encoding="utf-8").split("\n", 1)[1]
    (bad / file_name("customers", last)).write_text(f"{header}\n{good}", encoding="utf-8")
    return found


# --- volume days, for the batch benchmark --------------------------------------------------------

# One flaw of each kind per this many rows of its dataset: enough to exercise the rules, few enough
# that the benchmark measures the good path.
FLAW_EVERY = 10_000


@dataclass(frozen=True)
class Volumes:
    """Rows per business day of each member file."""

    orders: int
    customers: int
    products: int
    inventory: int
    shipping: int

    @classmethod
    def scaled(cls, orders: int) -> Volumes:
        """The issue's daily sizes per 100k orders: 50k customers, 5k products, 10k inventory rows, 100k shipments."""
        return cls(orders, max(1, orders // 2), max(2, orders // 20), max(2, orders // 10), orders)


@dataclass
class VolumeWorld:
    """What a volume day needs of the days before, kept small: customers are only an address each."""

    shop: World = field(default_factory=World)
    # Every fifth customer is kept whole, to be sent again with a change on a later day.
    changeable: list[dict[str, str]] = field(default_factory=list)
    next_product: int = 1


def _volume_customers(
    volume: VolumeWorld, day: date, count: int, rng: random.Random, flaws: Flaws
) -> Iterator[dict[str, str]]:
    """A day's customers: new ones, and after the first day a fifth changed (tier, address or last login only)."""
    changes = min(count // 5, len(volume.changeable))
    for index, customer in enumerate(volume.changeable[:changes]):
        if index % 3 == 0:
            customer["customer_tier"] = "PREMIUM" if customer["customer_tier"] != "PREMIUM" else "GOLD"
        elif index % 3 == 1:
            customer["address"] = f"{rng.randrange(1, 400)} Harbor Street"
        else:
            customer["last_login"] = _stamp(day, rng)
        customer["updated_at"] = _stamp(day, rng, 22, 23)
        yield customer
    # The changed ones go to the back: the next day changes others.
    volume.changeable = volume.changeable[changes:] + volume.changeable[:changes]
    for index in range(count - changes):
        customer = _new_customer(volume.shop, day, rng)
        if index % FLAW_EVERY == 7:
            customer["email"] = "not-an-email"
            flaws.rejects["customers.email.pattern"] += 1
            flaws.plant("invalid_contact", customer["customer_id"])
        else:
            volume.shop.customers[customer["customer_id"]] = {"address": customer["address"], "city": customer["city"]}
            if index % 5 == 0:
                volume.changeable.append(customer)
        yield customer


def _volume_products(volume: VolumeWorld, day: date, count: int, rng: random.Random, flaws: Flaws) -> list[str]:
    """The day's catalogue snapshot: after the first day one product dropped, one in a hundred repriced."""
    products = volume.shop.products
    if products:
        dropped = sorted(products)[len(products) // 2]
        products.pop(dropped)
        for key in [key for key in volume.shop.stock if key[0] == dropped]:
            volume.shop.stock.pop(key)
        flaws.plant("missing_from_snapshot", dropped)
        for product_id in sorted(products)[::100]:
            products[product_id]["price"] = _money(Decimal(products[product_id]["price"]) * Decimal("1.10"))
    while len(products) < count:
        product = _new_product(volume.next_product, day, rng)
        if volume.next_product % 50 == 5:
            product["discontinued"] = "true"
        products[product["product_id"]] = product
        volume.next_product += 1
    return sorted(products)


def _volume_inventory(
    volume: VolumeWorld, day: date, count: int, products: list[str], rng: random.Random
) -> Iterator[dict[str, str]]:
    """The day's stock snapshot: `count` (product, warehouse) rows, as many warehouses per product as that needs."""
    per_product = min(len(_WAREHOUSES), -(-count // len(products)))
    pairs = [(product_id, warehouse) for product_id in products for warehouse in _WAREHOUSES[:per_product]][:count]
    for product_id, warehouse in pairs:
        quantity = max(0, volume.shop.stock.get((product_id, warehouse), rng.randrange(0, 120)) - rng.randrange(0, 6))
        volume.shop.stock[(product_id, warehouse)] = quantity
        discontinued = volume.shop.products[product_id]["discontinued"] == "true"
        yield {
            "product_id": product_id,
            "warehouse_location": warehouse,
            "stock_quantity": str(quantity),
            "stock_status": "DISCONTINUED" if discontinued else _stock_status(quantity),
            "last_updated": _stamp(day, rng),
            "created_timestamp": "2024-06-01T00:00:00Z",
        }


def _volume_orders(
    volume: VolumeWorld, day: date, count: int, products: list[str], rng: random.Random, flaws: Flaws, good: list[str]
) -> Iterator[dict[str, str]]:
    """A day's new orders; the ids of those the job keeps go to `good` (for the day's shipments)."""
    customers = list(volume.shop.customers)
    on_sale = [pid for pid in products if volume.shop.products[pid]["discontinued"] == "false"]
    for index in range(count):
        order = _order(volume.shop, day, rng.choice(customers), rng.choice(on_sale), rng)
        if index % FLAW_EVERY == 4:
            # A customer nobody ever sent (numbers start at 1): a cross-dataset orphan.
            order["customer_id"] = "CUST-000000"
            flaws.plant("orphan_order", order["order_id"])
        if index % FLAW_EVERY == 12:
            order["order_amount"] = "-" + order["order_amount"]
            flaws.rejects["orders.order_amount.min"] += 1
            flaws.plant("negative_amount", order["order_id"])
        else:
            good.append(order["order_id"])
        yield order


def _volume_shipping(
    day: date, count: int, orders: list[str], rng: random.Random, flaws: Flaws
) -> Iterator[dict[str, str]]:
    """`count` shipments of the day's orders (one each, then a second parcel), unique tracking numbers."""
    for index in range(count):
        row = _shipment(
            {"order_id": orders[index % len(orders)], "order_date": day.isoformat()}, day, rng, rng.random() < 0.3
        )
        row["tracking_number"] = f"1Z{day:%y%m%d}{index:010d}"
        if index % FLAW_EVERY == 3:
            row["ship_date"] = (day - timedelta(days=2)).isoformat()
            row["estimated_delivery"] = row["actual_delivery"] = (day - timedelta(days=1)).isoformat()
            flaws.plant("delivered_before_ordered", row["tracking_number"])
        yield row


def generate_volumes(first_day: date, days: int, seed: int, out: Path, volumes: Volumes) -> dict[str, Flaws]:
    """Write `days` volume days into `out`, streamed row by row; the flaws of each day, by date."""
    volume = VolumeWorld()

    def build_day(offset: int, day: date, rng: random.Random, flaws: Flaws) -> DayRows:
        products = _volume_products(volume, day, volumes.products, rng, flaws)
        good: list[str] = []
        # Generators, run in member order: the orders fill `good` before the shipments read it.
        return {
            "customers": _volume_customers(volume, day, volumes.customers, rng, flaws),
            "products": (volume.shop.products[pid] for pid in products),
            "inventory": _volume_inventory(volume, day, volumes.inventory, products, rng),
            "orders": _volume_orders(volume, day, volumes.orders, products, rng, flaws, good),
            "shipping": _volume_shipping(day, volumes.shipping, good, rng, flaws),
        }

    return write_days(first_day, days, seed, out, build_day)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local_world ecommerce-samples", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--date", type=date.fromisoformat, default=date(2025, 1, 15), help="first business day")
    parser.add_argument("--days", type=int, default=2, help="business days to write (1 or 2 without volumes)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    volume = parser.add_argument_group("volume days (for benchmarks)")
    volume.add_argument("--orders", type=int, help="orders a day; the other members scale by the issue's ratios")
    for dataset in ("customers", "products", "inventory", "shipping"):
        volume.add_argument(f"--{dataset}", type=int, help=f"{dataset} rows a day (default: scaled from --orders)")
    args = parser.parse_args(argv)
    counts = {name: getattr(args, name) for name in ("orders", "customers", "products", "inventory", "shipping")}
    if all(count is None for count in counts.values()):
        if args.days not in (1, 2):
            parser.error("--days must be 1 or 2 for the samples (volume days take any number)")
        volumes: Volumes | None = None
    else:
        if args.orders is None:
            parser.error("volume days need --orders (the other counts default to its ratios)")
        if any(count is not None and count < 1 for count in counts.values()) or args.days < 1:
            parser.error("--days and every row count must be at least 1")
        scaled = Volumes.scaled(args.orders)
        volumes = Volumes(
            **{name: count if count is not None else getattr(scaled, name) for name, count in counts.items()}
        )
        # A lone product is dropped from the snapshot each day, and the fifth one is discontinued: no product
        # was left on sale for that day's orders. Inventory has a row per product and warehouse, no more.
        if volumes.products < 2:
            parser.error("--products must be at least 2")
        if volumes.inventory > len(_WAREHOUSES) * volumes.products:
            parser.error(
                f"--inventory {volumes.inventory} is more than a row per product and warehouse "
                f"({volumes.products} products x {len(_WAREHOUSES)} warehouses = {len(_WAREHOUSES) * volumes.products})"
            )
    check_days(parser, args.date, args.days)
    try:
        if volumes is None:
            generate(args.date, args.days, args.seed, args.out)
        else:
            generate_volumes(args.date, args.days, args.seed, args.out, volumes)
    except OSError as exc:  # --out a file, a folder this account may not write, a full disk
        parser.exit(1, f"{parser.prog}: cannot write {exc.filename or args.out}: {exc.strerror or exc}\n")
    print(f"wrote {args.days} day(s) of the {PIPELINE} batch to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

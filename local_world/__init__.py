"""The local world: emulators, the local Jobs API, the event watcher, the demo and sample data.

Everything here stands in for a cloud on this machine; the product (`filegate`, `spark_jobs`) never
imports it. Run it with `python -m local_world COMMAND` from the repository root.
"""

from pathlib import Path

# The checkout this package lives in: node_modules, .jars, infra/ and data/ are found from here.
ROOT = Path(__file__).resolve().parents[1]

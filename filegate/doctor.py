"""`filegate doctor`: every check the gate makes before it moves a file, the batch job, the local world's tools."""

from __future__ import annotations

import argparse
import sys

from filegate import exits
from filegate.errors import FilegateError, MalformedSettings
from filegate.events import AZURE
from filegate.readiness import LOCATION_SETTINGS, Check, check_job, check_local_tools, check_storage
from filegate.settings import Settings, settings_help, sweep_schedule
from filegate.status import BATCH_STATUS_SETTINGS, STATUS_SETTINGS
from filegate.stores import add_target_option

# The settings each part reads: one malformed setting (FILEGATE_SAMPLE_BYTES=abc) stopped every check, and
# whether the containers and the jobs exist was learned a run of `doctor` later, one fix at a time.
STORAGE_SETTINGS = (*LOCATION_SETTINGS, "FILEGATE_AZURE_STORAGE", "FILEGATE_AZURE_ARCHIVE_STORAGE")
CONTRACT_SETTINGS = ("FILEGATE_CONTRACTS_DIR",)
NOT_CHECKED = "not checked: fix the settings above first"
JOBS_API_SILENT = "not checked: the Jobs API did not answer for the Databricks job"
JOBS_API_ANSWERED = "not checked: the same Jobs API's last answer for the Databricks job was "


def run_checks(target: str | None, *, local: bool) -> list[Check]:
    """Settings, then storage and the jobs, each as far as its own settings read; with `local`, Java, Node, Python."""
    from filegate.batches import batch_job_trigger
    from filegate.jobs import DatabricksJobs
    from filegate.stores import open_target_store, store_kind

    checks: list[Check] = []
    settings: Settings | None = None
    try:
        settings = Settings.from_env()
        checks.append(
            Check(
                "settings",
                True,
                f"landing {settings.landing}, archive {settings.archive}, rejected {settings.rejected}",
            )
        )
    except FilegateError as exc:
        checks += [Check("settings", False, problem) for problem in _problems(exc)]

    def part(names: tuple[str, ...]) -> Settings | None:
        return settings if settings is not None else _read_part(names, checks)

    storage_settings, contract_settings = part(STORAGE_SETTINGS), part(CONTRACT_SETTINGS)
    job_settings, batch_settings = part(STATUS_SETTINGS), part(BATCH_STATUS_SETTINGS)
    if storage_settings is not None and store_kind(target, storage_settings) == AZURE:
        try:
            checks.append(Check("sweep schedule", True, f"the Azure function sweeps at `{sweep_schedule()}`"))
        except FilegateError as exc:
            checks.append(Check("sweep schedule", False, str(exc)))
    # Each part on its own: storage that cannot be opened says nothing about the jobs, so both are checked.
    pipelines, contracts_ok = 0, False
    if contract_settings is not None:
        contracts, pipelines = _check_contracts(contract_settings)
        contracts_ok = contracts.ok
        checks.append(contracts)
    if storage_settings is None:
        checks.append(Check("storage", False, NOT_CHECKED))
    else:
        try:
            store = open_target_store(target, storage_settings)
        except FilegateError as exc:
            checks.append(Check("storage", False, str(exc)))
        else:
            checks += check_storage(storage_settings, store)
    jobs = DatabricksJobs(job_settings) if job_settings else None
    job_checks = check_job(jobs) if jobs else [Check("Databricks job", False, NOT_CHECKED)]
    checks += job_checks
    if pipelines or not contracts_ok:
        # The gate does not check it before moving files (a missing batch job leaves members archived
        # and their batch `run pending`, nothing lost), so this is where a wrong setting shows. When
        # the contracts do not load, the built-in pipeline is still there: the job is checked too.
        if batch_settings is None:
            checks.append(Check("Databricks batch job", False, NOT_CHECKED))
        elif any(check.transient for check in job_checks):
            # The same host: asked again, it spent its wait again (the probe's 3 s, or the SDK's whole retry
            # window for a 503 or a 429), and said what the line above says. One that answered is not "silent":
            # its answer says what to do (a 429: fewer callers at once).
            answer = next((check.answer for check in job_checks if check.answer), None)
            detail = f"{JOBS_API_ANSWERED}{answer}" if answer else JOBS_API_SILENT
            checks.append(Check("Databricks batch job", False, detail, transient=True))
        else:
            checks += check_job(batch_job_trigger(batch_settings, client_of=jobs), "Databricks batch job")
    if local:
        checks += check_local_tools()
    return checks


def _problems(exc: FilegateError) -> list[str]:
    """Each problem of settings that do not read."""
    return list(exc.problems) if isinstance(exc, MalformedSettings) else [str(exc)]


def _read_part(names: tuple[str, ...], checks: list[Check]) -> Settings | None:
    """The settings of one part, when they read; else None, and their problem unless `checks` says it already."""
    try:
        return Settings.from_env(names=names)
    except FilegateError as exc:
        said = {check.detail for check in checks}
        checks += [Check("settings", False, problem) for problem in _problems(exc) if problem not in said]
        return None


def _check_contracts(settings: Settings) -> tuple[Check, int]:
    """The contracts and pipelines the gate would load (built-in, and FILEGATE_CONTRACTS_DIR's); how many pipelines."""
    from filegate.contracts import is_builtin, load_contracts
    from filegate.pipelines import load_pipelines

    folders = [settings.contracts_dir] if settings.contracts_dir else []
    try:
        contracts = load_contracts(*folders)
        pipelines = load_pipelines(contracts, *folders)
    except FilegateError as exc:
        return Check("contracts", False, str(exc)), 0
    counted = f"{len(contracts)} dataset(s), {len(pipelines)} pipeline(s)"
    if not settings.contracts_dir:
        return Check("contracts", True, f"{counted} (built-in)"), len(pipelines)
    # How many are the folder's own: "(built-in and FOLDER)" read the same for a folder that held none (its files
    # one level down, or named .yaml), and the operator's datasets were then unknown to the gate.
    sources = [contract.source for contract in contracts.values()] + [p.source for p in pipelines.values()]
    theirs = sum(source is not None and not is_builtin(source) for source in sources)
    where = f"{theirs or 'none'} of them from {settings.contracts_dir}"
    return Check("contracts", True, f"{counted} (built-in; {where})"), len(pipelines)


def main(argv: list[str]) -> int:
    """`filegate doctor`: check settings, storage, the three locations, the jobs; with --local, Java/Node/Python."""
    parser = argparse.ArgumentParser(
        prog="filegate doctor",
        description=main.__doc__,
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_target_option(parser)
    parser.add_argument("--local", action="store_true", help="also check the local world's tools (make demo)")
    args = parser.parse_args(argv)
    checks = run_checks(args.target, local=args.local)
    for check in checks:
        print(f"{'OK  ' if check.ok else 'FIX '} {check.name}: {check.detail}")
    failed = [check for check in checks if not check.ok]
    print(f"{len(checks) - len(failed)} OK, {len(failed)} to fix" if failed else f"all {len(checks)} checks OK")
    # By the exit policy: a setting to fix first, or (when all that failed is reachability) try again later.
    return exits.most_urgent(exits.TRY_AGAIN if check.transient else exits.CONFIG for check in failed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

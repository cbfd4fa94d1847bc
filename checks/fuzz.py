"""Fuzz check: schemathesis generates requests from /openapi.json for every operation, valid and invalid, and checks
that no response is a server error and that every documented response matches its schema.

    python checks/fuzz.py                    # 1000 examples per operation
    python checks/fuzz.py --examples 200     # the CI size
    python checks/fuzz.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

A failure is fixed in main.py and pinned by a test in test_main.py, never silenced here.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Server, fresh_database, summary

CHECKS = "not_a_server_error,response_schema_conformance"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1000, help="most test cases per operation and phase")
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server URL (default: a new SQLite file)")
    parser.add_argument("--seed", type=int, help="repeat an earlier run")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds before the check gives up")
    args = parser.parse_args()

    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="bookapi-fuzz-") as folder,
        fresh_database(args.postgres) as database_url,
        Server(database_url) as server,
    ):
        report = Path(folder) / "report.json"
        command = [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json"]
        command += ["--checks", CHECKS, "--max-examples", str(args.examples), "--continue-on-failure"]
        command += ["--generation-database", "none", "--no-color"]
        command += ["--report", "json", "--report-json-path", str(report)]
        command += ["--seed", str(args.seed)] if args.seed is not None else []
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=args.timeout)
        if not report.exists():
            print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
            return summary("fuzz", False, {"error": "schemathesis wrote no report"})
        outcome = json.loads(report.read_text())
        tracebacks = server.server_errors_logged()

    if outcome["failures"] or outcome["errors"]:
        print(result.stdout[-6000:])
    figures = {
        "operations": outcome["operations"]["tested"],
        "of": outcome["operations"]["total"],
        "examples": outcome["test_cases"]["generated"],
        "max_examples_per_operation": args.examples,
        "failures": outcome["test_cases"]["unique_failures"],
        "errors": len(outcome["errors"]),
        "server_tracebacks": tracebacks,
        "seed": outcome["seed"],
        "seconds": round(time.monotonic() - started, 1),
    }
    ok = (
        result.returncode == 0
        and figures["failures"] == 0
        and figures["errors"] == 0
        and figures["operations"] == figures["of"]
        and tracebacks == 0
    )
    return summary("fuzz", ok, figures)


if __name__ == "__main__":
    sys.exit(main())

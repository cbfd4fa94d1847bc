"""A pytest plugin that check_jwt.py and exercise 7's check_ownership.py load to watch a learner's test; not a test.

It watches `main.app.dependency_overrides` while the test runs: it writes to the JSON file PROBE_REPORT how many
times the test replaced `main.require_user` there (however it did: an assignment, `monkeypatch.setitem`, `update`, a
new dict), and with PROBE_IGNORE_OVERRIDES=1 it ignores every replacement, so that the test must then fail.
"""

import json
import os
import subprocess
import sys
from collections import UserDict
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def run_with_probe(test: str, report: Path, ignore_overrides: bool) -> subprocess.CompletedProcess[str]:
    """What the checkers call: runs the learner's test (a name in test_main.py) in a new pytest, with this plugin."""
    env = os.environ | {"PROBE_REPORT": str(report), "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)])}
    env |= {"PROBE_IGNORE_OVERRIDES": "1"} if ignore_overrides else {}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "fake_user_probe", f"test_main.py::{test}"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


replaced: list[Any] = []  # every dependency the test replaced


class Overrides(UserDict[Any, Any]):
    """A dict that notes each key set (UserDict routes update, setdefault and |= through __setitem__ too)."""

    def __setitem__(self, key: Any, value: Any) -> None:
        replaced.append(key)
        if os.environ.get("PROBE_IGNORE_OVERRIDES") != "1":
            super().__setitem__(key, value)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:  # before the fixtures, so that one setting an override is seen
    import main  # here: the suite's conftest sets the test database before main.py is imported

    app = main.app

    class Watched(type(app)):  # type: ignore[misc]
        @property
        def dependency_overrides(self) -> Overrides:
            return self.__dict__["dependency_overrides"]  # type: ignore[no-any-return]

        @dependency_overrides.setter
        def dependency_overrides(self, overrides: dict[Any, Any]) -> None:  # the test assigns a new dict
            self.__dict__["dependency_overrides"] = overrides if isinstance(overrides, Overrides) else Overrides()
            self.__dict__["dependency_overrides"].update(overrides)

    overrides = app.__dict__.pop("dependency_overrides", {})
    app.__class__ = Watched
    app.dependency_overrides = overrides


def pytest_sessionfinish(session: pytest.Session) -> None:
    import main

    require_user = getattr(main, "require_user", None)
    report = {"require_user_replaced": sum(require_user is not None and key is require_user for key in replaced)}
    with open(os.environ["PROBE_REPORT"], "w") as file:
        json.dump(report, file)

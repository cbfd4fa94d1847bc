"""A pytest plugin that check_jwt.py and exercise 7's check_ownership.py load to watch a learner's test; not a test.

It watches `main.app.dependency_overrides` while the test runs: it writes to the JSON file PROBE_REPORT how many
times the test replaced `main.require_user` there (however it did: an assignment, `monkeypatch.setitem`, `update`, a
new dict), and with PROBE_IGNORE_OVERRIDES=1 it ignores every replacement, so that the test must then fail.
"""

import json
import os
from collections import UserDict
from typing import Any

import pytest

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

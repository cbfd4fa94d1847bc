"""The checkers use the learners' fixtures: `client` (an HTTP client on a fresh database) and `db_url`."""

from test_main import client, db_url  # noqa: F401

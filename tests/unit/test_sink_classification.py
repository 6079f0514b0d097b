"""Every database error has one meaning: the records' fault (refused) or the server's (waited out).

A server in the wrong state must never be taken for a refusal: that would dead-letter every
valid record while, say, PostgreSQL is a read-only standby after a failover. The PostgreSQL rule
is checked over every SQLSTATE psycopg2 knows, not a list of known cases. Errors are built
without a server here because the point is the mapping; the read-only standby itself runs
against the real server in tests/integration/test_wrong_state.py.
"""

from __future__ import annotations

import psycopg2
import psycopg2.errorcodes
import pytest
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from quotes_consumer.sinks import Refused, SinkError, Unavailable, mongo, postgres

SQLSTATES = sorted(
    value
    for name, value in vars(psycopg2.errorcodes).items()
    if name.isupper() and isinstance(value, str) and len(value) == 5
)


def pg_error(code: str | None, message: str = "boom") -> psycopg2.Error:
    """A psycopg2 error carrying ``code`` as its SQLSTATE, as the server would send it."""
    base = psycopg2.OperationalError if code is None else psycopg2.Error
    return type("ServerError", (base,), {"pgcode": code})(message)


def test_psycopg2_knows_hundreds_of_sqlstates() -> None:
    assert len(SQLSTATES) > 200


@pytest.mark.parametrize("code", SQLSTATES)
def test_every_sqlstate_is_either_refused_or_unavailable(code: str) -> None:
    failure = postgres.classify(pg_error(code))
    assert type(failure) in (Refused, Unavailable)
    assert isinstance(failure, Refused) == (code[:2] in postgres.REFUSED_CLASSES)


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("25006", "read-only transaction: a standby after failover"),
        ("57P01", "admin shutdown"),
        ("57014", "statement timeout"),
        ("42501", "permission revoked"),
        ("42P01", "table missing"),
        ("53300", "too many connections"),
        ("55P03", "lock not available"),
        ("40001", "serialization failure"),
        ("XX000", "internal error"),
    ],
)
def test_a_server_in_the_wrong_state_is_unavailable_never_a_refusal(code: str, why: str) -> None:
    assert isinstance(postgres.classify(pg_error(code, why)), Unavailable)


@pytest.mark.parametrize("code", ["22P02", "23505", "54000", "P0001", "23514"])
def test_what_a_record_causes_is_a_refusal(code: str) -> None:
    assert isinstance(postgres.classify(pg_error(code)), Refused)


def test_no_sqlstate_and_no_answer_are_unavailable() -> None:
    assert isinstance(
        postgres.classify(pg_error(None, "server closed the connection")), Unavailable
    )
    assert isinstance(postgres.classify(postgres.NoAnswer("no answer")), Unavailable)


# --- MongoDB ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        AutoReconnect("connection reset"),
        NotPrimaryError("not primary"),
        NetworkTimeout("timed out"),
        ServerSelectionTimeoutError("no servers"),
        OperationFailure("not primary", code=10107),
        OperationFailure("interrupted due to repl state change", code=11602),
        OperationFailure("interrupted", code=11601),
        OperationFailure("shutting down", code=91),
        OperationFailure("primary stepped down", code=189),
        OperationFailure("unauthorized", code=13),
        OperationFailure("lock timeout", code=24),
    ],
    ids=lambda error: f"{type(error).__name__}-{getattr(error, 'code', '')}",
)
def test_mongo_server_states_are_unavailable(error: Exception) -> None:
    assert isinstance(mongo.classify(error), Unavailable)


def test_an_unknown_top_level_mongo_code_is_left_unclassified() -> None:
    failure = mongo.classify(OperationFailure("odd", code=424242))
    assert type(failure) is SinkError


def bulk_error(*errors: dict) -> BulkWriteError:
    return BulkWriteError({"writeErrors": list(errors), "writeConcernErrors": []})


def test_a_per_document_write_error_refuses_exactly_those_documents() -> None:
    error = bulk_error(
        {"index": 3, "code": 17280, "errmsg": "key too long"},
        {"index": 5, "code": 11000, "errmsg": "duplicate key"},
    )
    with pytest.raises(Refused) as refused:
        mongo.MongoSink._raise_for(error)
    assert refused.value.positions == (3,)


@pytest.mark.parametrize("code", [10107, 11602, 91, 13435, 13436, 189])
def test_a_per_document_error_that_is_the_servers_state_is_unavailable(code: int) -> None:
    with pytest.raises(Unavailable):
        mongo.MongoSink._raise_for(bulk_error({"index": 0, "code": code, "errmsg": "not primary"}))


def test_duplicates_alone_are_success() -> None:
    mongo.MongoSink._raise_for(bulk_error({"index": 0, "code": 11000, "errmsg": "duplicate"}))

"""The page's settings, read once from the environment at start.

Why one table: each setting's name, default and meaning live in one place, and a bad value stops
the program with one line naming it, before any server is contacted. Everything else receives a
``Settings`` and never reads ``os.environ``.

NiFi and the quotes API are optional: left empty, their stages show "not configured" (down).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


class SettingsError(ValueError):
    """A setting is missing or malformed; the message is one line naming it."""


# name -> (default, help). None as default means required.
SETTINGS: dict[str, tuple[str | None, str]] = {
    "STATUS_HOST": ("127.0.0.1", "address the page listens on (0.0.0.0 in its container)"),
    "STATUS_PORT": ("8088", "port the page listens on"),
    "STATUS_REFRESH_S": ("2", "seconds between two looks at the servers"),
    "STATUS_PROBE_TIMEOUT_S": ("1.5", "seconds a server may take to answer one look"),
    "KAFKA_BOOTSTRAP_SERVERS": (None, "Kafka brokers, host:port[,host:port]"),
    "KAFKA_TOPIC": ("quotes", "the topic NiFi publishes to"),
    "KAFKA_DLQ_TOPIC": ("quotes.dlq", "the dead-letter topic"),
    "KAFKA_GROUP_ID": ("quotes-consumer", "the consumer group to watch (never joined)"),
    "POSTGRES_HOST": (None, "PostgreSQL host"),
    "POSTGRES_PORT": ("5432", "PostgreSQL port"),
    "POSTGRES_DB": (None, "database holding the quotes table"),
    "POSTGRES_USER": (None, "a login that may SELECT from quotes"),
    "POSTGRES_PASSWORD": (None, "its password"),
    "MONGO_URI": (None, "MongoDB URI of a user that may read the collection"),
    "MONGO_DB": ("quotes", "MongoDB database"),
    "MONGO_COLLECTION": ("quotes", "MongoDB collection"),
    "QUOTES_API_URL": ("", "base URL of the quotes API (its /healthz is probed); empty: none"),
    "NIFI_API_URL": ("", "NiFi REST API, e.g. https://nifi:8443/nifi-api; empty: none"),
    "NIFI_USERNAME": ("", "NiFi single-user login"),
    "NIFI_PASSWORD": ("", "its password"),
}


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    refresh_s: float
    probe_timeout_s: float
    kafka_bootstrap: str
    topic: str
    dlq_topic: str
    group_id: str
    pg_host: str
    pg_port: int
    pg_db: str
    pg_user: str
    pg_password: str
    mongo_uri: str
    mongo_db: str
    mongo_collection: str
    quotes_api_url: str
    nifi_api_url: str
    nifi_username: str
    nifi_password: str


def secret_values(settings: Settings) -> tuple[str, ...]:
    """Logins and passwords, to be masked in any text the page shows (the MongoDB URI's too)."""
    userinfo = urlsplit(settings.mongo_uri).netloc.rpartition("@")[0]
    mongo_user, _, mongo_password = userinfo.partition(":")
    values = (
        settings.pg_user,
        settings.pg_password,
        settings.nifi_username,
        settings.nifi_password,
        unquote(mongo_user),
        unquote(mongo_password),
    )
    return tuple(value for value in values if value)


def _number(name: str, raw: str, low: float, high: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={raw!r} must be between {low:g} and {high:g}")
    return value


def _port(name: str, raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SettingsError(f"{name}={raw!r} must be a port number from 1 to 65535")
    return int(raw)


def _url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not parts.netloc:
        raise SettingsError(f"{name}={raw!r} must be a {' or '.join(schemes)} URL")
    return raw.rstrip("/")


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting; SettingsError names the first bad one."""
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for name, (default, _help) in SETTINGS.items():
        raw = env.get(name, "").strip()
        if not raw:
            if default is None:
                raise SettingsError(f"{name} is not set: {SETTINGS[name][1]}")
            raw = default
        values[name] = raw
    refresh = _number("STATUS_REFRESH_S", values["STATUS_REFRESH_S"], 0.5, 60)
    timeout = _number("STATUS_PROBE_TIMEOUT_S", values["STATUS_PROBE_TIMEOUT_S"], 0.1, 30)
    nifi_url = _url("NIFI_API_URL", values["NIFI_API_URL"], ("https", "http"))
    if nifi_url and not (values["NIFI_USERNAME"] and values["NIFI_PASSWORD"]):
        raise SettingsError("NIFI_API_URL is set but NIFI_USERNAME or NIFI_PASSWORD is empty")
    if not values["MONGO_URI"].startswith(("mongodb://", "mongodb+srv://")):
        raise SettingsError("MONGO_URI must start with mongodb:// or mongodb+srv://")
    if values["KAFKA_TOPIC"] == values["KAFKA_DLQ_TOPIC"]:
        raise SettingsError("KAFKA_DLQ_TOPIC must differ from KAFKA_TOPIC")
    return Settings(
        host=values["STATUS_HOST"],
        port=_port("STATUS_PORT", values["STATUS_PORT"]),
        refresh_s=refresh,
        probe_timeout_s=timeout,
        kafka_bootstrap=values["KAFKA_BOOTSTRAP_SERVERS"],
        topic=values["KAFKA_TOPIC"],
        dlq_topic=values["KAFKA_DLQ_TOPIC"],
        group_id=values["KAFKA_GROUP_ID"],
        pg_host=values["POSTGRES_HOST"],
        pg_port=_port("POSTGRES_PORT", values["POSTGRES_PORT"]),
        pg_db=values["POSTGRES_DB"],
        pg_user=values["POSTGRES_USER"],
        pg_password=values["POSTGRES_PASSWORD"],
        mongo_uri=values["MONGO_URI"],
        mongo_db=values["MONGO_DB"],
        mongo_collection=values["MONGO_COLLECTION"],
        quotes_api_url=_url("QUOTES_API_URL", values["QUOTES_API_URL"], ("http", "https")),
        nifi_api_url=nifi_url,
        nifi_username=values["NIFI_USERNAME"],
        nifi_password=values["NIFI_PASSWORD"],
    )

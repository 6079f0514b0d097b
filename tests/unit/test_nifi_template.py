"""Static checks of nifi/quotes-flow.xml, the NiFi 1.28.1 template that nifi/deploy.py installs.

Why: the harness NiFi that runs the template end to end is 1.18.0 with a test double of
PublishKafka_2_6 (the registry here serves neither NiFi 1.28.1's runtime nor any Kafka NAR), so
the exact 1.28.1 coordinates and the real processors' property names and allowable values are
pinned here instead, from the Apache NiFi 1.28.1 sources.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[2] / "nifi" / "quotes-flow.xml"
NIFI_VERSION = "1.28.1"
GET_HTTP = "org.apache.nifi.processors.standard.GetHTTP"
SPLIT_JSON = "org.apache.nifi.processors.standard.SplitJson"
PUBLISH_KAFKA = "org.apache.nifi.processors.kafka.pubsub.PublishKafka_2_6"
LOG_ATTRIBUTE = "org.apache.nifi.processors.standard.LogAttribute"
BUNDLES = {
    GET_HTTP: ("org.apache.nifi", "nifi-standard-nar"),
    SPLIT_JSON: ("org.apache.nifi", "nifi-standard-nar"),
    LOG_ATTRIBUTE: ("org.apache.nifi", "nifi-standard-nar"),
    PUBLISH_KAFKA: ("org.apache.nifi", "nifi-kafka-2-6-nar"),
}
# Every property the real 1.28.1 processors define, with allowable values where restricted.
KNOWN_PROPERTIES: dict[str, dict[str, set[str] | None]] = {
    GET_HTTP: {
        "URL": None,
        "Filename": None,
        "SSL Context Service": None,
        "Username": None,
        "Password": None,
        "Connection Timeout": None,
        "Data Timeout": None,
        "User Agent": None,
        "Accept Content-Type": None,
        "Follow Redirects": {"true", "false"},
        "redirect-cookie-policy": None,
        "proxy-configuration-service": None,
        "Proxy Host": None,
        "Proxy Port": None,
    },
    SPLIT_JSON: {
        "JsonPath Expression": None,
        "Null Value Representation": {"empty string", "the string 'null'"},
        "Max String Length": None,
    },
    LOG_ATTRIBUTE: {
        "Log Level": {"trace", "debug", "info", "warn", "error"},
        "Log Payload": {"true", "false"},
        "Attributes to Log": None,
        "attributes-to-log-regex": None,
        "Attributes to Ignore": None,
        "attributes-to-ignore-regex": None,
        "Log FlowFile Properties": {"true", "false"},
        "Output Format": {"Line per Attribute", "Single Line"},
        "Log prefix": None,
        "character-set": None,
    },
    PUBLISH_KAFKA: {
        "bootstrap.servers": None,
        "security.protocol": {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"},
        "topic": None,
        "acks": {"0", "1", "all"},
        "use-transactions": {"true", "false"},
        "transactional-id-prefix": None,
        "Failure Strategy": {"Route to Failure", "Rollback"},
        "compression.type": {"none", "gzip", "snappy", "lz4"},
        "max.block.ms": None,
        "ack.wait.time": None,
        "max.request.size": None,
        "kafka-key": None,
        "key-attribute-encoding": {"utf-8", "hex"},
        "message-demarcator": None,
        "partitioner.class": None,
        "partition": None,
        "attribute-name-regex": None,
        "message-header-encoding": None,
    },
}
REQUIRED_VALUES = {
    GET_HTTP: {"URL": "${quotes.api.url}"},
    # a null array item becomes the 4-byte JSON text null, not a 0-byte record
    SPLIT_JSON: {"JsonPath Expression": "$.*", "Null Value Representation": "the string 'null'"},
    PUBLISH_KAFKA: {
        "bootstrap.servers": "${kafka.bootstrap.servers}",
        "topic": "${kafka.topic}",
        "acks": "all",
        "use-transactions": "false",
        "security.protocol": "PLAINTEXT",
        # the FlowFile's uuid travels as record header "uuid": the consumer's message id
        "attribute-name-regex": "uuid",
    },
}
# Relationships that carry data which has not (yet) reached Kafka: never auto-terminated.
MUST_BE_ROUTED = {
    GET_HTTP: {"success"},
    SPLIT_JSON: {"split", "failure"},
    PUBLISH_KAFKA: {"failure"},
    LOG_ATTRIBUTE: {"success"},
}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def root() -> ET.Element:
    return ET.parse(TEMPLATE).getroot()


@pytest.fixture(scope="module")
def group(root: ET.Element) -> ET.Element:
    groups = root.findall("snippet/processGroups")
    assert len(groups) == 1, "the template holds exactly one process group"
    return groups[0]


@pytest.fixture(scope="module")
def processors(group: ET.Element) -> dict[str, ET.Element]:
    """Processors by type (each type appears once)."""
    found = group.findall("contents/processors")
    types = [p.findtext("type") for p in found]
    assert len(types) == len(set(types)), f"duplicate processor types: {types}"
    return {str(p.findtext("type")): p for p in found}


def properties(processor: ET.Element) -> dict[str, str]:
    return {
        str(entry.findtext("key")): entry.findtext("value") or ""
        for entry in processor.findall("config/properties/entry")
    }


def test_template_header(root: ET.Element, group: ET.Element) -> None:
    assert root.tag == "template"
    assert root.get("encoding-version") == "1.3"
    assert root.findtext("name") == "Quotes to Kafka"
    assert group.findtext("name") == "Quotes to Kafka"


def test_processor_types_and_bundles(processors: dict[str, ET.Element]) -> None:
    assert set(processors) == set(BUNDLES)
    for type_, (group_id, artifact) in BUNDLES.items():
        bundle = processors[type_].find("bundle")
        assert bundle is not None
        coordinate = (bundle.findtext("group"), bundle.findtext("artifact"))
        assert coordinate == (group_id, artifact), type_
        assert bundle.findtext("version") == NIFI_VERSION, type_


def test_processor_names_are_descriptive(processors: dict[str, ET.Element]) -> None:
    names = [p.findtext("name") or "" for p in processors.values()]
    for name, type_ in zip(names, processors, strict=True):
        assert name and name != type_.rsplit(".", 1)[-1], f"{type_} keeps its default name"


def test_only_known_properties_with_allowed_values(processors: dict[str, ET.Element]) -> None:
    for type_, processor in processors.items():
        for key, value in properties(processor).items():
            assert key in KNOWN_PROPERTIES[type_], f"{type_} has no property {key!r}"
            allowed = KNOWN_PROPERTIES[type_][key]
            assert allowed is None or value in allowed, f"{type_}.{key}={value!r}"


def test_required_property_values(processors: dict[str, ET.Element]) -> None:
    for type_, expected in REQUIRED_VALUES.items():
        actual = properties(processors[type_])
        for key, value in expected.items():
            assert actual.get(key) == value, f"{type_}.{key}"


def test_variables_have_compose_defaults(group: ET.Element) -> None:
    variables = {e.findtext("key"): e.findtext("value") for e in group.findall("variables/entry")}
    assert variables["kafka.bootstrap.servers"] == "kafka:29092"
    assert variables["kafka.topic"] == "quotes"
    assert str(variables["quotes.api.url"]).startswith("http://quotes-api:")


def test_poll_schedule(processors: dict[str, ET.Element]) -> None:
    config = processors[GET_HTTP].find("config")
    assert config is not None
    assert config.findtext("schedulingStrategy") == "TIMER_DRIVEN"
    period = config.findtext("schedulingPeriod") or ""
    seconds = int(period.split()[0])
    assert period.endswith("sec") and 1 <= seconds <= 60


def test_connection_order(group: ET.Element, processors: dict[str, ET.Element]) -> None:
    """GetHTTP -success-> SplitJson -split-> PublishKafka; failures -> LogAttribute -> funnel."""
    ids = {str(p.findtext("id")): type_ for type_, p in processors.items()}
    funnels = {str(f.findtext("id")) for f in group.findall("contents/funnels")}
    assert len(funnels) == 1
    edges = set()
    for conn in group.findall("contents/connections"):
        source = ids.get(str(conn.findtext("source/id")), "funnel")
        dest = ids.get(str(conn.findtext("destination/id")))
        if dest is None:
            assert conn.findtext("destination/id") in funnels
            dest = "funnel"
        for rel in conn.findall("selectedRelationships"):
            edges.add((source, rel.text, dest))
        assert conn.findtext("name"), "every connection is named"
    assert edges == {
        (GET_HTTP, "success", SPLIT_JSON),
        (SPLIT_JSON, "split", PUBLISH_KAFKA),
        (SPLIT_JSON, "failure", LOG_ATTRIBUTE),
        (PUBLISH_KAFKA, "failure", LOG_ATTRIBUTE),
        (LOG_ATTRIBUTE, "success", "funnel"),
    }


def test_failures_not_auto_terminated(processors: dict[str, ET.Element]) -> None:
    for type_, processor in processors.items():
        terminated = {
            r.findtext("name")
            for r in processor.findall("relationships")
            if r.findtext("autoTerminate") == "true"
        }
        assert not terminated & MUST_BE_ROUTED[type_], f"{type_} drops {terminated}"
        assert "failure" not in terminated


def test_publish_failures_are_retried_before_logging(processors: dict[str, ET.Element]) -> None:
    config = processors[PUBLISH_KAFKA].find("config")
    assert config is not None
    assert [r.text for r in config.findall("retriedRelationships")] == ["failure"]
    assert 1 <= int(config.findtext("retryCount") or 0) <= 10


def test_queues_have_back_pressure(group: ET.Element) -> None:
    for conn in group.findall("contents/connections"):
        objects = int(conn.findtext("backPressureObjectThreshold") or 0)
        size = conn.findtext("backPressureDataSizeThreshold") or ""
        assert 0 < objects <= 100_000, conn.findtext("name")
        assert re.fullmatch(r"\d+ (KB|MB|GB)", size), conn.findtext("name")


def test_label_explains_flow_in_two_lines(group: ET.Element) -> None:
    labels = group.findall("contents/labels")
    assert len(labels) == 1
    text = labels[0].findtext("label") or ""
    assert len(text.strip().splitlines()) == 2
    for word in ("GetHTTP", "SplitJson", "PublishKafka_2_6", "Log failed FlowFiles", "funnel"):
        assert word in text


def test_ids_are_unique_uuids(root: ET.Element) -> None:
    ids = [e.text or "" for e in root.iter("id")]
    component_ids = [i for i in ids if i]
    assert all(UUID.match(i) for i in component_ids)
    declared = [e.findtext("id") for e in root.iter() if e.find("parentGroupId") is not None]
    assert len(declared) == len(set(declared))

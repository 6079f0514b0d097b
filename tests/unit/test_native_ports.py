"""The native lab's port choice: compose ports when free, its own otherwise, then kept."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from native.layout import BY_NAME, PORTS, UI_PORTS, LabError, choose_ports


def free_except(*taken: int) -> Callable[[int], bool]:
    return lambda port: port not in taken


def picker(start: int = 40000) -> Callable[[], int]:
    """Stands in for the OS's choice of a free port: 40000, 40001, ..."""
    numbers = itertools.count(start)
    return lambda: next(numbers)


def test_a_new_lab_takes_the_compose_ports_when_they_are_free() -> None:
    ports = choose_ports(None, {}, free_except(), picker())
    assert ports["kafka"] == 9092
    assert ports["postgres"] == 5432
    assert ports["mongo"] == 27017
    assert ports["quotes-api"] == 8090
    assert ports["nifi"] == 8443
    # Not published by compose: the lab's own.
    assert ports["zookeeper"] == BY_NAME["zookeeper"].own
    assert ports["metrics"] == BY_NAME["metrics"].own


def test_a_taken_compose_port_falls_back_to_the_own_port_then_to_any_free_one() -> None:
    kafka_own = BY_NAME["kafka"].own
    ports = choose_ports(None, {}, free_except(5432, 9092, kafka_own), picker(41000))
    assert ports["postgres"] == BY_NAME["postgres"].own
    assert ports["kafka"] == 41000


def test_own_ports_differ_from_the_harness_defaults() -> None:
    harness_defaults = {12181, 19092, 15432, 27217, 18443}
    assert not {port.own for port in PORTS} & harness_defaults
    assert len({port.own for port in PORTS}) == len(PORTS)


def test_saved_ports_are_kept_even_when_the_compose_port_is_free_again() -> None:
    saved = {port.name: 50000 + i for i, port in enumerate(PORTS)}
    assert choose_ports(saved, {}, free_except(), picker()) == saved


def test_an_override_picks_the_port_of_a_new_lab() -> None:
    ports = choose_ports(None, {"STREAMLAB_LAB_KAFKA_PORT": "39092"}, free_except(), picker())
    assert ports["kafka"] == 39092


def test_an_override_that_contradicts_the_saved_lab_is_refused() -> None:
    saved = {port.name: 50000 + i for i, port in enumerate(PORTS)}
    with pytest.raises(LabError, match=r"STREAMLAB_LAB_POSTGRES_PORT=5432 .*make demo-reset"):
        choose_ports(saved, {"STREAMLAB_LAB_POSTGRES_PORT": "5432"}, free_except(), picker())


@pytest.mark.parametrize("raw", ["abc", "0", "70000", "-1"])
def test_a_bad_override_names_the_variable(raw: str) -> None:
    with pytest.raises(LabError, match=rf"STREAMLAB_LAB_MONGO_PORT='{raw}' is not a port number"):
        choose_ports(None, {"STREAMLAB_LAB_MONGO_PORT": raw}, free_except(), picker())


def test_two_services_on_one_port_are_refused() -> None:
    environ = {"STREAMLAB_LAB_KAFKA_PORT": "5432"}
    with pytest.raises(LabError, match="given to several services"):
        choose_ports(None, environ, free_except(), picker())


def test_the_web_uis_take_the_compose_ports_when_free_else_their_own() -> None:
    free = choose_ports(None, {}, free_except(), picker())
    assert (free["pgadmin"], free["mongo-express"]) == (5050, 8081)
    taken = choose_ports(None, {}, free_except(5050, 8081), picker())
    assert taken["pgadmin"] == BY_NAME["pgadmin"].own
    assert taken["mongo-express"] == BY_NAME["mongo-express"].own


def test_a_lab_saved_before_the_web_uis_keeps_its_ports_and_gains_theirs() -> None:
    saved = {port.name: 50000 + i for i, port in enumerate(PORTS) if port.name not in UI_PORTS}
    ports = choose_ports(saved, {}, free_except(), picker())
    assert {name: ports[name] for name in saved} == saved
    assert (ports["pgadmin"], ports["mongo-express"]) == (5050, 8081)

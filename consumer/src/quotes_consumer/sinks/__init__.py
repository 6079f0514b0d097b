"""Where valid quotes go. Each sink writes a whole batch idempotently or raises.

Sinks know nothing of Kafka: they receive :class:`~quotes_consumer.record.Quote` values, whose
source coordinates are plain data that make every write idempotent. The loop decides when to
retry and when to commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from quotes_consumer.record import Quote


class SinkError(RuntimeError):
    """A batch was not (fully) written; writing it again is safe."""


class Sink(Protocol):
    name: str

    def write(self, batch: Sequence[Quote]) -> None:
        """Write every quote of the batch, or raise SinkError; a second write changes nothing."""

    def close(self) -> None: ...

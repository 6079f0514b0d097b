"""Which errors of the Kafka client are an outage to wait out, and which are bugs.

The rule comes from reading kafka-python 3.0.12 (pinned), not from the errors seen so far:
while a broker or the group coordinator is away, restarting, hung or moving, the client raises
subclasses of :class:`kafka.errors.KafkaError` (connection refused or reset, request timed out,
no brokers available, coordinator not available or not this broker, stale metadata, node not
ready), and a few socket errors can escape from the network layer as :class:`OSError`. All of
those are the server's state, not the consumer's: the loop backs off and polls again, and the
client reconnects by itself, while health counts the time without progress.

What is left are mistakes of ours or of the settings, which no waiting fixes: a call in the
wrong state, a bad configuration, an unsupported protocol version. Those, and any exception
that is not the client's at all, stop the process (exit 1), so that they are seen and fixed.
The full table, with the reason for each class, is in docs/reliability.md.
"""

from __future__ import annotations

from kafka.errors import (
    IllegalArgumentError,
    IllegalStateError,
    IncompatibleBrokerVersion,
    KafkaConfigurationError,
    KafkaError,
    UnrecognizedBrokerVersion,
    UnsupportedVersionError,
)

# The client's errors that say the code or the settings are wrong, whatever the servers do.
BUGS: tuple[type[KafkaError], ...] = (
    IllegalStateError,  # a call in the wrong state: our code's order of calls
    IllegalArgumentError,  # an argument the client refuses: our code
    KafkaConfigurationError,  # a client setting it refuses: the settings
    UnsupportedVersionError,  # a request the broker cannot serve: a version mismatch
    UnrecognizedBrokerVersion,
    IncompatibleBrokerVersion,
)
# What can escape the client's network layer unwrapped while a broker is away.
NETWORK: tuple[type[Exception], ...] = (OSError, TimeoutError)


def is_outage(error: BaseException) -> bool:
    """True when ``error`` says Kafka is away or busy, and waiting will end it."""
    if isinstance(error, BUGS):
        return False
    return isinstance(error, (KafkaError, *NETWORK))

"""Which errors of the Kafka client are an outage to wait out, and which are bugs.

The rule comes from reading kafka-python 3.0.12 (pinned), not from the errors seen so far. The
client runs its network in a thread of its own and wraps every socket error there, so what
reaches the loop while a broker or the group coordinator is away, restarting, hung or moving is
always a :class:`~kafka.errors.RetriableError`: connection refused or reset
(``KafkaConnectionError``, which ``poll()`` and ``commit()`` let escape from a metadata refresh
after a failed coordinator lookup), a request or commit timed out, a node not ready, a
coordinator not available, loading or moved, stale metadata or a leader not yet elected
while a broker restarts, not enough replicas. Those are waited out: the loop backs off and
polls again, and the client reconnects by itself, while health counts the time without
progress.

Authorization failures are the setup's state, as a missing PostgreSQL grant is: waited out, so
an operator can fix the ACL without a restart loop.

Everything else stops the process (exit 1) so that it is seen and fixed: configuration and
version errors, which no waiting fixes; the base ``KafkaError`` the client wraps around an
exception of our own rebalance listener; and an ``OSError`` or other exception that escapes
only when the client's network thread itself has died, after which it never recovers.
The table, with the reason for each class, is in docs/reliability.md.
"""

from __future__ import annotations

from kafka.errors import AuthorizationError, BrokerNotAvailableError, RetriableError

# Retriable by the client's own account: the broker or the coordinator is away or busy; plus a
# broker missing from the cluster for now, which the client does not mark retriable.
OUTAGES: tuple[type[Exception], ...] = (
    RetriableError,
    BrokerNotAvailableError,
    AuthorizationError,
)


def is_outage(error: BaseException) -> bool:
    """True when ``error`` says Kafka is away, busy or not yet allowing us, and waiting will
    end it; False for a bug or a bad setting."""
    return isinstance(error, OUTAGES)

"""The chaos soak: a steady stream through two consumer replicas while servers and replicas fail.

Why a soak beside the integration tests: each of those breaks one thing on a quiet topic and
checks one promise. A soak breaks things in turn under steady load for minutes, then, as a
Jepsen checker does, reads the final state of every store and accounts for every record Kafka
acknowledged: each valid one in PostgreSQL and MongoDB exactly once, each invalid one in the
dead-letter topic, nothing else; no replica dies that the soak did not kill; memory stays flat.

Run ``python -m tests.soak --minutes 4`` against the native harness's servers (it stops and
starts them, so give it servers of its own: see ``--help``).
"""

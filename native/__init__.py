"""The lab without Docker: ``make demo`` runs the compose file's pipeline as host processes.

Why a package of its own: the compose stack needs a Docker engine, which many laptops, CI
runners and this project's own machines lack. Every box of the pipeline already runs natively
(Kafka + ZooKeeper, PostgreSQL, FerretDB and NiFi from ``native.servers``; the quotes API;
the Python stand-in producer; the consumer), so this package wires them into one lab a person can
watch and query. It is product code, not test code: it keeps its data between runs, in a
directory of its own, on ports of its own, and never touches the test servers.

Modules, one concern each:

- ``layout``: where the lab lives (data directory, ports, pid files), chosen once and kept;
- ``processes``: start and stop child processes by pid file, so ``down`` works from any shell;
- ``servers``: the servers themselves, one module per server, the cache they are built in and
  their command line (``python -m native.servers``); the demo, the bench and the tests use it;
- ``lab_servers``: this lab's servers and NiFi, started and stopped through that command line
  with the lab's ports and directory;
- ``lab_uis``: pgAdmin and mongo-express for this lab: their logins, settings and installs;
- ``provision``: the topics (as kafka-init does) and the schema in ``sql/``;
- ``observe``: the live status line, ``counts``, ``topic`` and ``dlq``;
- ``lab``: the order of it all, the table of addresses, and Ctrl-C.

Usage: ``python -m native {up,down,reset,status,counts,psql,mongo,stop,start,topic,dlq}``
(``make demo`` etc.).
"""

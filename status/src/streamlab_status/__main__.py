"""``python -m streamlab_status`` (or ``streamlab-status``): serve the page until SIGTERM/Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading

from streamlab_status import settings as settings_module
from streamlab_status.poller import Poller
from streamlab_status.probes import all_probes
from streamlab_status.server import StatusServer


def main() -> int:
    try:
        settings = settings_module.load()
    except settings_module.SettingsError as error:
        print(f"streamlab-status: {error}", file=sys.stderr)
        return 2
    poller = Poller(
        all_probes(settings),
        settings.refresh_s,
        settings.probe_timeout_s,
        secrets=settings_module.secret_values(settings),
    ).start()
    try:
        server = StatusServer(settings.host, settings.port, poller).start()
    except OSError as error:
        poller.stop()
        print(
            f"streamlab-status: cannot listen on {settings.host}:{settings.port} ({error}); "
            "set STATUS_PORT to a free port",
            file=sys.stderr,
        )
        return 1
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    print(f"streamlab-status: http://{settings.host}:{server.port}/", flush=True)
    stopping.wait()
    server.stop()
    poller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

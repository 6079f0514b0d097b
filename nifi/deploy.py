"""Deploy the "Quotes to Kafka" flow into a running NiFi 1.x, idempotently.

Why a script and not a baked flow.xml.gz: the NiFi image stays stock, the flow stays a
reviewable template (``nifi/quotes-flow.xml``), and the endpoints come from the environment, so
the same file serves the compose stack and the native test NiFi.

Steps: wait for the REST API; log in (single-user credentials -> bearer token); replace the
uploaded template of the same name; reuse the one "Quotes to Kafka" process group in the root
group if it was made from this very template (a SHA-256 of the file is kept in the group's
comments), otherwise replace it, and delete extra copies; set its variables from the
environment; start it and check that every processor runs. Running it twice leaves one copy,
running; running it after the template changed leaves one copy of the new template, running.

Starting is done with care because NiFi's "start process group" starts only the processors
whose validation has finished as VALID: right after instantiation they are still VALIDATING, and
would silently stay stopped. So the script waits until none is VALIDATING, then asks NiFi to
start the group, and asks again while any processor is still stopped.

Environment (all optional except the password):
    NIFI_API_URL             https://nifi:8443/nifi-api
    NIFI_USERNAME            admin
    NIFI_PASSWORD            (required)
    NIFI_CA_CERT             PEM file to verify NiFi's certificate; unset = self-signed accepted
    NIFI_WAIT_TIMEOUT        seconds to wait for NiFi to answer (default 300)
    QUOTES_API_URL           GET endpoint returning a JSON array of quotes
    KAFKA_BOOTSTRAP_SERVERS  kafka:29092
    KAFKA_TOPIC              quotes

Exit codes: 0 deployed and running, 1 any error (one line on stderr saying which), 2 bad usage.
Standard library only, so it runs in a bare ``python:3.12-slim``.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parent / "quotes-flow.xml"
FLOW_NAME = "Quotes to Kafka"
COPY_NAME = re.compile(rf"(Copy of )*{re.escape(FLOW_NAME)}")
# process group variable -> environment variable that sets it
VARIABLES = {
    "quotes.api.url": "QUOTES_API_URL",
    "kafka.bootstrap.servers": "KAFKA_BOOTSTRAP_SERVERS",
    "kafka.topic": "KAFKA_TOPIC",
}
# The line deploy.py appends to the group's comments; its hash names the template file's bytes.
HASH_LINE = re.compile(r"^deploy\.py template sha256: ([0-9a-f]{64})$", re.M)
REQUEST_TIMEOUT_S = 30.0
POLL_S = 1.0


class DeployError(RuntimeError):
    """A failure the operator can act on; printed as one line."""


@dataclass(frozen=True)
class Config:
    """Everything deploy needs, read once from the environment and the command line."""

    api_url: str
    username: str
    password: str
    ca_cert: str | None
    wait_timeout_s: float
    variables: dict[str, str]
    template: Path
    start_timeout_s: float = 120.0


class NiFi:
    """A minimal NiFi REST client: JSON in and out, bearer token, bounded timeouts."""

    def __init__(self, cfg: Config) -> None:
        self.base = cfg.api_url.rstrip("/")
        self.token: str | None = None
        if cfg.ca_cert:
            self.tls = ssl.create_default_context(cafile=cfg.ca_cert)
        else:
            # NiFi's out-of-the-box certificate is self-signed and names its own host.
            self.tls = ssl.create_default_context()
            self.tls.check_hostname = False
            self.tls.verify_mode = ssl.CERT_NONE
        self.client_id = str(uuid.uuid4())

    def raw(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        accept: str = "application/json",
    ) -> tuple[int, bytes]:
        """Send one request; return (status, body) for HTTP errors instead of raising."""
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, context=self.tls, timeout=REQUEST_TIMEOUT_S) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def call(self, method: str, path: str, payload: Any = None) -> Any:
        """JSON request that must succeed; a NiFi error message becomes a DeployError."""
        body = None if payload is None else json.dumps(payload).encode()
        status, data = self.raw(method, path, body, "application/json" if body else None)
        if status >= 400:
            message = data.decode(errors="replace").strip().splitlines()
            raise DeployError(
                f"NiFi answered {status} to {method} {path}: {message[0] if message else ''}"
            )
        return json.loads(data) if data.strip() else None

    # --- connection and login --------------------------------------------------------------

    def wait_until_up(self, timeout_s: float) -> None:
        """Poll the unauthenticated /access/config until NiFi answers, within the deadline."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                status, _ = self.raw("GET", "/access/config")
                if status == 200:
                    return
                last = f"HTTP {status}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(getattr(exc, "reason", exc))
            time.sleep(min(3.0, max(0.0, deadline - time.monotonic())))
        raise DeployError(f"NiFi not up at {self.base} after {timeout_s:.0f}s (last: {last})")

    def login(self, username: str, password: str) -> None:
        """Exchange single-user credentials for a bearer token."""
        form = urllib.parse.urlencode({"username": username, "password": password}).encode()
        status, data = self.raw(
            "POST",
            "/access/token",
            form,
            "application/x-www-form-urlencoded",
            accept="text/plain",
        )
        if status in (400, 401, 403):
            raise DeployError(f"NiFi rejected the credentials of user '{username}' (HTTP {status})")
        if status >= 300:
            raise DeployError(f"NiFi login failed with HTTP {status}: {data[:200]!r}")
        self.token = data.decode().strip()

    # --- templates ---------------------------------------------------------------------------

    def upload_template(self, root_id: str, path: Path) -> str:
        """Replace any template of the same name with this file; return the new template id."""
        xml = path.read_bytes()
        try:
            name = ET.fromstring(xml).findtext("name")
        except ET.ParseError as exc:
            raise DeployError(f"template rejected: {path} is not valid XML ({exc})") from exc
        for entity in self.call("GET", "/flow/templates")["templates"]:
            if entity.get("template", {}).get("name") == name:
                self.call("DELETE", f"/templates/{entity['id']}")
        boundary = uuid.uuid4().hex
        body = (
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="template"; filename="{path.name}"\r\n'
                "Content-Type: application/xml\r\n\r\n"
            ).encode()
            + xml
            + f"\r\n--{boundary}--\r\n".encode()
        )
        status, data = self.raw(
            "POST",
            f"/process-groups/{root_id}/templates/upload",
            body,
            f"multipart/form-data; boundary={boundary}",
            accept="application/xml",
        )
        text = data.decode(errors="replace")
        if status >= 300:
            raise DeployError(f"template rejected by NiFi (HTTP {status}): {one_line(text)[:300]}")
        error = upload_error(text)
        if error is not None:
            raise DeployError(f"template rejected by NiFi: {error}")
        try:
            template_id = ET.fromstring(text).findtext("template/id")
        except ET.ParseError as exc:
            raise DeployError(
                f"template rejected: unexpected upload answer {one_line(text)[:200]!r}"
            ) from exc
        if not template_id:
            raise DeployError(f"template rejected: no template id in {one_line(text)[:200]!r}")
        return template_id

    # --- process groups ----------------------------------------------------------------------

    def root_id(self) -> str:
        return str(self.call("GET", "/flow/process-groups/root")["processGroupFlow"]["id"])

    def flow_copies(self, parent_id: str) -> list[dict[str, Any]]:
        """The flow's groups in the parent, the exactly-named one first.

        NiFi names a second instance of a template "Copy of <name>", so those count as copies.
        """
        groups = self.call("GET", f"/process-groups/{parent_id}/process-groups")["processGroups"]
        copies = [g for g in groups if COPY_NAME.fullmatch(g["component"]["name"])]
        return sorted(copies, key=lambda g: g["component"]["name"] != FLOW_NAME)

    def instantiate(self, root_id: str, template_id: str) -> str:
        flow = self.call(
            "POST",
            f"/process-groups/{root_id}/template-instance",
            {"templateId": template_id, "originX": 0.0, "originY": 0.0},
        )
        groups = flow["flow"]["processGroups"]
        if len(groups) != 1:
            raise DeployError(f"template rejected: it did not create one '{FLOW_NAME}' group")
        return str(groups[0]["id"])

    def mark_template(self, group_id: str, digest: str) -> None:
        """Record which template file the group was made from, in its comments."""
        current = self.call("GET", f"/process-groups/{group_id}")
        comments = HASH_LINE.sub("", current["component"].get("comments") or "").rstrip()
        marked = f"{comments}\ndeploy.py template sha256: {digest}".lstrip()
        self.call(
            "PUT",
            f"/process-groups/{group_id}",
            {
                "revision": {**current["revision"], "clientId": self.client_id},
                "component": {"id": group_id, "comments": marked},
            },
        )

    def set_state(self, group_id: str, state: str) -> None:
        """Schedule (RUNNING) or unschedule (STOPPED) every component of a group."""
        self.call("PUT", f"/flow/process-groups/{group_id}", {"id": group_id, "state": state})

    def processors(self, group_id: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/process-groups/{group_id}/processors")["processors"])

    def wait_stopped(self, group_id: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            procs = self.processors(group_id)
            if all(p["status"]["aggregateSnapshot"]["activeThreadCount"] == 0 for p in procs):
                return
            time.sleep(POLL_S)
        raise DeployError(f"processors of group {group_id} still busy after {timeout_s:.0f}s")

    def empty_queues(self, group_id: str, timeout_s: float) -> None:
        """Drop the FlowFiles queued in a group's connections (needed before deleting it)."""
        status = self.call("GET", f"/flow/process-groups/{group_id}/status")
        queued = status["processGroupStatus"]["aggregateSnapshot"].get("flowFilesQueued", 0)
        if queued:
            log(f"dropping {queued} FlowFile(s) queued in process group {group_id}")
        connections = self.call("GET", f"/process-groups/{group_id}/connections")["connections"]
        for conn in connections:
            request = self.call("POST", f"/flowfile-queues/{conn['id']}/drop-requests")
            path = f"/flowfile-queues/{conn['id']}/drop-requests/{request['dropRequest']['id']}"
            deadline = time.monotonic() + timeout_s
            while not self.call("GET", path)["dropRequest"]["finished"]:
                if time.monotonic() > deadline:
                    raise DeployError(f"emptying connection {conn['id']} took over {timeout_s}s")
                time.sleep(POLL_S)
            self.call("DELETE", path)

    def delete_group(self, group: dict[str, Any], timeout_s: float) -> None:
        """Stop, empty and delete one process group."""
        group_id = group["id"]
        self.set_state(group_id, "STOPPED")
        self.wait_stopped(group_id, timeout_s)
        self.empty_queues(group_id, timeout_s)
        current = self.call("GET", f"/process-groups/{group_id}")
        query = urllib.parse.urlencode(
            {"version": current["revision"]["version"], "clientId": self.client_id}
        )
        self.call("DELETE", f"/process-groups/{group_id}?{query}")

    def set_variables(self, group_id: str, values: dict[str, str], timeout_s: float) -> None:
        """Update the group's variables via NiFi's asynchronous variable-registry request.

        NiFi stops and restarts the processors that use a changed variable by itself.
        """
        current = self.call("GET", f"/process-groups/{group_id}/variable-registry")
        existing = {
            v["variable"]["name"]: v["variable"].get("value")
            for v in current["variableRegistry"]["variables"]
        }
        changed = {k: v for k, v in values.items() if existing.get(k) != v}
        if not changed:
            return
        request = self.call(
            "POST",
            f"/process-groups/{group_id}/variable-registry/update-requests",
            {
                "processGroupRevision": current["processGroupRevision"],
                "variableRegistry": {
                    "processGroupId": group_id,
                    "variables": [
                        {"variable": {"name": k, "value": v}} for k, v in changed.items()
                    ],
                },
            },
        )["request"]
        path = (
            f"/process-groups/{group_id}/variable-registry/update-requests/{request['requestId']}"
        )
        deadline = time.monotonic() + timeout_s
        while not request["complete"]:
            if time.monotonic() > deadline:
                raise DeployError(f"setting variables took over {timeout_s:.0f}s")
            time.sleep(POLL_S)
            request = self.call("GET", path)["request"]
        self.call("DELETE", path)
        if request.get("failureReason"):
            raise DeployError(f"NiFi refused the variables: {request['failureReason']}")

    def start(self, group_id: str, timeout_s: float) -> int:
        """Bring every processor of the group to RUNNING; return how many start requests it took.

        NiFi's group start skips processors that are not (yet) VALID, without saying so: wait
        while any is VALIDATING, then request the start, and request it again while any
        processor is still STOPPED. An INVALID processor is reported with its reason.
        """
        deadline = time.monotonic() + timeout_s
        requests = 0
        waited_for_validation = False
        while True:
            procs = [p["component"] for p in self.processors(group_id)]
            invalid = [p for p in procs if validation_status(p) == "INVALID"]
            if invalid:
                first = invalid[0]
                reason = (first.get("validationErrors") or ["(no reason given)"])[0]
                raise DeployError(f"processor '{first['name']}' is invalid: {one_line(reason)}")
            if procs and all(p["state"] == "RUNNING" for p in procs):
                return requests
            validating = [p["name"] for p in procs if validation_status(p) == "VALIDATING"]
            if validating:
                if not waited_for_validation:
                    log(f"waiting for NiFi to validate: {', '.join(validating)}")
                    waited_for_validation = True
            elif any(p["state"] == "STOPPED" for p in procs):
                self.set_state(group_id, "RUNNING")
                requests += 1
            if time.monotonic() > deadline:
                states = ", ".join(f"{p['name']}={p['state']}" for p in procs)
                raise DeployError(f"processors not running after {timeout_s:.0f}s: {states}")
            time.sleep(POLL_S)


def deploy(cfg: Config) -> str:
    """Make exactly one running copy of the flow exist; return its process group id."""
    nifi = NiFi(cfg)
    nifi.wait_until_up(cfg.wait_timeout_s)
    nifi.login(cfg.username, cfg.password)
    root = nifi.root_id()
    digest = hashlib.sha256(cfg.template.read_bytes()).hexdigest()
    template_id = nifi.upload_template(root, cfg.template)
    groups = nifi.flow_copies(root)
    current = [g for g in groups if template_digest(g) == digest][:1]
    if current:
        group_id = str(current[0]["id"])
        log(f"reusing process group {group_id}")
    else:
        # The new group is made before any old one goes, so a template NiFi refuses to
        # instantiate leaves the running flow as it was.
        group_id = nifi.instantiate(root, template_id)
        nifi.mark_template(group_id, digest)
        log(f"instantiated template into process group {group_id}")
    for other in groups:
        if other in current:
            continue
        if current:
            log(f"removing extra copy {other['id']}")
        else:
            old = (template_digest(other) or "none")[:12]
            log(f"replacing process group {other['id']}: template changed ({old} -> {digest[:12]})")
        nifi.delete_group(other, cfg.start_timeout_s)
    nifi.set_variables(group_id, cfg.variables, cfg.start_timeout_s)
    requests = nifi.start(group_id, cfg.start_timeout_s)
    log(
        f"'{FLOW_NAME}' running ({requests} start request(s)): "
        + ", ".join(f"{k}={v}" for k, v in cfg.variables.items())
    )
    return group_id


def template_digest(group: dict[str, Any]) -> str | None:
    """The template hash deploy.py recorded in a group's comments, if any."""
    found = HASH_LINE.search(group["component"].get("comments") or "")
    return found.group(1) if found else None


def validation_status(processor: dict[str, Any]) -> str:
    """VALID, INVALID or VALIDATING; older answers without the field count by their errors."""
    status = processor.get("validationStatus")
    if status:
        return str(status)
    return "INVALID" if processor.get("validationErrors") else "VALID"


def upload_error(text: str) -> str | None:
    """The reason NiFi gives for a rejected template upload, or None if it was accepted.

    NiFi answers a rejected upload with HTTP 200 and ``<errorResponse status=".."
    statusText=".."/>``, the text HTML-escaped (which may not even be valid XML).
    """
    if not text.lstrip().startswith("<errorResponse"):
        return None
    found = re.search(r'statusText="([^"]*)"', text)
    status = re.search(r'status="([^"]*)"', text)
    reason = html.unescape(found.group(1)) if found else ""
    return one_line(reason) or f"error status {status.group(1) if status else 'unknown'}"


def one_line(text: str) -> str:
    """Collapse whitespace so an error stays on one line."""
    return " ".join(text.split())


def log(message: str) -> None:
    print(f"[deploy] {message}", flush=True)


def read_config(argv: list[str] | None) -> Config:
    """Command line overrides environment; only the password has no default."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--api-url", default=os.environ.get("NIFI_API_URL", "https://nifi:8443/nifi-api")
    )
    parser.add_argument("--username", default=os.environ.get("NIFI_USERNAME", "admin"))
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument(
        "--wait-timeout", type=float, default=float(os.environ.get("NIFI_WAIT_TIMEOUT", "300"))
    )
    args = parser.parse_args(argv)
    password = os.environ.get("NIFI_PASSWORD", "")
    if not password:
        parser.error("NIFI_PASSWORD is not set")
    variables = {
        "quotes.api.url": os.environ.get(
            "QUOTES_API_URL", "http://quotes-api:8080/quotes?count=10"
        ),
        "kafka.bootstrap.servers": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "kafka:29092"),
        "kafka.topic": os.environ.get("KAFKA_TOPIC", "quotes"),
    }
    return Config(
        api_url=args.api_url,
        username=args.username,
        password=password,
        ca_cert=os.environ.get("NIFI_CA_CERT") or None,
        wait_timeout_s=args.wait_timeout,
        variables=variables,
        template=args.template,
    )


def main(argv: list[str] | None = None) -> int:
    cfg = read_config(argv)
    try:
        deploy(cfg)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"error: cannot talk to NiFi at {cfg.api_url}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

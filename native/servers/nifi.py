"""A headless Apache NiFi for the tests, laid out from Maven Central and run on the local Java.

Why this exists: the machines that build and test this project have no Docker engine, and the
NiFi binary zip (``nifi-assembly``) is not served by the package registry reachable here. NiFi
is, however, nothing more than a class path (``lib/*.jar``), a set of NiFi archives
(``lib/*.nar``) and a ``conf/`` folder, so this module rebuilds that layout from the artifacts
that *are* published, with ``mvn dependency:copy-dependencies`` on ``native/servers/nifi/pom.xml``:

- ``lib/``: nifi-api, nifi-runtime, nifi-nar-utils, nifi-properties, logback, slf4j, ...;
- ``lib/*.nar``: framework, Jetty, web server (REST API), provenance, standard processors;
- ``conf/``: from ``org.apache.nifi:nifi-resources`` (the assembly's own, already filtered),
  with the few values this harness needs (127.0.0.1, the port, keystores, heap) rewritten.

Version: the brief asks for NiFi 1.28.1, but the registry serves only part of that release
(no nifi-runtime, nifi-bootstrap, nifi-framework-nar, nifi-server-nar or nifi-standard-nar at
1.28.1), so the newest release whose runtime pieces are all served, 1.18.0, runs here. The
template in ``nifi/quotes-flow.xml`` names 1.28.1 bundles; NiFi maps a template's bundle to the
one installed version of the same component, so it instantiates unchanged. See NIFI_VERSION.

Layout (cached, shared by every clone): ``$STREAMLAB_CACHE/nifi-<version>-<stamp>/``, the stamp
being a hash of the poms, the stand-ins and this file (default cache
``~/.cache/streamlab``). Instance (conf, repositories, logs, credentials; thrown away by
``reset``): ``$STREAMLAB_RUN/nifi`` (default ``/tmp/streamlab-<uid>/nifi``).

NiFi is started directly (``org.apache.nifi.NiFi``) rather than through ``bin/nifi.sh`` and its
bootstrap process, so the pid written here is the JVM itself and ``stop`` ends exactly it.

Usage: ``python -m native.servers.nifi {install,start,stop,status,env,reset}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

from native.servers.cache import cache_dir
from native.servers.process import HarnessError, java, run_dir

REPO = Path(__file__).resolve().parents[2]
POM = Path(__file__).resolve().parent / "nifi" / "pom.xml"
BOOTSTRAP_POM = POM.parent / "bootstrap-pom.xml"
# Apache's pieces the registry does not serve, stood in for (stand-ins/README.md); the NAR keeps
# the name it was first built under.
STAND_INS_POM = POM.parent / "stand-ins" / "pom.xml"
STAND_INS_NAR = "streamlab-nifi-test-doubles-nar"

# Newest NiFi release whose runtime artifacts are all served by the registry here; 1.19 to 1.28
# lack at least nifi-runtime or nifi-framework-nar. Must match <nifi.version> in the pom.
NIFI_VERSION = "1.18.0"
HOST = "127.0.0.1"
DEFAULT_PORT = 18443
DEFAULT_HEAP = "1g"
DEFAULT_USERNAME = "streamlab"
# NiFi's single-user tooling ignores passwords shorter than 12 characters (and then starts with
# generated credentials); the harness refuses them instead.
MIN_PASSWORD_LENGTH = 12
# Must match ITERATIONS in stand-ins/.../SingleUserLoginProvider.java.
PBKDF2_ITERATIONS = 120_000


class NifiHarnessError(HarnessError):
    """NiFi could not be installed, started or reached; the message says where to look."""


def log(message: str) -> None:
    """Progress lines go to stderr so ``env`` output on stdout stays machine-readable."""
    print(f"[nifi] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Settings:
    """Where and how this NiFi runs; every field can be overridden from the environment."""

    port: int
    heap: str
    layout: Path
    home: Path

    @property
    def api_url(self) -> str:
        return f"https://{HOST}:{self.port}/nifi-api"

    @property
    def pidfile(self) -> Path:
        return self.home / "nifi.pid"

    @property
    def logfile(self) -> Path:
        return self.home / "logs" / "nifi-app.log"

    @property
    def stdout_log(self) -> Path:
        return self.home / "logs" / "nifi-stdout.log"

    @property
    def credentials_file(self) -> Path:
        return self.home / "credentials.json"


def settings() -> Settings:
    """Read the overridable settings: port, heap, and the two directories."""
    return Settings(
        port=int(os.environ.get("STREAMLAB_NIFI_PORT", str(DEFAULT_PORT))),
        heap=os.environ.get("STREAMLAB_NIFI_HEAP", DEFAULT_HEAP),
        # Keyed by what it was built from, so branches with different stand-ins never
        # replace a layout that another checkout's running NiFi links to.
        layout=cache_dir() / f"nifi-{NIFI_VERSION}-{_layout_stamp()[:12]}",
        home=Path(os.environ.get("STREAMLAB_NIFI_HOME", run_dir() / "nifi")),
    )


def keytool() -> str:
    """keytool sits next to java; it makes the self-signed HTTPS keystore."""
    candidate = Path(java()).resolve().parent / "keytool"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("keytool")
    if found is None:
        raise NifiHarnessError("keytool not found: install a full JDK 17, not only a JRE")
    return found


def run(cmd: list[str], timeout_s: float, cwd: Path | None = None) -> str:
    """Run a setup command with a deadline; on failure raise with its output, not a traceback."""
    try:
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, cwd=cwd, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise NifiHarnessError(
            f"command timed out after {timeout_s:.0f}s: {' '.join(cmd)}"
        ) from exc
    if result.returncode != 0:
        raise NifiHarnessError(
            f"command failed ({result.returncode}): {' '.join(cmd)}\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return result.stdout


# --- install: lay NiFi out from Maven Central ---------------------------------------------------


def _layout_stamp() -> str:
    """What the cached layout was made from; a changed pom makes ``install`` redo it."""
    digest = hashlib.sha256()
    digest.update(NIFI_VERSION.encode())
    sources = [Path(__file__), POM, BOOTSTRAP_POM, *sorted(STAND_INS_POM.parent.rglob("*"))]
    for path in sources:
        if path.is_file() and "target" not in path.parts:
            digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def install() -> Path:
    """Lay out NiFi's lib/ and conf templates in the cache, once per machine.

    Maven's own local repository keeps the downloads, so a layout lost from the cache is rebuilt
    without the network; a layout whose stamp matches the pom is reused as is.
    """
    cfg = settings()
    stamp = cfg.layout / ".complete"
    if stamp.exists() and stamp.read_text() == _layout_stamp():
        return cfg.layout
    if shutil.which("mvn") is None:
        raise NifiHarnessError("mvn not found: install Maven (apt-get install maven)")
    log(f"laying out NiFi {NIFI_VERSION} from Maven Central into {cfg.layout} (first run only)")
    cfg.layout.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".nifi-{NIFI_VERSION}-", dir=cfg.layout.parent))
    try:
        goals = [
            "dependency:copy-dependencies@lib",
            "dependency:copy-dependencies@java11",
            "dependency:copy-dependencies@nars",
            "dependency:unpack-dependencies@resources",
        ]
        extra = [f"-Dlayout.dir={staging}"]
        if os.environ.get("STREAMLAB_MAVEN_REPO"):
            extra.append(f"-Dmaven.repo.local={os.environ['STREAMLAB_MAVEN_REPO']}")
        run(["mvn", "-B", "-q", "-f", str(POM), *goals, *extra], timeout_s=900)
        run(
            [
                "mvn",
                "-B",
                "-q",
                "-f",
                str(BOOTSTRAP_POM),
                "dependency:copy-dependencies@bootstrap",
                *extra,
            ],
            timeout_s=600,
        )
        _build_stand_ins(staging, extra)
        missing = [
            name
            for name in (
                "nifi-runtime",
                "nifi-framework-nar",
                "nifi-server-nar",
                "nifi-standard-nar",
                STAND_INS_NAR,
            )
            if not list((staging / "lib").glob(f"{name}-*"))
        ]
        if missing or not (staging / "resources" / "conf" / "nifi.properties").exists():
            raise NifiHarnessError(f"incomplete NiFi layout in {staging}: missing {missing}")
        (staging / ".complete").write_text(_layout_stamp())
        shutil.rmtree(cfg.layout, ignore_errors=True)
        staging.rename(cfg.layout)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(POM.parent / "target", ignore_errors=True)  # nothing lands in the repo
    return cfg.layout


def _build_stand_ins(staging: Path, extra: list[str]) -> None:
    """Compile native/servers/nifi/stand-ins and pack it as a NAR into the layout's lib/.

    A NAR is a zip of META-INF/MANIFEST.MF (its coordinates) and
    META-INF/bundled-dependencies/*.jar; see stand-ins/README.md for why they exist.
    """
    build = staging / "build-stand-ins"
    run(
        ["mvn", "-B", "-q", "-f", str(STAND_INS_POM), "package", f"-Dbuild.dir={build}", *extra],
        timeout_s=600,
    )
    jars = [*sorted((build / "bundled-dependencies").glob("*.jar")), *build.glob("*.jar")]
    manifest = (
        "Manifest-Version: 1.0\r\n"
        "Nar-Group: streamlab.test\r\n"
        f"Nar-Id: {STAND_INS_NAR}\r\n"
        "Nar-Version: 1.0.0\r\n"
        "Created-By: native/servers/nifi.py\r\n\r\n"
    )
    with zipfile.ZipFile(staging / "lib" / f"{STAND_INS_NAR}-1.0.0.nar", "w") as nar:
        # NiFi's unpacker creates folders only from explicit directory entries.
        nar.writestr("META-INF/", "")
        nar.writestr("META-INF/MANIFEST.MF", manifest)
        nar.writestr("META-INF/bundled-dependencies/", "")
        for jar in jars:
            nar.write(jar, f"META-INF/bundled-dependencies/{jar.name}")
    shutil.rmtree(build)


# --- the instance: conf, keystores, credentials -------------------------------------------------


def _edit_properties(path: Path, values: dict[str, str]) -> None:
    """Set keys in a Java properties file in place, keeping its comments and order."""
    pending = dict(values)
    lines = []
    for line in path.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if not line.lstrip().startswith("#") and "=" in line and key in pending:
            lines.append(f"{key}={pending.pop(key)}")
        else:
            lines.append(line)
    lines.extend(f"{key}={value}" for key, value in pending.items())
    path.write_text("\n".join(lines) + "\n")


def _read_properties(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def credentials() -> tuple[str, str]:
    """The single-user login of the instance (made by ``prepare_instance``)."""
    cfg = settings()
    if not cfg.credentials_file.exists():
        raise NifiHarnessError(f"no NiFi instance yet ({cfg.credentials_file} missing): run start")
    data = json.loads(cfg.credentials_file.read_text())
    return data["username"], data["password"]


def _make_keystores(conf: Path, password: str) -> None:
    """A self-signed key for 127.0.0.1/localhost, and a truststore holding its certificate.

    Made here with keytool rather than left to NiFi so that the harness, not a NiFi version
    detail, decides the names and passwords.
    """
    keystore = conf / "keystore.p12"
    truststore = conf / "truststore.p12"
    cert = conf / "nifi-cert.pem"
    for path in (keystore, truststore, cert):
        path.unlink(missing_ok=True)
    tool = keytool()
    common = ["-storetype", "PKCS12", "-storepass", password, "-noprompt"]
    run(
        [
            tool,
            "-genkeypair",
            "-alias",
            "nifi-key",
            "-keyalg",
            "RSA",
            "-keysize",
            "2048",
            "-validity",
            "825",
            "-dname",
            "CN=localhost, OU=streamlab",
            "-ext",
            "SAN=dns:localhost,dns:nifi,ip:127.0.0.1",
            "-keystore",
            str(keystore),
            "-keypass",
            password,
            *common,
        ],
        timeout_s=120,
    )
    run(
        [
            tool,
            "-exportcert",
            "-rfc",
            "-alias",
            "nifi-key",
            "-keystore",
            str(keystore),
            "-file",
            str(cert),
            *common,
        ],
        timeout_s=60,
    )
    run(
        [
            tool,
            "-importcert",
            "-alias",
            "nifi-cert",
            "-file",
            str(cert),
            "-keystore",
            str(truststore),
            *common,
        ],
        timeout_s=60,
    )


def _write_login(conf: Path, username: str, password: str) -> None:
    """Configure the single-user login and authorizer (stand-ins, see stand-ins/).

    The password is stored only as a salted PBKDF2-SHA256 hash, like NiFi's own bcrypt hash.
    """
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ITERATIONS, 32)
    user = xml_escape(username)
    (conf / "login-identity-providers.xml").write_text(
        "<loginIdentityProviders>\n  <provider>\n"
        "    <identifier>single-user-provider</identifier>\n"
        "    <class>streamlab.nifi.testing.SingleUserLoginProvider</class>\n"
        f'    <property name="Username">{user}</property>\n'
        f'    <property name="Password Salt">{salt.hex()}</property>\n'
        f'    <property name="Password Hash">{digest.hex()}</property>\n'
        "  </provider>\n</loginIdentityProviders>\n"
    )
    (conf / "authorizers.xml").write_text(
        "<authorizers>\n  <authorizer>\n"
        "    <identifier>single-user-authorizer</identifier>\n"
        "    <class>streamlab.nifi.testing.SingleUserAuthorizer</class>\n"
        f'    <property name="Username">{user}</property>\n'
        "  </authorizer>\n</authorizers>\n"
    )


def prepare_instance() -> Settings:
    """Create the instance folder from the cached layout, or refresh the settings of one.

    A new instance gets a random sensitive-properties key, keystore password and (unless
    NIFI_USERNAME/NIFI_PASSWORD are set) a random single-user password, all kept only in the
    instance folder: nothing secret is in the repository.
    """
    cfg = settings()
    layout = install()
    conf = cfg.home / "conf"
    fresh = not (conf / "nifi.properties").exists()
    if fresh:
        shutil.rmtree(cfg.home, ignore_errors=True)
        (cfg.home / "logs").mkdir(parents=True)
        # NiFi reads lib/bootstrap relative to its working directory, so the instance links to
        # the cached layout instead of copying 300 MB.
        (cfg.home / "lib").symlink_to(layout / "lib", target_is_directory=True)
        shutil.copytree(layout / "resources" / "conf", conf)
        username = os.environ.get("NIFI_USERNAME", DEFAULT_USERNAME)
        password = os.environ.get("NIFI_PASSWORD") or secrets.token_urlsafe(18)
        if len(password) < MIN_PASSWORD_LENGTH:
            raise NifiHarnessError(
                f"NIFI_PASSWORD must have at least {MIN_PASSWORD_LENGTH} characters (NiFi rule)"
            )
        store_password = secrets.token_hex(16)
        _make_keystores(conf, store_password)
        _edit_properties(
            conf / "nifi.properties",
            {
                "nifi.sensitive.props.key": secrets.token_hex(16),
                "nifi.security.keystorePasswd": store_password,
                "nifi.security.keyPasswd": store_password,
                "nifi.security.truststorePasswd": store_password,
            },
        )
        _write_login(conf, username, password)
        cfg.credentials_file.write_text(json.dumps({"username": username, "password": password}))
        cfg.credentials_file.chmod(0o600)
    lib = cfg.home / "lib"
    if lib.is_symlink() and lib.resolve() != (layout / "lib").resolve():
        # the stand-ins or poms changed since this instance was made: use the new layout
        lib.unlink()
        lib.symlink_to(layout / "lib", target_is_directory=True)
    _edit_properties(
        conf / "nifi.properties",
        {
            "nifi.web.https.host": HOST,
            "nifi.web.https.port": str(cfg.port),
            "nifi.web.http.host": "",
            "nifi.web.http.port": "",
            "nifi.web.proxy.host": f"{HOST}:{cfg.port},localhost:{cfg.port}",
            "nifi.nar.library.directory": "./lib",
            "nifi.nar.library.autoload.directory": str(cfg.home / "extensions"),
            "nifi.remote.input.host": HOST,
            "nifi.remote.input.socket.port": "",
            "nifi.cluster.is.node": "false",
            "nifi.state.management.embedded.zookeeper.start": "false",
            # A test instance: keep disk use small and start-up quick.
            "nifi.content.repository.archive.enabled": "false",
            "nifi.flow.configuration.archive.enabled": "false",
            "nifi.provenance.repository.max.storage.time": "1 hour",
            "nifi.provenance.repository.max.storage.size": "256 MB",
        },
    )
    return cfg


# --- start / stop / status ----------------------------------------------------------------------


def _pid(cfg: Settings) -> int | None:
    """The pid of our NiFi JVM if it is alive (checked by pid file and command line)."""
    if not cfg.pidfile.exists():
        return None
    pid = int(cfg.pidfile.read_text().strip() or 0)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"org.apache.nifi.NiFi" in cmdline else None


def insecure_context() -> ssl.SSLContext:
    """TLS context for the instance's self-signed certificate (loopback only)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _api_answers(cfg: Settings) -> bool:
    """True once the REST API serves requests (``/access/config`` needs no login)."""
    try:
        with urllib.request.urlopen(
            f"{cfg.api_url}/access/config", context=insecure_context(), timeout=5
        ) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start(timeout_s: float = 420.0) -> Settings:
    """Start NiFi (if not already running) and wait until its REST API answers.

    The JVM options are those of the assembly's bootstrap.conf that matter headless, plus a
    bounded heap. Raises with the tail of the log if NiFi dies or misses the deadline.
    """
    cfg = prepare_instance()
    if _pid(cfg) is not None:
        log(f"NiFi already running (pid {_pid(cfg)})")
    else:
        if _port_taken(cfg.port):
            raise NifiHarnessError(f"port {HOST}:{cfg.port} is taken by another process")
        lib = cfg.home / "lib"
        cmd = [
            java(),
            f"-Xms{cfg.heap}",
            f"-Xmx{cfg.heap}",
            "-Djava.awt.headless=true",
            "-Djava.net.preferIPv4Stack=true",
            "-Dorg.apache.jasper.compiler.disablejsr199=true",
            "-Dsun.net.http.allowRestrictedHeaders=true",
            "-Djava.protocol.handler.pkgs=sun.net.www.protocol",
            "-Djava.security.egd=file:/dev/urandom",
            "-Djavax.security.auth.useSubjectCredsOnly=true",
            "-Dzookeeper.admin.enableServer=false",
            "-Dcurator-log-only-first-connection-issue-as-error-level=true",
            f"-Dnifi.properties.file.path={cfg.home / 'conf' / 'nifi.properties'}",
            f"-Dapp.home={cfg.home}",
            f"-Dorg.apache.nifi.bootstrap.config.log.dir={cfg.home / 'logs'}",
            "-cp",
            f"{cfg.home / 'conf'}:{lib}/*:{lib / 'java11'}/*",
            "org.apache.nifi.NiFi",
        ]
        cfg.stdout_log.parent.mkdir(parents=True, exist_ok=True)
        with cfg.stdout_log.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=cfg.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        cfg.pidfile.write_text(str(proc.pid))
        log(f"NiFi {NIFI_VERSION} starting (pid {proc.pid}, heap {cfg.heap}), log {cfg.logfile}")
    began = time.monotonic()
    deadline = began + timeout_s
    while time.monotonic() < deadline:
        if _api_answers(cfg):
            log(f"NiFi REST API up at {cfg.api_url} after {time.monotonic() - began:.0f}s")
            return cfg
        if _pid(cfg) is None:
            raise NifiHarnessError(
                f"NiFi exited during start-up; last lines of {cfg.logfile}:\n{_tail(cfg.logfile)}"
                f"\n--- {cfg.stdout_log}:\n{_tail(cfg.stdout_log, 10)}"
            )
        time.sleep(2)
    raise NifiHarnessError(
        f"NiFi REST API not up after {timeout_s:.0f}s; last lines of {cfg.logfile}:\n"
        f"{_tail(cfg.logfile)}"
    )


def stop(timeout_s: float = 60.0) -> None:
    """Stop our NiFi JVM: SIGTERM (NiFi shuts down gracefully), SIGKILL after the timeout."""
    cfg = settings()
    pid = _pid(cfg)
    if pid is None:
        cfg.pidfile.unlink(missing_ok=True)
        log("NiFi is not running")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _pid(cfg) is not None:
        time.sleep(0.5)
    if _pid(cfg) is not None:
        log(f"NiFi pid {pid} ignored SIGTERM for {timeout_s:.0f}s; killing it")
        os.kill(pid, signal.SIGKILL)
    cfg.pidfile.unlink(missing_ok=True)
    log("NiFi stopped")


def reset() -> None:
    """Stop NiFi and delete its instance (flow, repositories, credentials); keep the layout."""
    stop()
    shutil.rmtree(settings().home, ignore_errors=True)
    log("NiFi instance removed")


def environment() -> dict[str, str]:
    """What ``nifi/deploy.py`` and the tests need to reach this instance."""
    cfg = settings()
    username, password = credentials()
    return {"NIFI_API_URL": cfg.api_url, "NIFI_USERNAME": username, "NIFI_PASSWORD": password}


def status() -> int:
    """Print whether NiFi runs and answers; exit code 0 only if both."""
    cfg = settings()
    pid = _pid(cfg)
    answers = pid is not None and _api_answers(cfg)
    installed = (cfg.layout / ".complete").exists()
    print(f"layout:  {cfg.layout} ({'installed' if installed else 'not installed'})")
    print(f"home:    {cfg.home}")
    print(f"process: {'pid ' + str(pid) if pid else 'not running'}")
    print(f"api:     {cfg.api_url} ({'answering' if answers else 'not answering'})")
    return 0 if answers else 1


def token(cfg: Settings, username: str, password: str) -> str:
    """A bearer token for the REST API (used by the tests; deploy.py has its own)."""
    body = urllib.parse.urlencode({"username": username, "password": password}).encode()
    req = urllib.request.Request(
        f"{cfg.api_url}/access/token",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(req, context=insecure_context(), timeout=30) as resp:
        return str(resp.read().decode())


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; errors are one message and exit code 1, not a traceback."""
    parser = argparse.ArgumentParser(prog="python -m native.servers.nifi", description=__doc__)
    parser.add_argument(
        "command", choices=["install", "start", "stop", "status", "env", "reset", "token"]
    )
    parser.add_argument("--timeout", type=float, default=420.0, help="start-up deadline, seconds")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            began = time.monotonic()
            path = install()
            log(f"layout ready in {path} ({time.monotonic() - began:.1f}s)")
        elif args.command == "start":
            start(args.timeout)
        elif args.command == "stop":
            stop()
        elif args.command == "status":
            return status()
        elif args.command == "env":
            for key, value in environment().items():
                print(f"export {key}={value}")
        elif args.command == "token":
            print(token(settings(), *credentials()))
        elif args.command == "reset":
            reset()
    except NifiHarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

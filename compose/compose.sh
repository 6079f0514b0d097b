#!/bin/sh
# Docker Compose for the lab, whichever way this machine has it. Every Makefile target that
# calls Compose goes through here:
#
#   compose/compose.sh ARGS...   run Compose with ARGS (make up: compose/compose.sh up -d --build)
#   compose/compose.sh --which   print the Compose command it would run, and nothing else
#
# It takes `docker compose` (the v2 plugin), else a standalone `docker-compose` of version 2 or
# later; DOCKER_COMPOSE="..." names the command yourself (split on spaces; still checked). Then it
# checks the version and that the Docker daemon answers. When something is missing it prints one
# line (what, the fix on Debian/Ubuntu, Fedora and macOS, and `make demo`) and exits 1. POSIX sh,
# no timeout(1): both must work on macOS as shipped. Nothing here starts or changes anything.

# The oldest Compose whose merge of the variant files (their `!override` and `!reset` tags)
# equals that of the version the tests pin: 2.24.3 rejects docker-compose.kraft.yml, and 2.24.0
# reads it but keeps ZooKeeper settings in the KRaft broker. `python -m tests.compose_minimum`
# builds releases with the real Compose parser and compares. The README states this number.
MIN_VERSION=2.24.4
# A daemon that is down answers at once; one that hangs (a stale DOCKER_HOST, a VM still
# booting) gets this long (the tests shorten it).
DAEMON_TIMEOUT_S=${STREAMLAB_DAEMON_TIMEOUT_S:-10}

MAC_DESKTOP='macOS: Docker Desktop, https://docs.docker.com/desktop/setup/install/mac-install/'
INSTALL="on Debian/Ubuntu: sudo apt-get install docker-compose-plugin; Fedora: sudo dnf install \
docker-compose-plugin (both from Docker's repository, https://docs.docker.com/compose/install/linux/); \
$MAC_DESKTOP"

# fail WHAT FIX: the one line, on stderr, and stop.
fail() {
  printf '%s. %s. Or run the lab without Docker now: make demo\n' "$1" "$2" >&2
  exit 1
}

# version_of CMD...: the version CMD reports, digits and dots only (v2.24.6-desktop.1 -> 2.24.6);
# empty when CMD is missing or is not Compose (`docker compose` without the plugin: exit 125).
version_of() {
  "$@" version --short 2> /dev/null | sed -n '1s/^[^0-9]*\([0-9][0-9.]*\).*/\1/p'
}

# at_least A B: version A >= version B, comparing major, minor and patch as numbers.
at_least() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    split(a, x, "."); split(b, y, ".")
    for (i = 1; i <= 3; i++) if (x[i] + 0 != y[i] + 0) exit !(x[i] + 0 > y[i] + 0)
    exit 0
  }'
}

# within SECONDS CMD...: run CMD; stop it after SECONDS and return 124, as timeout(1) does.
within() {
  seconds=$1
  shift
  "$@" &
  pid=$!
  (sleep "$seconds" && kill "$pid") > /dev/null 2>&1 &
  watchdog=$!
  wait "$pid"
  status=$?
  if kill "$watchdog" 2> /dev/null; then return "$status"; fi
  [ "$status" -gt 128 ] && return 124
  return "$status"
}

# Find: the first candidate of version MIN_VERSION or later wins; remember why the others lost.
found='' version='' old='' v1=''
consider() {
  v=$(version_of "$@")
  if [ -z "$v" ]; then return 1; fi
  if at_least "$v" "$MIN_VERSION"; then
    found=$* version=$v
    return 0
  fi
  case $v in
    1.*) v1="$* $v" ;;
    *) old=${old:-"$* $v"} ;;
  esac
  return 1
}

if [ -n "${DOCKER_COMPOSE:-}" ]; then
  # shellcheck disable=SC2086  # the command may be several words: DOCKER_COMPOSE="podman compose"
  consider $DOCKER_COMPOSE ||
    [ -n "$old$v1" ] ||
    fail "DOCKER_COMPOSE=\"$DOCKER_COMPOSE\" does not answer \"version --short\" as Docker Compose does" \
      "Unset it to let make find Compose"
else
  consider docker compose || consider docker-compose || true
fi

if [ -z "$found" ]; then
  if [ -n "$old" ]; then
    fail "Docker Compose ${old##* } (${old% *}) is older than $MIN_VERSION, the oldest that reads the lab's variant files right" \
      "Update it $INSTALL"
  elif [ -n "$v1" ]; then
    fail "${v1% *} ${v1##* } is Compose v1, which cannot read the lab's compose files, and there is no Compose v2 (docker compose)" \
      "Install Compose v2 $INSTALL"
  elif command -v docker > /dev/null 2>&1; then
    fail "Docker Compose v2 is missing: \"docker compose\" is not a docker command here, and there is no docker-compose" \
      "Install it $INSTALL"
  else
    fail "Docker is missing: there is no docker or docker-compose command" \
      "Install Docker Engine and Compose on Debian/Ubuntu, Fedora: https://docs.docker.com/engine/install/ (with the docker-compose-plugin package); $MAC_DESKTOP"
  fi
fi

# The daemon: `compose ls` asks it for the running projects.
# shellcheck disable=SC2086
answer=$(within "$DAEMON_TIMEOUT_S" $found ls --quiet 2>&1)
case $? in
  0) ;;
  124)
    fail "Docker Compose $version ($found) is here, but the Docker daemon did not answer within $DAEMON_TIMEOUT_S s" \
      "Check it on Debian/Ubuntu, Fedora: sudo systemctl status docker; macOS: open -a Docker; or check DOCKER_HOST"
    ;;
  *)
    said=$(printf '%s\n' "$answer" | sed -n '/./{p;q;}')
    case $said in
      *"permission denied"*)
        fail "Docker Compose $version ($found) is here, but the Docker daemon refuses you: \"$said\"" \
          "Join the docker group on Debian/Ubuntu, Fedora: sudo usermod -aG docker \$USER, then log in again"
        ;;
      *)
        fail "Docker Compose $version ($found) is here, but the Docker daemon does not answer: \"$said\"" \
          "Start it on Debian/Ubuntu, Fedora: sudo systemctl start docker; macOS: open -a Docker"
        ;;
    esac
    ;;
esac

if [ "${1:-}" = --which ]; then
  printf '%s\n' "$found"
  exit 0
fi
# shellcheck disable=SC2086
exec $found "$@"

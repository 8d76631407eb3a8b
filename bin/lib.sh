# shellcheck shell=bash disable=SC2034  # globals here are read by the scripts that source it
# Shared functions for bin/dev and bin/test. Source it, don't run it:
#
#   ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
#   . "$ROOT/bin/lib.sh"
#
# Everything here works under `set -euo pipefail`, with no terminal, and as
# root (PostgreSQL refuses to run as root, so its commands then run as the
# `postgres` system user). Written for bash >= 4 on Linux; macOS bash 3.2 is
# good enough for the happy path.

: "${ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
VAR_DIR="$ROOT/var"
RUN_DIR="$VAR_DIR/run"    # FIFOs and pid files of bin/dev

# ---------------------------------------------------------------------------
# Messages, small helpers
# ---------------------------------------------------------------------------

say()  { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

have()    { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" = 0 ]; }
is_debian() { [ -f /etc/debian_version ] && have apt-get; }
is_macos()  { [ "$(uname -s)" = Darwin ]; }

# reexec_with_default_sigint "$@": a script started with `&` by another
# non-interactive shell inherits SIGINT as ignored, and bash cannot trap a
# signal that was ignored at entry, so `kill -INT` would do nothing. Call this
# first thing: it re-executes the script once with SIGINT back to default.
reexec_with_default_sigint() {
  if [ -n "${QUIRE_SIGINT_RESET:-}" ]; then unset QUIRE_SIGINT_RESET; return 0; fi
  [ "$(trap -p INT)" = "trap -- '' SIGINT" ] || return 0
  export QUIRE_SIGINT_RESET=1
  local self="$ROOT/bin/${0##*/}"   # absolute: the script may have cd'ed
  if env --default-signal=INT true 2>/dev/null; then
    exec env --default-signal=INT "$BASH" "$self" "$@"
  elif have perl; then
    exec perl -e '$SIG{INT} = "DEFAULT"; exec @ARGV or die "exec: $!"' "$BASH" "$self" "$@"
  fi
  unset QUIRE_SIGINT_RESET   # no way to reset it: carry on (SIGTERM still works)
}

# Milliseconds since the epoch (bash 5 has EPOCHREALTIME; otherwise whole seconds).
now_ms() {
  if [ -n "${EPOCHREALTIME:-}" ]; then
    local t=${EPOCHREALTIME/,/.}
    echo $(( ${t%.*} * 1000 + 10#$(printf '%.3s' "${t#*.}") ))
  else
    echo $(( $(date +%s) * 1000 ))
  fi
}

# Phase timing: `phase "building"` ... `phase_done`. Prints e.g. "    (3.2s)".
PHASE_T0=
phase() { say "$*"; PHASE_T0=$(now_ms); }
phase_done() {
  [ -n "$PHASE_T0" ] || return 0
  local ms=$(( $(now_ms) - PHASE_T0 ))
  printf '    done in %d.%ds\n' $(( ms / 1000 )) $(( ms % 1000 / 100 ))
  PHASE_T0=
}

# load_dotenv FILE: export KEY=VALUE lines from FILE unless KEY is already set
# in the environment (the real environment always wins). Values are taken
# literally (no $expansion, no command substitution); matching surrounding
# quotes are stripped; `export ` prefixes, blank lines and # comments are ok.
load_dotenv() {
  local file=$1 line key val
  [ -f "$file" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%$'\r'}
    line=${line#"${line%%[![:space:]]*}"}          # trim leading space
    case $line in ''|'#'*) continue ;; esac
    line=${line#export }
    case $line in *=*) ;; *) continue ;; esac
    key=${line%%=*}; key=${key%"${key##*[![:space:]]}"}
    val=${line#*=};  val=${val#"${val%%[![:space:]]*}"}
    [[ $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { warn "$file: ignoring line for '$key'"; continue; }
    case $val in
      \"*\") val=${val#\"}; val=${val%\"} ;;
      \'*\') val=${val#\'}; val=${val%\'} ;;
      *) val=${val%%[[:space:]]#*} ;;           # unquoted: drop a trailing " # comment"
    esac
    if [ -z "${!key+x}" ]; then export "$key=$val"; fi
  done <"$file"
}

# ---------------------------------------------------------------------------
# Installing what we need (Debian: apt-get; macOS: print the brew command)
# ---------------------------------------------------------------------------

APT_UPDATED=
# apt_install PKG...: install Debian packages, with sudo when not root.
apt_install() {
  is_debian || die "cannot install $* automatically on this system; please install: $*"
  local sudo=()
  if ! is_root; then
    have sudo || die "need root or sudo to install: $*"
    sudo=(sudo)
  fi
  say "installing $* (apt-get)"
  if [ -z "$APT_UPDATED" ]; then
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
    APT_UPDATED=1
  fi
  ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" </dev/null
}

# ensure_command CMD DEBIAN_PKG [BREW_PKG]: make CMD available or fail clearly.
ensure_command() {
  local cmd=$1 deb=$2 brew=${3:-$2}
  have "$cmd" && return 0
  if is_debian; then apt_install "$deb"; have "$cmd" && return 0; fi
  is_macos && die "$cmd is missing: brew install $brew"
  die "$cmd is missing; please install it ($deb)"
}

# ensure_python_module MODULE DEBIAN_PKG: /usr/bin/python3 can import MODULE.
ensure_python_module() {
  local mod=$1 deb=$2
  [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import $mod" 2>/dev/null && return 0
  # Not fatal (no network, no sudo): only the tests that need it will fail.
  if is_debian && apt_install "$deb"; then
    /usr/bin/python3 -c "import $mod" 2>/dev/null && return 0
  fi
  warn "python module $mod is missing (Debian package $deb); tests that need it may fail"
}

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

# pid_alive PID: the process exists and is not a zombie (containers whose
# init does not reap leave zombies around, and kill -0 succeeds on those).
pid_alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local state
  if [ -r "/proc/$1/stat" ]; then
    state=$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null || true)
  else
    state=$(ps -o stat= -p "$1" 2>/dev/null || true)
  fi
  [[ $state != Z* ]]
}

# pid_cmdline PID: print the command line of PID ("" when gone).
pid_cmdline() {
  local c
  if [ -r "/proc/$1/cmdline" ]; then c=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true)
  else c=$(ps -p "$1" -o command= 2>/dev/null || true)
  fi
  echo "${c% }"
}

# write_owner FILE: record this script (pid and command line) in FILE.
write_owner() { printf '%s\n%s\n' "$$" "$(pid_cmdline "$$")" >"$1"; }

# owner_alive FILE: the script recorded in FILE by write_owner is still
# running and is not us. Pid and command line must both match, so a recycled
# pid does not count.
owner_alive() {
  local pid cmd
  [ -f "$1" ] || return 1
  { IFS= read -r pid; IFS= read -r cmd; } <"$1" || true
  [ -n "$pid" ] && [ "$pid" != "$$" ] && pid_alive "$pid" && [ "$(pid_cmdline "$pid")" = "$cmd" ]
}

# We start children in their own session (setsid) when possible, so that one
# `kill -- -PID` reaches everything they spawned (rustc under cargo, test
# binaries under nextest) and a terminal's Ctrl-C reaches only this script,
# which then shuts things down in the right order.
if have setsid; then SETSID=(setsid); else SETSID=(); fi

# start_bg CMD...: start CMD in the background, stdin from /dev/null; its pid
# (= its process group when setsid exists) goes to $LAST_PID. Redirect the
# call's stdout/stderr to route the child's output.
LAST_PID=
start_bg() {
  ${SETSID[@]+"${SETSID[@]}"} "$@" </dev/null &
  LAST_PID=$!
}

# signal_tree SIG PID: send SIG to PID's process group, or to PID alone.
signal_tree() {
  kill -s "$1" -- "-$2" 2>/dev/null || kill -s "$1" "$2" 2>/dev/null || true
}

# stop_pids TIMEOUT_S PID...: TERM each process (tree), wait up to TIMEOUT_S
# seconds for all to exit, then KILL what is left.
stop_pids() {
  local timeout=$1 pid left i; shift
  [ $# -gt 0 ] || return 0
  for pid in "$@"; do signal_tree TERM "$pid"; done
  for (( i = 0; i < timeout * 10; i++ )); do
    left=0
    for pid in "$@"; do pid_alive "$pid" && left=1; done
    [ "$left" = 1 ] || break
    sleep 0.1
  done
  for pid in "$@"; do
    if pid_alive "$pid"; then
      warn "process $pid did not stop within ${timeout}s; killing it"
      signal_tree KILL "$pid"
    fi
  done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

# run_job CMD...: run CMD like a foreground command, but in the background +
# `wait`, so a SIGTERM/SIGINT trap in the caller runs at once instead of after
# a long cargo build. The trap should `stop_pids 10 $JOB_PID`. Returns CMD's status.
JOB_PID=
run_job() {
  local rc=0
  start_bg "$@"
  JOB_PID=$LAST_PID
  wait "$JOB_PID" || rc=$?
  JOB_PID=
  return "$rc"
}

# start_prefixer LABEL FILE: in the background, copy FILE (a FIFO) to stdout
# with LABEL before each line, flushing every line so that the output of
# several processes interleaves line by line, also into a file. It ignores
# INT/TERM/HUP and reads the FIFO, not our stdin: it keeps draining until every
# writer has closed the pipe, so a stopping process never gets SIGPIPE and its
# last lines are not lost. Its pid goes to $LAST_PID.
# mawk (Debian's default awk) reads pipes in big blocks unless told
# `-W interactive`; GNU sed -u and other awks handle lines as they come.
PREFIXER=
if sed --version 2>/dev/null | grep -q GNU; then PREFIXER="sed"
elif awk -W version 2>&1 | grep -q mawk; then PREFIXER="mawk"
else PREFIXER="awk"
fi
start_prefixer() {
  local esc=${1//\\/\\\\}   # escape \ & / for the sed replacement
  esc=${esc//&/\\&}; esc=${esc//\//\\/}
  (
    trap '' INT TERM HUP
    case $PREFIXER in
      sed)  exec sed -u "s/^/$esc/" <"$2" ;;
      mawk) exec awk -W interactive -v p="$1" '{ print p $0 }' <"$2" ;;
      *)    exec awk -v p="$1" '{ print p $0; fflush() }' <"$2" ;;
    esac
  ) &
  LAST_PID=$!
}

# port_in_use PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() {
  if have timeout; then
    # shellcheck disable=SC2016  # $1 is expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

# wait_for_http URL PID [HINT_AFTER_S]: poll URL until it answers 2xx. Fails
# when PID dies first. Prints a hint if it takes longer than HINT_AFTER_S.
wait_for_http() {
  local url=$1 pid=$2 hint=${3:-30} t0
  t0=$(now_ms)
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    pid_alive "$pid" || return 1
    if [ -n "$hint" ] && [ $(( $(now_ms) - t0 )) -gt $(( hint * 1000 )) ]; then
      say "still waiting for $url ..."
      hint=
    fi
    sleep 0.3
  done
}

# ---------------------------------------------------------------------------
# PostgreSQL: private clusters under var/pg/<name>
#
# Layout for cluster NAME (e.g. dev, test; a later `start_replica` adds a
# streaming replica as another cluster, e.g. dev-replica, with the same
# functions plus a pg_basebackup instead of initdb):
#   var/pg/NAME        data directory (owned by the user running postgres)
#   var/pg/NAME.port   TCP port, chosen once (never 5432), bound to 127.0.0.1
#   var/pg/NAME.sock/  unix socket directory
#   var/pg/NAME.log    server log
#   var/pg/NAME.owner  pid and command line of the script that started it
#                      (tells a live run from a stale one left by a crash)
# If the socket path would exceed the unix limit (107 bytes), or when root and
# the `postgres` user cannot reach var/, these live under /tmp/quire-<hash>/
# instead (hash of the repo path, so each checkout gets its own).
#
# Settings are written to NAME/quire.conf (included from postgresql.conf) on
# every start, so edits to pg_write_conf apply to existing clusters.
# ---------------------------------------------------------------------------

# newest_debian_pg_bindir: /usr/lib/postgresql/<newest>/bin, or nothing.
newest_debian_pg_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -d "$d" ] && echo "$d"; done | sort -V | tail -n 1
}

PG_BINDIR=
PG_STARTED=()          # clusters this script started; pg_stop_started stops them
PG_PORT=               # port of the last cluster ensured
# Above Linux's range for outgoing connections (32768-60999), so a client socket
# can never hold the port a cluster wants.
PG_FIRST_PORT=61432

# pg_find_bindir: set PG_BINDIR to a directory holding initdb, pg_ctl, postgres
# and psql; install PostgreSQL on Debian if there is none.
pg_find_bindir() {
  [ -n "$PG_BINDIR" ] && return 0
  local d
  for d in \
    "$(pg_config --bindir 2>/dev/null || true)" \
    "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")" \
    "$(newest_debian_pg_bindir)" \
    /usr/local/pgsql/bin; do
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then PG_BINDIR=$d; return 0; fi
  done
  if is_debian; then
    apt_install postgresql
    d=$(newest_debian_pg_bindir)
    [ -x "$d/initdb" ] || die "PostgreSQL was installed but initdb is not in /usr/lib/postgresql/*/bin"
    PG_BINDIR=$d
    return 0
  fi
  if is_macos; then
    printf 'PostgreSQL server binaries not found. Install them with:\n  brew install postgresql@16\n' >&2
    exit 1
  fi
  die "PostgreSQL server binaries (initdb, pg_ctl) not found; please install PostgreSQL"
}

# pg_as_owner CMD...: run CMD as the server's user (from /, so a cwd the
# postgres user cannot read does not matter). PG_AS is the argv prefix that
# does the switch ("" when not root).
PG_AS=()
# shellcheck disable=SC2016  # '$0 $@' is expanded by su's shell
if is_root; then
  if have runuser; then PG_AS=(runuser -u postgres --)
  else PG_AS=(su -s /bin/sh postgres -c 'exec "$0" "$@"')
  fi
fi
pg_as_owner() { (cd / && ${PG_AS[@]+"${PG_AS[@]}"} "$@"); }

# pg_ensure_owner_user: when root, make sure the `postgres` system user exists.
pg_ensure_owner_user() {
  is_root || return 0
  id postgres >/dev/null 2>&1 && return 0
  say "creating system user postgres"
  useradd --system --user-group --no-create-home --home-dir /var/lib/postgresql \
    --shell /bin/sh postgres
}

# pg_tmp_base: short per-checkout directory under /tmp (see layout above).
pg_tmp_base() {
  echo "/tmp/quire-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
}

# pg_owner_can_use DIR: the server's user can traverse DIR.
pg_owner_can_use() {
  is_root || return 0
  pg_as_owner test -x "$1" 2>/dev/null
}

# pg_base: directory holding NAME, NAME.sock, NAME.log (var/pg normally).
# Decided once by pg_ensure_cluster (it may run `runuser`, so not every call).
PG_BASE=
pg_pick_base() {
  mkdir -p "$VAR_DIR/pg"
  if pg_owner_can_use "$VAR_DIR/pg"; then PG_BASE="$VAR_DIR/pg"; else PG_BASE="$(pg_tmp_base)/pg"; fi
}
pg_base() { echo "${PG_BASE:-$VAR_DIR/pg}"; }
pg_data_dir() { echo "$(pg_base "$1")/$1"; }
pg_log_file() { echo "$(pg_base "$1")/$1.log"; }
pg_port_file() { echo "$VAR_DIR/pg/$1.port"; }
pg_owner_file() { echo "$VAR_DIR/pg/$1.owner"; }   # the script that started it
pg_socket_dir() {
  local d
  d="$(pg_base "$1")/$1.sock"
  # "/.s.PGSQL.NNNNN" adds 15 bytes; the limit is 107.
  if [ $(( ${#d} + 15 )) -gt 100 ]; then d="$(pg_tmp_base)/$1.sock"; fi
  echo "$d"
}

# pg_port NAME: the cluster's port, choosing and remembering one on first use.
# Skips 5432, ports that answer, and ports remembered by other clusters.
pg_port() {
  local name=$1 file port taken f
  file=$(pg_port_file "$name")
  if [ -s "$file" ]; then cat "$file"; return 0; fi
  taken=" "
  for f in "$VAR_DIR"/pg/*.port; do [ -f "$f" ] && taken="$taken$(cat "$f") "; done
  for (( port = PG_FIRST_PORT; port < PG_FIRST_PORT + 1000; port++ )); do
    case $taken in *" $port "*) continue ;; esac
    port_in_use "$port" && continue
    mkdir -p "$(dirname "$file")"
    echo "$port" >"$file"
    echo "$port"
    return 0
  done
  die "no free TCP port found in $PG_FIRST_PORT..$(( PG_FIRST_PORT + 999 ))"
}

# pg_url NAME DB: connection URL of the cluster (trust auth, no password).
pg_url() { echo "postgres://quire@127.0.0.1:$(pg_port "$1")/$2"; }

# pg_psql NAME DB ARGS...: run psql against the cluster as role quire.
pg_psql() {
  local name=$1 db=$2; shift 2
  PGCONNECT_TIMEOUT=5 "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$(pg_port "$name")" -U quire -d "$db" "$@" </dev/null
}

# pg_write_conf NAME PROFILE: (re)write NAME/quire.conf. PROFILE is `dev` or
# `test` (test trades durability for speed and allows many connections, since
# tests create databases in parallel).
pg_write_conf() {
  local name=$1 profile=$2 data conf
  data=$(pg_data_dir "$name")
  conf="$data/quire.conf"
  {
    echo "# Written by bin/lib.sh on every start; edit pg_write_conf there, not this file."
    echo "port = $(pg_port "$name")"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$(pg_socket_dir "$name")'"
    echo "shared_buffers = 128MB"
    # Streaming replicas (bin/dev --replica, bin/test) copy this cluster.
    echo "wal_level = replica"
    echo "max_wal_senders = 10"
    echo "hot_standby = on"
    echo "log_line_prefix = '%m [%p] %q%u@%d '"
    # A streaming replica's own settings (pg_ensure_replica writes them).
    echo "include_if_exists = 'replica.conf'"
    case $profile in
      test)
        echo "max_connections = 300"
        echo "fsync = off"
        echo "synchronous_commit = off"
        echo "full_page_writes = off"
        ;;
      *)
        echo "max_connections = 100"
        ;;
    esac
  } >"$conf"
  if is_root; then chown postgres: "$conf"; fi
  chmod 600 "$conf"
}

# pg_init_cluster NAME: initdb the data directory if it has no cluster yet.
# The bootstrap superuser is `quire`; local and 127.0.0.1 connections (and
# replication) are trusted: the cluster listens on loopback only.
pg_init_cluster() {
  local name=$1 data locale
  data=$(pg_data_dir "$name")
  [ -f "$data/PG_VERSION" ] && return 0
  say "creating PostgreSQL cluster in $data"
  rm -rf "$data"
  mkdir -p "$data"
  chmod 700 "$data"
  if is_root; then chown postgres: "$data"; fi
  # A UTF-8 locale gives sane lower()/full-text behaviour for non-ASCII text.
  locale=$(locale -a 2>/dev/null | grep -ixE 'c\.utf-?8' | head -n 1 || true)
  [ -n "$locale" ] || locale=$(locale -a 2>/dev/null | grep -ixE 'en_US\.utf-?8' | head -n 1 || true)
  local locale_arg=(--no-locale)
  [ -z "$locale" ] || locale_arg=("--locale=$locale")
  pg_as_owner "$PG_BINDIR/initdb" -D "$data" -U quire --auth=trust --encoding=UTF8 \
    "${locale_arg[@]}" >"$data.initdb.log" 2>&1 \
    || { cat "$data.initdb.log" >&2; die "initdb failed for $data"; }
  rm -f "$data.initdb.log"
  cat >"$data/pg_hba.conf" <<'EOF'
# Private development cluster, listening on 127.0.0.1 only: trust local users.
local   all          all                 trust
host    all          all   127.0.0.1/32  trust
local   replication  all                 trust
host    replication  all   127.0.0.1/32  trust
EOF
  echo "include_if_exists = 'quire.conf'" >>"$data/postgresql.conf"
  if is_root; then chown postgres: "$data/pg_hba.conf" "$data/postgresql.conf"; fi
}

# pg_running NAME: a live postgres process owns the data directory (the pid
# in postmaster.pid, which is what `pg_ctl status` checks, minus zombies and
# reused pids).
pg_running() {
  local pidfile pid
  pidfile="$(pg_data_dir "$1")/postmaster.pid"
  [ -f "$pidfile" ] || return 1
  pid=$(head -n 1 "$pidfile" 2>/dev/null || true)
  [ -n "$pid" ] && pid_alive "$pid" && [[ $(pid_cmdline "$pid") == *postgres* ]]
}

# pg_in_use NAME: the cluster runs for another live script (bin/dev or
# bin/test in another terminal): its owner file names a live process that is
# not us. Such a server is not stale and must be left alone.
pg_in_use() {
  pg_running "$1" && owner_alive "$(pg_owner_file "$1")"
}

# pg_free_name BASE: BASE, or BASE-2, BASE-3... : the first cluster name that
# no other live script is using (parallel bin/test runs get their own cluster).
pg_free_name() {
  local name=$1 n=1
  while pg_in_use "$name"; do n=$(( n + 1 )); name="$1-$n"; done
  echo "$name"
}

# pg_clear_stale NAME: deal with leftovers of a crashed run. A server still
# running on the data dir is stopped (we want our settings and we stop what we
# start); a postmaster.pid whose process is gone (or is not postgres, after
# pid reuse) is removed, as are stale socket lock files.
pg_clear_stale() {
  local name=$1 data sock pid f
  data=$(pg_data_dir "$name")
  sock=$(pg_socket_dir "$name")
  if pg_running "$name"; then
    say "stopping PostgreSQL left running on $data (from an earlier run)"
    pg_as_owner "$PG_BINDIR/pg_ctl" stop -D "$data" -m fast -w -t 20 >/dev/null \
      || pg_as_owner "$PG_BINDIR/pg_ctl" stop -D "$data" -m immediate -w -t 10 >/dev/null || true
  fi
  if [ -f "$data/postmaster.pid" ] && ! pg_running "$name"; then
    warn "removing stale $data/postmaster.pid"
    rm -f "$data/postmaster.pid"
  fi
  for f in "$sock"/.s.PGSQL.*.lock; do
    [ -f "$f" ] || continue
    pid=$(head -n 1 "$f" 2>/dev/null || true)
    if [ -z "$pid" ] || ! pid_alive "$pid"; then rm -f "$f" "${f%.lock}"; fi
  done
}

# pg_start_cluster NAME PROFILE: write settings and start the server, waiting
# until it accepts connections. Records NAME for pg_stop_started.
pg_start_cluster() {
  local name=$1 profile=$2 data sock log port
  data=$(pg_data_dir "$name")
  sock=$(pg_socket_dir "$name")
  log=$(pg_log_file "$name")
  port=$(pg_port "$name")
  if port_in_use "$port"; then
    # Someone else took our remembered port; choose a new one.
    warn "port $port is taken by another program; choosing a new port for $name"
    rm -f "$(pg_port_file "$name")"
    port=$(pg_port "$name")
  fi
  mkdir -p "$sock"; touch "$log"
  if is_root; then chown postgres: "$sock" "$log"; fi
  chmod 700 "$sock"
  pg_write_conf "$name" "$profile"
  PG_STARTED+=("$name")
  write_owner "$(pg_owner_file "$name")"
  # setsid: a Ctrl-C in the terminal must not reach the server directly; the
  # script stops it last, after the processes that use it.
  (cd / && ${SETSID[@]+"${SETSID[@]}"} ${PG_AS[@]+"${PG_AS[@]}"} \
    "$PG_BINDIR/pg_ctl" start -D "$data" -l "$log" -w -t 60 -s >/dev/null </dev/null) \
    || { tail -n 20 "$log" >&2; die "PostgreSQL ($name) failed to start; log: $log"; }
  PG_PORT=$port
}

# pg_stop_cluster NAME: fast shutdown (disconnects clients, no crash recovery
# needed next time). Quiet and harmless when it is not running.
pg_stop_cluster() {
  local data
  data=$(pg_data_dir "$1")
  rm -f "$(pg_owner_file "$1")"
  pg_running "$1" || return 0
  say "stopping PostgreSQL ($1)"
  pg_as_owner "$PG_BINDIR/pg_ctl" stop -D "$data" -m fast -w -t 20 -s >/dev/null 2>&1 \
    || pg_as_owner "$PG_BINDIR/pg_ctl" stop -D "$data" -m immediate -w -t 10 -s >/dev/null 2>&1 || true
}

# pg_stop_started: stop every cluster this script started, newest first (a
# replica before its primary).
pg_stop_started() {
  local i
  for (( i = ${#PG_STARTED[@]} - 1; i >= 0; i-- )); do
    pg_stop_cluster "${PG_STARTED[$i]}"
  done
  PG_STARTED=()
}

# pg_ensure_database NAME DB: create database DB in the cluster if missing.
pg_ensure_database() {
  local name=$1 db=$2
  if [ "$(pg_psql "$name" postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
    say "creating database $db"
    pg_psql "$name" postgres -c "CREATE DATABASE \"$db\""
  fi
}

# pg_setup: find (or install) PostgreSQL, make sure its user exists, decide
# where clusters live. Idempotent; pg_ensure_cluster calls it. Call it yourself
# before pg_free_name.
pg_setup() {
  [ -z "$PG_BASE" ] || return 0
  pg_find_bindir
  pg_ensure_owner_user
  pg_pick_base
  mkdir -p "$PG_BASE"
  if [ "$PG_BASE" != "$VAR_DIR/pg" ]; then
    say "note: using $PG_BASE for PostgreSQL data (the postgres user cannot reach $VAR_DIR)"
    chmod 755 "$(dirname "$PG_BASE")" "$PG_BASE"
  fi
}

# pg_ensure_cluster NAME PROFILE: the one call scripts need. Creates the
# cluster on first use, clears leftovers of a crashed run, starts it and makes
# sure role and database `quire` exist. Sets PG_PORT. Fails if another live
# script is using the cluster. The caller must arrange `pg_stop_started` on
# exit (trap).
pg_ensure_cluster() {
  local name=$1 profile=${2:-dev}
  pg_setup
  if pg_in_use "$name"; then
    die "PostgreSQL in $(pg_data_dir "$name") is in use by another running script (pid $(head -n 1 "$(pg_owner_file "$name")")); stop that one first"
  fi
  pg_port "$name" >/dev/null
  pg_init_cluster "$name"
  pg_clear_stale "$name"
  pg_start_cluster "$name" "$profile"
  pg_ensure_database "$name" quire
}

# ---------------------------------------------------------------------------
# Streaming replicas: another cluster under var/pg/NAME made by pg_basebackup -R
# from a running primary. It has its own port, socket and log like any cluster;
# quire.conf is rewritten on every start (pg_write_conf), plus the lines in
# NAME/replica.conf (the apply delay), so the primary's port in the copied
# quire.conf never leaks into the replica.
# ---------------------------------------------------------------------------

# pg_system_id NAME: the cluster's database system identifier ("" if none).
pg_system_id() {
  local data
  data=$(pg_data_dir "$1")
  [ -f "$data/global/pg_control" ] || return 0
  pg_as_owner "$PG_BINDIR/pg_controldata" -D "$data" 2>/dev/null \
    | sed -n 's/^Database system identifier: *//p'
}

# pg_basebackup_replica PRIMARY NAME: (re)create NAME as a fresh copy of the
# running cluster PRIMARY, configured to stream from it (-R).
pg_basebackup_replica() {
  local primary=$1 name=$2 data
  data=$(pg_data_dir "$name")
  say "creating streaming replica $name of $primary (pg_basebackup -R)"
  pg_clear_stale "$name"
  rm -rf "$data"
  mkdir -p "$(dirname "$data")"
  if is_root; then chown postgres: "$(dirname "$data")" 2>/dev/null || true; fi
  pg_as_owner "$PG_BINDIR/pg_basebackup" -D "$data" -h 127.0.0.1 -p "$(pg_port "$primary")" \
    -U quire -R -X stream -c fast >"$data.basebackup.log" 2>&1 \
    || { cat "$data.basebackup.log" >&2; die "pg_basebackup from $primary failed"; }
  rm -f "$data.basebackup.log" "$data/postmaster.pid" "$data/postmaster.opts"
}

# pg_ensure_replica PRIMARY NAME PROFILE [DELAY]: start NAME as a streaming
# replica of the running cluster PRIMARY, replaying DELAY behind it
# (recovery_min_apply_delay, e.g. 2s; default 0). An existing replica is
# reused when it is a copy of this primary and starts; otherwise it is made
# again. Sets PG_PORT to the replica's port.
pg_ensure_replica() {
  local primary=$1 name=$2 profile=${3:-dev} delay=${4:-0} data
  pg_setup
  if pg_in_use "$name"; then
    die "PostgreSQL in $(pg_data_dir "$name") is in use by another running script; stop that one first"
  fi
  data=$(pg_data_dir "$name")
  pg_port "$name" >/dev/null
  if [ ! -f "$data/standby.signal" ] || [ "$(pg_system_id "$name")" != "$(pg_system_id "$primary")" ]; then
    pg_basebackup_replica "$primary" "$name"
  fi
  pg_clear_stale "$name"
  pg_replica_conf "$name" "$delay"
  if ( pg_start_cluster "$name" "$profile" ) && pg_wait_streaming "$primary" "$name" 15; then
    PG_STARTED+=("$name")
    PG_PORT=$(pg_port "$name")
    return 0
  fi
  # Typically the primary no longer has the WAL this old copy needs: it does not start,
  # or starts and never streams. Make it again.
  warn "replica $name did not start streaming; making it again from $primary"
  pg_as_owner "$PG_BINDIR/pg_ctl" stop -D "$data" -m immediate -w -t 10 -s >/dev/null 2>&1 || true
  pg_basebackup_replica "$primary" "$name"
  pg_replica_conf "$name" "$delay"
  pg_start_cluster "$name" "$profile"
  pg_wait_streaming "$primary" "$name" 30 \
    || die "replica $name is not streaming from $primary after 30 s (log: $(pg_log_file "$name"))"
}

# pg_replica_conf NAME DELAY: the replica's own settings (read via quire.conf).
pg_replica_conf() {
  local data
  data=$(pg_data_dir "$1")
  printf "recovery_min_apply_delay = '%s'\nhot_standby_feedback = on\n" "$2" >"$data/replica.conf"
  if is_root; then chown postgres: "$data/replica.conf"; fi
}

# pg_wait_streaming PRIMARY NAME [SECONDS]: wait (default 30 s) until NAME's WAL
# receiver streams (from PRIMARY, its only upstream); fails otherwise.
pg_wait_streaming() {
  local name=$2 secs=${3:-30} i
  for (( i = 0; i < secs * 10; i++ )); do
    if [ "$(pg_psql "$name" postgres -tAc "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null)" = streaming ]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------------------
# Redis: a private redis-server under var/redis/NAME, on a port of its own
# ---------------------------------------------------------------------------
# A cache and rate-limit store, never the system of record: no persistence (a
# restarted Redis is empty, which the cache relies on: see app/src/cache/l2.rs),
# bounded memory, evicting keys that carry a TTL first.

REDIS_STARTED=()       # pid files of the servers this script started
REDIS_URL_STARTED=     # URL of the last server ensured
REDIS_FIRST_PORT=61379

# redis_find: redis-server and redis-cli, installed from Debian's package if missing.
redis_find() {
  have redis-server && have redis-cli && return 0
  if is_debian; then apt_install redis-server; fi
  have redis-server || die "redis-server is missing; please install it (Debian: redis-server, macOS: brew install redis)"
  # Debian's package starts a system-wide server on 6379; ours never uses it.
}

# redis_ensure NAME: start var/redis/NAME unless it already answers; sets
# REDIS_URL_STARTED. Records the server for redis_stop_started.
redis_ensure() {
  local name=$1 dir port_file port pidfile
  redis_find
  dir="$VAR_DIR/redis/$name"
  mkdir -p "$dir"
  port_file="$dir/port"
  pidfile="$dir/redis.pid"
  if [ -f "$port_file" ] && [ -f "$pidfile" ] && pid_alive "$(cat "$pidfile")" \
     && redis-cli -p "$(cat "$port_file")" ping >/dev/null 2>&1; then
    REDIS_URL_STARTED="redis://127.0.0.1:$(cat "$port_file")/"
    return 0
  fi
  port=$REDIS_FIRST_PORT
  while port_in_use "$port"; do port=$((port + 1)); done
  echo "$port" >"$port_file"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
    --maxmemory 256mb --maxmemory-policy volatile-lru \
    --daemonize yes --pidfile "$pidfile" --logfile "$dir/redis.log" >/dev/null
  local i
  for i in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.05
  done
  redis-cli -p "$port" ping >/dev/null 2>&1 || die "redis-server did not start (see $dir/redis.log)"
  REDIS_STARTED+=("$pidfile")
  REDIS_URL_STARTED="redis://127.0.0.1:$port/"
}

# redis_stop_started: stop every server redis_ensure started.
redis_stop_started() {
  local f pid
  for f in ${REDIS_STARTED[@]+"${REDIS_STARTED[@]}"}; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    # Waits for the exit: a server still shutting down writes its log while the
    # directory is removed (rm then fails, and a caller's `set -e` trap stops there).
    if pid_alive "$pid"; then stop_pids 5 "$pid"; fi
    # Nothing in it outlives the server (no persistence).
    if [ -z "${REDIS_KEEP_DIR:-}" ]; then rm -rf "$(dirname "$f")" || true; fi
  done
  REDIS_STARTED=()
}

# ---------------------------------------------------------------------------
# S3-compatible object store (tests of MEDIA_URL=s3://…)
# ---------------------------------------------------------------------------

# s3s-fs: a real S3 server (the s3s crate's HTTP, SigV4 auth and XML) over a
# directory, one bucket per subdirectory. Pinned: the tests know its behaviour.
S3S_FS_VERSION=0.14.1
S3_FIRST_PORT=61900
S3_STARTED=()

# s3_find: make `s3s-fs` available, building it once with cargo install (into
# cargo's bin directory, shared by every checkout; a few minutes the first time).
s3_find() {
  local bin_dir=${CARGO_HOME:-$HOME/.cargo}/bin
  if have s3s-fs; then S3S_FS=$(command -v s3s-fs); return 0; fi
  if [ -x "$bin_dir/s3s-fs" ]; then S3S_FS=$bin_dir/s3s-fs; return 0; fi
  say "installing s3s-fs $S3S_FS_VERSION (cargo install, once; a few minutes)"
  cargo install --quiet --locked --version "$S3S_FS_VERSION" --features binary s3s-fs \
    || die "could not install s3s-fs (cargo install s3s-fs --features binary)"
  S3S_FS=$bin_dir/s3s-fs
  [ -x "$S3S_FS" ] || die "s3s-fs was installed but is not at $S3S_FS"
}

# s3_ensure NAME: start an s3s-fs on 127.0.0.1 over var/s3/NAME/data with one
# bucket, `quire-test`, and fresh credentials. Sets S3_URL_STARTED to
# http://KEY:SECRET@127.0.0.1:PORT/BUCKET. Records it for s3_stop_started.
s3_ensure() {
  local name=$1 dir port secret pid i
  s3_find
  dir="$VAR_DIR/s3/$name"
  rm -rf "$dir"
  mkdir -p "$dir/data/quire-test"
  secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  port=$S3_FIRST_PORT
  while port_in_use "$port"; do port=$((port + 1)); done
  "$S3S_FS" --host 127.0.0.1 --port "$port" --access-key quire-test --secret-key "$secret" \
    "$dir/data" >"$dir/s3s-fs.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/pid"
  for i in $(seq 1 100); do
    port_in_use "$port" && break
    pid_alive "$pid" || break
    sleep 0.05
  done
  port_in_use "$port" || die "s3s-fs did not start (see $dir/s3s-fs.log)"
  S3_STARTED+=("$dir")
  S3_URL_STARTED="http://quire-test:$secret@127.0.0.1:$port/quire-test"
}

# s3_stop_started: stop every server s3_ensure started and delete its data.
s3_stop_started() {
  local dir pid
  for dir in ${S3_STARTED[@]+"${S3_STARTED[@]}"}; do
    [ -f "$dir/pid" ] || continue
    pid=$(cat "$dir/pid")
    if pid_alive "$pid"; then stop_pids 5 "$pid"; fi
    rm -rf "$dir" || true
  done
  S3_STARTED=()
}

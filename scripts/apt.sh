# Sourced by the scripts that install Debian packages. Everything goes to stderr: some callers print
# a result on stdout (scripts/ensure-postgres.sh prints a URL).

# Runs a command as root: directly when we are root (CI, containers), else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "need root to run '$*': run this as root or install sudo" >&2
    return 1
  fi
}

# Installs Debian packages; the package lists are refreshed once per script run, and only when
# something is to be installed, so a machine that has everything needs no network.
apt_install() {
  [ $# -gt 0 ] || return 0
  echo "installing Debian packages: $*" >&2
  if [ -z "${APT_LISTS_FRESH:-}" ]; then
    as_root apt-get update -qq >&2
    APT_LISTS_FRESH=1
  fi
  # dpkg talks a lot even with -qq: its output is shown only when the install fails.
  local log
  log=$(mktemp)
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "apt-get install $* failed" >&2
    return 1
  fi
  rm -f "$log"
}

# The newest installed PostgreSQL server's bin folder (Debian keeps initdb and pg_ctl off PATH).
postgres_bin_dir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

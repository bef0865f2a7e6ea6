# Sourced by the scripts that test a release binary from outside (contract.sh, admin-e2e.sh): a
# pinned Python tool in a cached virtualenv, and the service on a free loopback port with a fresh
# data directory, stopped when the script exits (its log shown when the script failed).

# pinned_venv DIR PACKAGE VERSION: makes DIR a virtualenv holding PACKAGE==VERSION. A venv that
# already holds the pin is kept, so repeated runs stay off the network.
pinned_venv() {
  local dir=$1 package=$2 version=$3
  if ! "$dir/bin/pip" show "$package" 2>/dev/null | grep -x "Version: $version" >/dev/null; then
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$package==$version"
  fi
}

# start_service BINARY: serves BINARY with the environment's settings and no configuration file.
# Sets $work (a temporary directory; the admin key is $work/data/admin.key) and $addr.
start_service() {
  work=$(mktemp -d)
  addr=127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$1" serve --listen "$addr" --data-dir "$work/data" --config /dev/null >"$work/service.log" 2>&1 &
  server_pid=$!
  trap stop_service EXIT
  local _
  for _ in $(seq 100); do
    livez 2>/dev/null && return
    sleep 0.1
  done
  livez 2>/dev/null || { echo "the service did not start" >&2; exit 1; }
}

livez() {
  python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "http://$addr/livez"
}

stop_service() {
  local status=$?
  kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  [ "$status" = 0 ] || tail -n 20 "$work/service.log" 2>/dev/null || true
  rm -rf "$work"
  exit "$status"
}

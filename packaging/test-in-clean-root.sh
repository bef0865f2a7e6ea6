#!/usr/bin/env bash
# The package's life on a fresh Debian machine (SPEC §13), in a clean root made with mmdebstrap
# from this machine's apt sources: install with apt, run the service the way its unit does,
# write data, edit the conffile, upgrade, check both survived, remove, purge.
#
#   packaging/test-in-clean-root.sh [DEB]
#
# DEB defaults to a fresh `packaging/build-deb.sh`; the upgrade is built from the same tree with
# a higher version. Runs as root (mmdebstrap, chroot) and needs mmdebstrap, curl and python3.
# Every check prints a line; the first one that fails stops the script with exit status 1.
# systemd does not run in a chroot, so the service is started with the unit's own ExecStart=,
# User=, Group= and UMask=, after creating the directories its StateDirectory= and
# LogsDirectory= would.
set -euo pipefail
cd "$(dirname "$0")/.."

STEP_TIMEOUT=600 # seconds, for each apt run and for making the root
START_TIMEOUT=20 # seconds for the service to answer /livez
STOP_TIMEOUT=30  # seconds for it to exit after SIGTERM
UNIT=/lib/systemd/system/sofiia-console.service
CHAT=package-test
TEXT="written before the upgrade"

for tool in mmdebstrap curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "needs root (mmdebstrap, chroot)" >&2; exit 2; }

work=$(mktemp -d)
root=$work/root
server_pid=""

cleanup() {
  local status=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if mountpoint -q "$root/proc"; then
    umount "$root/proc" || true
  fi
  if mountpoint -q "$root/proc"; then
    echo "$root/proc is still mounted; leaving $work in place" >&2
  else
    rm -rf --one-file-system "$work"
  fi
  exit "$status"
}
trap cleanup EXIT

pass() { echo "ok   $1"; }
fail() {
  echo "FAIL $1"
  [ -s "$work/cli.log" ] && tail -n 20 "$work/cli.log"
  exit 1
}
check() { # DESCRIPTION COMMAND...: passes when COMMAND succeeds
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
not() { ! "$@"; }
clock() { date +%s%N; }
since() { # START_NS: seconds elapsed, one decimal
  awk -v ns=$(($(clock) - $1)) 'BEGIN { printf "%.1f", ns / 1e9 }'
}
in_root() { # COMMAND...: runs COMMAND in the root with a clean environment
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    chroot "$root" "$@"
}
apt_in_root() { # ARGS...: apt-get in the root, its output in a log shown only on failure
  if ! timeout "$STEP_TIMEOUT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get -q "$@" </dev/null >"$work/apt.log" 2>&1; then
    cat "$work/apt.log"
    fail "apt-get $*"
  fi
  pass "apt-get $*"
}
json() { # EXPRESSION: evaluates a Python expression over the JSON document `d` on stdin
  python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}
free_address() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print("127.0.0.1:%d" % s.getsockname()[1])'
}
installed_version() { in_root dpkg-query -W -f '${Version}' sofiia-console 2>/dev/null; }
user_exists() { in_root getent passwd sofiia-console >/dev/null; }
group_exists() { in_root getent group sofiia-console >/dev/null; }
is_enabled() {
  [ "$(readlink "$root/etc/systemd/system/multi-user.target.wants/sofiia-console.service")" = "$UNIT" ]
}
owner_and_mode() { # PATH (in the root): user:group mode
  in_root stat -c '%U:%G %a' "$1"
}

# Starts the service as its unit would: ExecStart= of the installed unit, run as User= and
# Group= with UMask=0077, after making StateDirectory= (0700) and LogsDirectory= (0750). ENV
# assignments given are added to its environment. Waits for /livez at ADDR.
start_service() { # ADDR [NAME=VALUE...]
  local addr=$1 exec_start uid gid started
  shift
  exec_start=$(sed -n 's/^ExecStart=//p' "$root$UNIT")
  uid=$(in_root id -u sofiia-console)
  gid=$(in_root id -g sofiia-console)
  install -d -m 0700 -o "$uid" -g "$gid" "$root/var/lib/sofiia-console"
  install -d -m 0750 -o "$uid" -g "$gid" "$root/var/log/sofiia-console"
  echo "     starting $exec_start as sofiia-console ($uid:$gid) on $addr"
  # shellcheck disable=SC2086 # ExecStart= is split into words, as systemd does
  (umask 0077 && exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@" \
    chroot --userspec="$uid:$gid" --groups="$gid" "$root" $exec_start) >>"$work/service.log" 2>&1 &
  server_pid=$!
  started=$(clock)
  until curl -sf --max-time 1 -o /dev/null "http://$addr/livez"; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      cat "$work/service.log"
      fail "the service exited before answering /livez"
    fi
    if [ $(($(clock) - started)) -gt $((START_TIMEOUT * 1000000000)) ]; then
      cat "$work/service.log"
      fail "the service answers /livez within ${START_TIMEOUT}s"
    fi
    sleep 0.1
  done
  pass "the service answers http://$addr/livez after $(since "$started")s"
}

stop_service() {
  local started status=0
  started=$(clock)
  kill -TERM "$server_pid"
  while kill -0 "$server_pid" 2>/dev/null; do
    if [ $(($(clock) - started)) -gt $((STOP_TIMEOUT * 1000000000)) ]; then
      fail "the service exits within ${STOP_TIMEOUT}s of SIGTERM"
    fi
    sleep 0.1
  done
  wait "$server_pid" || status=$?
  server_pid=""
  check "the service stopped on SIGTERM with exit status 0 (it was $status)" [ "$status" = 0 ]
}

as_service_user() { # ARGS...: sofiia-console ARGS as the packaged user (it reads the packaged
  # configuration by default, as an operator's command on the machine does)
  local uid gid
  uid=$(in_root id -u sofiia-console)
  gid=$(in_root id -g sofiia-console)
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot --userspec="$uid:$gid" --groups="$gid" "$root" \
    /usr/bin/sofiia-console "$@" 2>>"$work/cli.log"
}
saving() { # FILE COMMAND...: COMMAND with its output kept in $work/FILE
  local file=$1
  shift
  "$@" >"$work/$file"
}
reads_back() { # ADDR: the test chat holds the message, read through the API
  local texts
  texts=$(curl -sf --max-time 10 "http://$1/api/chats/$CHAT/messages?limit=50" \
    -H "Authorization: Bearer $(cat "$root/var/lib/sofiia-console/admin.key")" |
    json '"\n".join(m["text"] for m in d["items"])') || return 1
  # Not piped into grep -q, which would exit at the match and fail the writer (pipefail).
  grep -qx "$TEXT" <<<"$texts"
}
is_conffile() {
  local conffiles
  conffiles=$(in_root dpkg-query -W -f '${Conffiles}' sofiia-console) || return 1
  grep -q '^ /etc/sofiia-console/config.toml ' <<<"$conffiles"
}
verifies() { [ -z "$(in_root dpkg --verify sofiia-console)" ]; }
is_installed() { in_root dpkg-query -W sofiia-console >/dev/null 2>&1; }
has_logs() { ls "$root"/var/log/sofiia-console/sofiia-console.*.log >/dev/null 2>&1; }
has_dpkg_copies() { ls "$root"/etc/sofiia-console/config.toml.dpkg-* >/dev/null 2>&1; }
has_unit_links() { [ -n "$(find "$root/etc/systemd/system" -name 'sofiia-console*')" ]; }

# ---------------------------------------------------------------------------------------------
deb=${1:-}
if [ -z "$deb" ]; then
  echo "== building the package"
  deb=$(packaging/build-deb.sh)
fi
version=$(dpkg-deb -f "$deb" Version)
echo "== package $deb (version $version)"
# cargo-deb deletes the other versions from target/debian when it builds the upgrade; this
# copy puts the package under test back afterwards.
cp "$deb" "$work/"

suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
sources=()
for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -s "$file" ] && sources+=("$file")
done
[ ${#sources[@]} -gt 0 ] || fail "this machine has apt sources to make the root from"
echo "== making a clean $suite root (mmdebstrap --variant=apt) from ${sources[*]}"
started=$(clock)
if ! timeout "$STEP_TIMEOUT" mmdebstrap --quiet --variant=apt "$suite" "$root" "${sources[@]}" \
  >"$work/mmdebstrap.log" 2>&1; then
  cat "$work/mmdebstrap.log"
  fail "mmdebstrap made the root"
fi
pass "root made in $(since "$started")s"
check "the root has no sofiia-console user before the installation" not user_exists
mount -t proc proc "$root/proc"
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "$deb" "$root/tmp/"

echo "== installing with apt-get, dependencies from the package's metadata"
started=$(clock)
apt_in_root update
install_started=$(clock)
apt_in_root install -y "/tmp/$(basename "$deb")"
pass "installed in $(since "$started")s (index update included)"
echo "     apt-get installed: $(sed -n '/NEW packages will be installed:/,/^[0-9]/{/^ /p}' "$work/apt.log" | xargs)"
check "dpkg reports sofiia-console $version installed" [ "$(installed_version)" = "$version" ]
check "the system user sofiia-console exists" user_exists
passwd_entry=$(in_root getent passwd sofiia-console)
check "its home is /var/lib/sofiia-console and it has no login shell ($passwd_entry)" \
  [ "${passwd_entry#*:*:*:*:*:}" = /var/lib/sofiia-console:/usr/sbin/nologin ]
check "the group sofiia-console exists" group_exists
check "the unit is at $UNIT" [ -f "$root$UNIT" ]
check "the unit is enabled: multi-user.target.wants/sofiia-console.service -> $UNIT" is_enabled
check "the conffile is at /etc/sofiia-console/config.toml" [ -f "$root/etc/sofiia-console/config.toml" ]
check "dpkg lists it among the package's conffiles" is_conffile
check "the conffile is root:sofiia-console 640" [ "$(owner_and_mode /etc/sofiia-console/config.toml)" = "root:sofiia-console 640" ]
check "/etc/sofiia-console is root:sofiia-console 750" [ "$(owner_and_mode /etc/sofiia-console)" = "root:sofiia-console 750" ]
check "the conffile is the one in the source tree" cmp -s packaging/config.toml "$root/etc/sofiia-console/config.toml"
check "no data directory is shipped (StateDirectory= makes it)" [ ! -e "$root/var/lib/sofiia-console" ]
reported=$(in_root /usr/bin/sofiia-console --version) || fail "/usr/bin/sofiia-console --version"
check "/usr/bin/sofiia-console --version works ($reported)" [ "${reported%% *}" = sofiia-console ]
for page in sofiia-console sofiia-console-serve sofiia-console-keys-create; do
  check "the man page $page(1) is installed" gzip -t "$root/usr/share/man/man1/$page.1.gz"
done
for completion in /usr/share/bash-completion/completions/sofiia-console \
  /usr/share/zsh/vendor-completions/_sofiia-console \
  /usr/share/fish/vendor_completions.d/sofiia-console.fish; do
  check "the completion $completion is installed" grep -q serve "$root$completion"
done
check "the sysusers.d declaration is installed" [ -f "$root/usr/lib/sysusers.d/sofiia-console.conf" ]
check "the changelog is installed" gzip -t "$root/usr/share/doc/sofiia-console/changelog.gz"
check "dpkg --verify finds every installed file as packaged" verifies

echo "== running the service as its unit does"
addr=$(free_address)
# The packaged file listens on 127.0.0.1:8080, which may be taken here; the environment
# overrides it as a drop-in with Environment= would.
start_service "$addr" "SOFIIA_LISTEN=$addr"
key_file=$root/var/lib/sofiia-console/admin.key
check "the bootstrap admin key is in the data directory, sofiia-console 600" \
  [ "$(owner_and_mode /var/lib/sofiia-console/admin.key)" = "sofiia-console:sofiia-console 600" ]
check "the data directory is sofiia-console 700" \
  [ "$(owner_and_mode /var/lib/sofiia-console)" = "sofiia-console:sofiia-console 700" ]
response=$(curl -sf --max-time 10 -X POST "http://$addr/api/chats/$CHAT/send" \
  -H "Authorization: Bearer $(cat "$key_file")" -H 'Content-Type: application/json' \
  -H "Idempotency-Key: $CHAT-1" -d "{\"text\":\"$TEXT\"}") || fail "POST /api/chats/$CHAT/send"
message_id=$(json 'd["message"]["id"]' <<<"$response")
check "the send stored message $message_id" [ -n "$message_id" ]
check "the message reads back through the API" reads_back "$addr"
echo "seconds from apt-get install to a verified send: $(since "$install_started")"
echo "== smoke checks against the packaged service"
# The copy the package installs, as the runbooks use it.
smoke=$root/usr/share/sofiia-console/ops/smoke.sh
ships_tools() {
  [ -x "$smoke" ] && [ -f "$root/usr/share/sofiia-console/ops/verify_audit_export.py" ]
}
check "the package ships the operations tools" ships_tools
if ! SOFIIA_KEY_FILE=$key_file timeout 120 "$smoke" "http://$addr"; then
  fail "/usr/share/sofiia-console/ops/smoke.sh http://$addr"
fi
pass "/usr/share/sofiia-console/ops/smoke.sh passed"
check "the service writes its log to /var/log/sofiia-console" has_logs
stop_service

# The release runbook's steps before an upgrade (ops/runbook/release.md), on the stopped service.
echo "== before the upgrade: preflight, a checked backup, the audit head recorded"
check "preflight passes on the stopped installation" saving preflight.txt as_service_user preflight
# The head first: the backup taken next holds it.
head_before=$(as_service_user audit verify | json '"%d:%s" % (d["head_seq"], d["head_hash"])') ||
  fail "audit verify"
pass "audit head before the upgrade: $head_before"
backup=$(as_service_user backup create | json 'd["file"]') || fail "backup create"
backup=/var/lib/sofiia-console/backups/$backup
check "backup verify accepts $backup" saving verified.json as_service_user backup verify "$backup"

echo "== editing the conffile"
upgrade_addr=$(free_address)
sed -i "s/^listen = .*/listen = \"$upgrade_addr\"/" "$root/etc/sofiia-console/config.toml"
echo "# local edit: kept across upgrades" >>"$root/etc/sofiia-console/config.toml"
check "the conffile now listens on $upgrade_addr" grep -qx "listen = \"$upgrade_addr\"" "$root/etc/sofiia-console/config.toml"

upgrade_version=$version+1
echo "== building $upgrade_version and upgrading to it"
started=$(clock)
upgrade_deb=$(packaging/build-deb.sh "$upgrade_version")
pass "built $upgrade_deb in $(since "$started")s"
mv "$upgrade_deb" "$work/"
upgrade_deb=$work/$(basename "$upgrade_deb")
[ -e "$deb" ] || cp "$work/$(basename "$deb")" "$deb"
check "$upgrade_version is newer than $version" dpkg --compare-versions "$upgrade_version" gt "$version"
uid_before=$(in_root id -u sofiia-console)
cp "$upgrade_deb" "$root/tmp/"
started=$(clock)
apt_in_root install -y "/tmp/$(basename "$upgrade_deb")"
pass "upgraded in $(since "$started")s"
check "dpkg reports sofiia-console $upgrade_version installed" [ "$(installed_version)" = "$upgrade_version" ]
check "the edited listen address survived the upgrade" grep -qx "listen = \"$upgrade_addr\"" "$root/etc/sofiia-console/config.toml"
check "the appended line survived the upgrade" grep -qx "# local edit: kept across upgrades" "$root/etc/sofiia-console/config.toml"
check "no .dpkg-new or .dpkg-dist copy was left beside the conffile" not has_dpkg_copies
check "the user kept its uid ($uid_before)" [ "$(in_root id -u sofiia-console)" = "$uid_before" ]
check "the unit is still enabled" is_enabled
check "the database is still there" [ -f "$root/var/lib/sofiia-console/sofiia.redb" ]

echo "== restarting on the edited conffile (no overrides)"
start_service "$upgrade_addr"
check "the message written before the upgrade reads back" reads_back "$upgrade_addr"
stop_service

# The rollback runbook (ops/runbook/rollback.md): the earlier package back over the upgrade,
# then the pre-upgrade backup restored, and the chain held to the head recorded before.
echo "== rolling back: the earlier package, then the backup taken before the upgrade"
check "the chain still holds the head recorded before the upgrade" \
  saving anchored.json as_service_user audit verify --expect "$head_before"
cp "$work/$(basename "$deb")" "$root/tmp/"
apt_in_root install -y --allow-downgrades "/tmp/$(basename "$deb")"
check "dpkg reports sofiia-console $version installed again" [ "$(installed_version)" = "$version" ]
check "backup restore puts the pre-upgrade backup in place" \
  saving restored.json as_service_user backup restore "$backup"
check "the replaced database is kept beside it" \
  [ -f "$root$(json 'd["previous"]' <"$work/restored.json")" ]
check "the restored chain holds the head recorded before the upgrade" \
  saving restored-anchor.json as_service_user audit verify --expect "$head_before"
start_service "$upgrade_addr"
check "the message written before the upgrade reads back after the rollback" reads_back "$upgrade_addr"
stop_service

echo "== removing (data, configuration and user stay)"
apt_in_root remove -y sofiia-console
check "the binary is gone" [ ! -e "$root/usr/bin/sofiia-console" ]
check "the database stays" [ -f "$root/var/lib/sofiia-console/sofiia.redb" ]
check "the conffile stays" [ -f "$root/etc/sofiia-console/config.toml" ]
check "the user stays" user_exists

echo "== purging"
apt_in_root purge -y sofiia-console
check "dpkg no longer knows the package" not is_installed
check "/var/lib/sofiia-console is gone" [ ! -e "$root/var/lib/sofiia-console" ]
check "/var/log/sofiia-console is gone" [ ! -e "$root/var/log/sofiia-console" ]
check "/etc/sofiia-console/config.toml is gone" [ ! -e "$root/etc/sofiia-console/config.toml" ]
check "the user sofiia-console is gone" not user_exists
check "the group sofiia-console is gone" not group_exists
check "no enablement or mask link is left" not has_unit_links
echo "clean-root test passed"

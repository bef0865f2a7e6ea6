#!/usr/bin/env bash
# Builds the Debian package and prints its path (the only line on stdout; progress goes to
# stderr):
#
#   packaging/build-deb.sh [VERSION]
#
# The release binary is built first and then asked for its man pages and completion scripts,
# so the package describes exactly the binary it ships. VERSION overrides the package version
# (the clean-root test builds a later one to upgrade to). Needs cargo-deb, installed here when
# missing, and dpkg-dev (dpkg-shlibdeps works out the library dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
export CARGO_TERM_COLOR=never

if ! cargo deb --version >/dev/null 2>&1; then
  echo "== installing cargo-deb $CARGO_DEB_VERSION" >&2
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" >&2
fi

echo "== cargo build --release" >&2
cargo build --locked --release >&2
binary=${CARGO_TARGET_DIR:-target}/release/sofiia-console

# The asset paths in Cargo.toml name this directory.
generated=target/packaging
rm -rf "$generated"
mkdir -p "$generated/man" "$generated/completions"
"$binary" manpage --dir "$generated/man"
"$binary" completions bash >"$generated/completions/sofiia-console.bash"
"$binary" completions zsh >"$generated/completions/_sofiia-console"
"$binary" completions fish >"$generated/completions/sofiia-console.fish"

args=(--no-build)
if [ $# -gt 0 ]; then
  args+=(--deb-version "$1")
fi
echo "== cargo deb ${args[*]}" >&2
# cargo deb prints the path of what it wrote, and only that, on stdout.
deb=$(cargo deb "${args[@]}" | tail -n 1)
[ -f "$deb" ] || { echo "cargo deb wrote no package (got \"$deb\")" >&2; exit 1; }

# cargo-deb writes no md5sums, without which `dpkg --verify sofiia-console` cannot tell an
# operator that an installed file changed. Conffiles are left out, as dpkg tracks them itself.
unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
dpkg-deb --raw-extract "$deb" "$unpacked"
(cd "$unpacked" && find . \( -path ./DEBIAN -o -path ./etc \) -prune -o -type f -printf '%P\0' |
  LC_ALL=C sort -z | xargs -0 md5sum) >"$unpacked/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$unpacked" "$deb" >&2
echo "$deb"

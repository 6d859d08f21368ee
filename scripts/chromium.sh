#!/usr/bin/env bash
# Chromium for the admin page's browser test (admin's chromedp test).
#
#   scripts/chromium.sh   make sure a Chromium binary exists; print its path
#
# Uses $ZEST_CHROMIUM when it names an executable, else /usr/bin/chromium (or
# chromium on PATH). When none is there, installs Debian's chromium package
# with apt-get: directly as root, or through sudo when it is available without
# a password. Running it again does nothing but print the path.
set -euo pipefail

find_chromium() {
	if [ -n "${ZEST_CHROMIUM:-}" ] && [ -x "$ZEST_CHROMIUM" ]; then echo "$ZEST_CHROMIUM"; return; fi
	for c in /usr/bin/chromium /usr/bin/chromium-browser; do
		if [ -x "$c" ]; then echo "$c"; return; fi
	done
	if command -v chromium >/dev/null 2>&1; then command -v chromium; return; fi
	return 1
}

if bin=$(find_chromium); then echo "$bin"; exit 0; fi

if [ "$(id -u)" -eq 0 ]; then
	as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	as_root=(sudo -n)
else
	echo "chromium.sh: Chromium is missing and apt-get needs root (no passwordless sudo)." >&2
	echo "chromium.sh: install it with: sudo apt-get install -y chromium" >&2
	exit 1
fi

echo "chromium.sh: installing Debian's chromium package (apt-get), once" >&2
export DEBIAN_FRONTEND=noninteractive
# The package lists may be stale or absent on a fresh machine: update once
# when the first install attempt cannot find the package.
if ! "${as_root[@]}" apt-get install -y -q --no-install-recommends chromium >&2; then
	"${as_root[@]}" apt-get update -q >&2
	"${as_root[@]}" apt-get install -y -q --no-install-recommends chromium >&2
fi

bin=$(find_chromium) || { echo "chromium.sh: apt-get finished but no chromium binary was found" >&2; exit 1; }
echo "$bin"

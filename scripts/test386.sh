#!/usr/bin/env bash
# Runs the table tests (and stm's goroutine bookkeeping tests) built for 32-bit x86 (GOARCH=386), where int is 4
# bytes: natively when the kernel runs 386 binaries, otherwise under
# qemu-i386 (Debian's qemu-user, installed with apt-get when missing).
# Crash tests are skipped (-short): they need nothing 32-bit-specific.
set -euo pipefail
cd "$(dirname "$0")/.."
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
cat >"$probe/main.go" <<'GO'
package main

func main() {}
GO
(cd "$probe" && GOARCH=386 GOFLAGS= go build -o probe main.go 2>/dev/null) || { echo "test386.sh: cannot build for 386" >&2; exit 1; }
exec_flag=()
if ! "$probe/probe" 2>/dev/null; then
	if ! command -v qemu-i386 >/dev/null 2>&1; then
		echo "test386.sh: this kernel does not run 386 binaries; installing qemu-user" >&2
		sudo=""
		[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
		$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-user >/dev/null 2>&1 ||
			{ $sudo apt-get update >/dev/null 2>&1 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-user >/dev/null; }
	fi
	command -v qemu-i386 >/dev/null 2>&1 || { echo "test386.sh: qemu-i386 is missing and could not be installed" >&2; exit 1; }
	exec_flag=(-exec qemu-i386)
	# Go's asynchronous preemption signals crash under qemu-user.
	export GODEBUG=asyncpreemptoff=1
fi
GOARCH=386 go test -short -count=1 "${exec_flag[@]}" ./table/...
# stm's goroutine bookkeeping takes its other path on 386 (no cheap getg:
# places are kept in a map only while their goroutine runs a body).
GOARCH=386 go test -short -count=1 "${exec_flag[@]}" \
	-run 'TestNested|TestRunFromHook|TestPlaces|TestGoexit|TestCommitCount|TestTxUsed|TestHooks' ./stm/

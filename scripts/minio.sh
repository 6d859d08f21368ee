#!/usr/bin/env bash
# Local MinIO for Zest's demo and tests.
#
#   scripts/minio.sh install   make sure a MinIO server binary exists; print its path
#   scripts/minio.sh start     start one on 127.0.0.1 (free port, temporary data
#                              directory, generated credentials); print shell
#                              exports for it
#   scripts/minio.sh stop      stop the one `start` started
#
# install uses `minio` from PATH when there is one (or $ZEST_MINIO_BIN),
# otherwise builds the pinned release into the repo's .bin/ with go install.
set -euo pipefail

MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
repo="$(cd "$(dirname "$0")/.." && pwd)"
bindir="$repo/.bin"
state="${ZEST_MINIO_STATE:-$repo/.bin/minio-run}"

find_minio() {
	if [ -n "${ZEST_MINIO_BIN:-}" ] && [ -x "$ZEST_MINIO_BIN" ]; then echo "$ZEST_MINIO_BIN"; return; fi
	if [ -x "$bindir/minio" ]; then echo "$bindir/minio"; return; fi
	if command -v minio >/dev/null 2>&1; then command -v minio; return; fi
	return 1
}

install() {
	if bin=$(find_minio); then echo "$bin"; return; fi
	command -v go >/dev/null 2>&1 || { echo "minio.sh: Go is needed to build MinIO" >&2; exit 1; }
	echo "minio.sh: building the MinIO server ($MINIO_VERSION) into $bindir" >&2
	echo "minio.sh: the first build takes several minutes; the packages it compiles are listed below" >&2
	mkdir -p "$bindir"
	GOBIN="$bindir" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install -v "github.com/minio/minio@$MINIO_VERSION" 2>&1 |
		awk '{ n++; if (n % 25 == 0) printf("minio.sh: %d packages built, now %s\n", n, $0) > "/dev/stderr" }'
	[ -x "$bindir/minio" ] || { echo "minio.sh: go install did not produce $bindir/minio" >&2; exit 1; }
	echo "$bindir/minio"
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null ||
		echo $((20000 + RANDOM % 20000))
}

start() {
	bin=$(install)
	mkdir -p "$state"
	if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
		cat "$state/env"; return
	fi
	data=$(mktemp -d "${TMPDIR:-/tmp}/zest-minio.XXXXXX")
	port=$(free_port); cport=$(free_port)
	user="zest$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	pass="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	MINIO_ROOT_USER="$user" MINIO_ROOT_PASSWORD="$pass" MINIO_BROWSER=off \
		nohup "$bin" server --quiet --address "127.0.0.1:$port" --console-address "127.0.0.1:$cport" "$data" \
		>"$state/log" 2>&1 &
	echo $! >"$state/pid"
	echo "$data" >"$state/data"
	for _ in $(seq 1 300); do
		# live answers before the object layer is up; S3 requests answer 503
		# until it is.
		code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" 2>/dev/null || true)
		if curl -fsS "http://127.0.0.1:$port/minio/health/live" >/dev/null 2>&1 && [ "$code" != "000" ] && [ "$code" != "503" ]; then
			cat >"$state/env" <<ENV
export ZEST_S3_ENDPOINT=127.0.0.1:$port
export ZEST_S3_ACCESS_KEY=$user
export ZEST_S3_SECRET_KEY=$pass
export ZEST_S3_SECURE=false
ENV
			cat "$state/env"
			return
		fi
		kill -0 "$(cat "$state/pid")" 2>/dev/null || break
		sleep 0.1
	done
	echo "minio.sh: MinIO did not become ready; its log:" >&2
	cat "$state/log" >&2
	exit 1
}

stop() {
	if [ -f "$state/pid" ]; then
		kill "$(cat "$state/pid")" 2>/dev/null || true
		rm -f "$state/pid" "$state/env"
	fi
	if [ -f "$state/data" ]; then
		rm -rf "$(cat "$state/data")"
		rm -f "$state/data"
	fi
}

case "${1:-}" in
install) install ;;
start) start ;;
stop) stop ;;
*) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac

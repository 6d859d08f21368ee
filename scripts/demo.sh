#!/usr/bin/env bash
# make demo: install MinIO if needed, start it on 127.0.0.1 with a temporary
# data directory, run examples/bag-to-oss against it, stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/minio.sh install >/dev/null
export ZEST_MINIO_STATE="$(mktemp -d "${TMPDIR:-/tmp}/zest-demo-state.XXXXXX")"
trap 'scripts/minio.sh stop; rm -rf "$ZEST_MINIO_STATE"' EXIT
eval "$(scripts/minio.sh start)"
echo "demo: MinIO running at $ZEST_S3_ENDPOINT"
go run ./examples/bag-to-oss "$@"

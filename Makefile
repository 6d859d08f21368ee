# Zest: `make test` runs every test; `make bench` the micro-benchmarks and
# the engine comparison in bench/.
GO ?= go

.PHONY: test check minio bench bench-compare demo

# MinIO is installed (built with go install, into .bin/) when missing: the
# mover, example and stress tests run against a real server.
test: check minio
	$(GO) test -race -count=1 -timeout 20m ./...

minio:
	@scripts/minio.sh install >/dev/null

# Static checks: formatting and vet, on the library and the bench module.
check:
	@out=$$(gofmt -l . ); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd bench && $(GO) vet ./...

# Runs the bag-to-OSS example against a local MinIO it installs and starts.
demo:
	@scripts/demo.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./stm/... ./table/...

bench-compare:
	cd bench && $(GO) run . 

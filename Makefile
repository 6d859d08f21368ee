# Zest: `make test` runs every test; `make bench` the micro-benchmarks and
# the engine comparison in bench/.
GO ?= go

.PHONY: test check minio chromium test386 stress bench bench-compare bench-targets bench-saga bench-mover bench-scrape demo demo-saga demo-nats demo-payment

# MinIO is installed (built with go install, into .bin/) when missing: the
# mover, example and stress tests run against a real server. Chromium (the
# Debian package) is installed for the admin page's browser test. The table
# tests also run built for 32-bit x86, where int is 4 bytes.
test: check minio chromium
	$(GO) test -race -count=1 -timeout 20m ./...
	# Without the race detector, stm takes its amd64 release stores (plain
	# MOVs) instead of atomic ones: the engine's checkers run on that path too.
	$(GO) test -count=1 ./stm/ ./table/
	cd bench && $(GO) test -race -count=1 ./...
	@scripts/test386.sh

minio:
	@scripts/minio.sh install >/dev/null

chromium:
	@scripts/chromium.sh >/dev/null

test386:
	@scripts/test386.sh

# The stress scenarios for longer (STRESS_DURATION each), with their
# summary table. `make test` runs them briefly.
STRESS_DURATION ?= 40s
stress: minio
	cd stress && CI=true $(GO) test -race -count=1 -timeout 60m -stress.duration=$(STRESS_DURATION)
	CI=true ZEST_STRESS=1 $(GO) test -race -count=1 -timeout 60m -run 'TestCrashKill9' ./saga/
	CI=true ZEST_STRESS=1 $(GO) test -race -count=1 -timeout 60m -run 'TestReadersNeverSeeLostValues' ./table/
	CI=true ZEST_STRESS=1 $(GO) test -race -count=1 -timeout 30m -run 'Crash|Model|OwnWrites' ./idem/
	CI=true ZEST_STRESS=1 $(GO) test -race -count=1 -run 'RandomNesting' ./whilecommit/
	CI=true ZEST_STRESS=1 $(GO) test -race -count=1 -timeout 30m -run TestCrashLoop ./effectqueue/

# Static checks: formatting and vet, on the library and the bench module.
check:
	@out=$$(gofmt -l . ); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd bench && $(GO) vet ./...

# Runs the bag-to-OSS example against a local MinIO it installs and starts.
demo:
	@scripts/demo.sh

# Runs examples/purchase-nats with a NATS server it starts itself.
demo-nats:
	$(GO) run ./examples/purchase-nats

# An order payment endpoint with idempotency tokens, against concurrent
# duplicate requests and a restart.
demo-payment:
	$(GO) run ./examples/order-payment

# The order saga (price + stock services as local HTTP servers, some sagas
# compensate, one gets stuck and is resolved).
demo-saga:
	$(GO) run ./examples/order-saga

# Benchmarks, with the counts the README's table was made with.
bench: minio
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./stm/ ./table/
	$(GO) test -run '^$$' -bench CommitEnqueue -benchmem -benchtime 20000x -count 5 ./effectqueue/
	CI=true $(GO) test -run '^$$' -bench 'Put1KiB|CommitToVisible' -benchtime 2000x -count 5 ./mover/s3sink/
	CI=true $(GO) test -run '^$$' -bench Coalesce -benchtime 1x -count 1 ./mover/s3sink/
	$(GO) test -run '^$$' -bench Publish -benchmem -benchtime 20000x -count 5 ./mover/natssink/
	$(GO) test -run '^$$' -bench 'Payment$$|PaymentInterleaved' -benchmem -benchtime 200000x -count 5 ./idem/
	$(GO) test -run '^$$' -bench PaymentDurableInterleaved -benchmem -benchtime 300x -count 5 ./idem/
	$(GO) test -run '^$$' -bench Sweep1M -benchmem -benchtime 1x -count 3 ./idem/

# The mover against raw clients, rounds interleaved in one run.
bench-mover: minio
	CI=true $(GO) test -run '^$$' -bench MoverVsRaw -benchmem -benchtime 1000x -count 1 -v ./mover/s3sink/
	$(GO) test -run '^$$' -bench NatsSinkVsRaw -benchmem -benchtime 20000x -count 1 -v ./mover/natssink/
	$(GO) test -run '^$$' -bench Overhead -benchmem -benchtime 20000x -count 3 ./mover/
	$(GO) test -run '^$$' -bench 'CommitEnqueue/mode=(naive|sync)/committers=64' -benchmem -benchtime 20000x -count 3 ./effectqueue/

# Commit throughput with and without a Prometheus scrape every 100 ms, and
# the cost of a scrape.
bench-scrape:
	$(GO) test -run '^$$' -bench 'Scrape$$|DeadLetterCount' -benchmem -count 5 ./metrics/
	$(GO) test -run '^$$' -bench CommitsScrapeWindows -benchmem -benchtime 60x -count 1 ./metrics/
	$(GO) test -run '^$$' -bench CommitsScrapeWindows -benchmem -benchtime 60x -count 3 ./metrics/ -args -scrape.every=10ms

# The engine comparison (bench/ is its own module), also written to
# bench/results/bank.md.
bench-compare:
	cd bench && $(GO) run . -count 3 -o results/bank.md

# The three tables with issue 15's targets, more rounds (a few minutes).
bench-targets:
	cd bench && $(GO) run . -workload targets -count 9

# Sagas: Zest against go-workflows on SQLite, 1/8/64 concurrent sagas.
bench-saga:
	cd bench && $(GO) run ./sagabench -d 5s -o results/saga.md

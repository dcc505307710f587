# riposte: the README's two commands are `make demo` and `make test`.
GO      ?= go
BIN     ?= bin/worker
PKGS    ?= ./...

.PHONY: build run demo test bench lint fmt docs fuzz

# What the binary says it is: `worker version`, riposte_build_info, the vendors' User-Agent.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/worker

# Starts the worker for real: an embedded JetStream server under ./data unless NATS_URL is set.
# Vendors come from the environment; `make run RUN_FLAGS=--simulate` uses the built-in fakes.
RUN_FLAGS ?=
run:
	$(GO) run ./cmd/worker run --log-format console $(RUN_FLAGS)

# The whole flow in one process against the fake vendors; exits non-zero on any unexpected outcome.
demo:
	$(GO) run ./cmd/worker demo

# The race detector needs cgo, and Go turns cgo off where no C compiler is installed: there the
# suite still runs, without -race, and says so.
RACE ?= $(if $(filter 1,$(shell $(GO) env CGO_ENABLED)),-race,)

test:
	@[ -n "$(RACE)" ] || echo "note: no C compiler (cgo off), so the tests run without -race"
	$(GO) test $(RACE) -count=1 -timeout 15m $(PKGS)

# Issue 16: riposte against its floors on one embedded JetStream server, about two minutes; writes
# the table, the machine and a chart into docs/benchmarks.md (and .svg), keeping its hand-written
# parts. BENCH_FLAGS scales it: -alerts, -duration, -cases, -rounds, -cpuprofile, ... (-h lists
# them). The Go micro-benchmarks: go test -run '^$' -bench . -benchmem ./...
BENCH_FLAGS ?=
bench:
	$(GO) run ./cmd/bench -out docs/benchmarks.md $(BENCH_FLAGS)

# Each fuzz test for FUZZTIME; the seeds alone run in make test.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeAlert -fuzztime $(FUZZTIME) ./internal/queue
	$(GO) test -run '^$$' -fuzz FuzzClip -fuzztime $(FUZZTIME) ./internal/queue
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME) ./internal/playbook
	$(GO) test -run '^$$' -fuzz FuzzRender -fuzztime $(FUZZTIME) ./internal/playbook

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

# docs/actions.md is generated from the actions' declarations.
docs:
	$(GO) run ./cmd/worker actions > docs/actions.md
	$(GO) test ./internal/playbook -run TestSchemaIsCurrent -update

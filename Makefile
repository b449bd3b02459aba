# synfs: the targets a newcomer needs. `make test` is what CI runs.
GO      ?= go
BIN     := bin/synfs
# The race detector and FUSE end-to-end tests share two cores; keep the
# whole run well under CI's limits.
TESTFLAGS ?= -race -timeout 9m

.PHONY: build test vet demo dev-server bench clean

build:
	$(GO) build -o $(BIN) ./cmd/synfs

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: the files above need formatting"; exit 1; }

test: vet
	$(GO) test $(TESTFLAGS) ./...

# A generated sample folder from the built-in emulator, mounted until Ctrl-C.
demo: build
	$(BIN) demo

# The emulator alone, with a small folder to look at; prints its endpoints
# and token as one JSON line.
dev-server: build
	$(BIN) dev-server --import sample=$(CURDIR)/cmd

# synfs against rclone, s3fs and this machine's limits (direct S3 GETs, the
# FUSE crossing) on the emulator; prints markdown tables and writes JSON.
# Needs root and /dev/fuse; takes several minutes (rclone reads at ~50 MB/s).
# A smoke run: make bench BENCHFLAGS=--quick. See go run ./cmd/synfs-bench -h.
BENCHFLAGS ?=
bench: build
	$(GO) run ./cmd/synfs-bench --synfs-bin $(BIN) $(BENCHFLAGS)

clean:
	rm -rf bin

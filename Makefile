# Concord. `make demo` runs the whole system with demo data; `make test` runs every test.
# Both install and start PostgreSQL and Redis (and, for tests, an S3 server and Chromium)
# when they do not already answer on loopback.

GO       ?= go
BIN      := .bin
TESTFLAGS ?=
export GOFLAGS := -buildvcs=false
export GOTOOLCHAIN := local

.PHONY: demo test build services vet fmt bench clean

build:
	$(GO) build -o $(BIN)/concord ./cmd/concord

demo: build
	scripts/services.sh core
	$(BIN)/concord demo

test:
	scripts/services.sh test
	bash -c '. <(scripts/services.sh env) && $(GO) vet ./... && $(GO) test -count=1 -timeout 30m $(TESTFLAGS) ./...'

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (gofmt -l .; echo "gofmt: files above need formatting"; exit 1)

bench: build
	scripts/services.sh test
	$(BIN)/concord bench

clean:
	rm -rf $(BIN)/concord

# Vigil — edge gateway for lone-worker safety.
#   make run    start Vigil on its embedded defaults (broker, ./var, http 127.0.0.1:8080)
#   make test   install test dependencies if missing, then run the whole suite

GO       ?= go
BIN      := bin
PKGS     := ./...

LDFLAGS  := -s -w
STATICCHECK_VERSION := v0.8.2

.PHONY: all build run test test-short testenv bench cross lint fuzz clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

run: build
	$(BIN)/vigil run

# testenv installs Mosquitto, socat, Chromium and the independent DC-09
# receiver when they are missing; it is a no-op on a machine that has them.
testenv:
	@deploy/testenv/install.sh > $(BIN)/.testenv || (rm -f $(BIN)/.testenv; exit 1)

test: | $(BIN)
	@deploy/testenv/install.sh > $(BIN)/.testenv
	. ./$(BIN)/.testenv && export VIGIL_SIA_DIR VIGIL_MINIO VIGIL_CHROMIUM && \
	  $(GO) vet $(PKGS) && \
	  $(GO) test -race -shuffle=on -timeout 12m $(PKGS)
	$(MAKE) --no-print-directory cross

test-short:
	$(GO) test -short -race $(PKGS)

# Short fuzz runs of every parser; longer with FUZZTIME=5m.
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=$(FUZZTIME) ./devices/
	$(GO) test -run='^$$' -fuzz=FuzzParseFrame -fuzztime=$(FUZZTIME) ./gateway/forward/dc09/
	$(GO) test -run='^$$' -fuzz=FuzzDecodeFrame -fuzztime=$(FUZZTIME) ./devices/serial/
	$(GO) test -run='^$$' -fuzz=FuzzParseUploadMetadata -fuzztime=$(FUZZTIME) ./evidence/ingest/
	$(GO) test -run='^$$' -fuzz=FuzzParseSidecar -fuzztime=$(FUZZTIME) ./evidence/ingest/
	$(GO) test -run='^$$' -fuzz=FuzzParseCheckpoint -fuzztime=$(FUZZTIME) ./evidence/ledger/
	$(GO) test -run='^$$' -fuzz=FuzzParseBody -fuzztime=$(FUZZTIME) ./evidence/ledger/
	$(GO) test -run='^$$' -fuzz=FuzzParseS3URL -fuzztime=$(FUZZTIME) ./evidence/objstore/
	$(GO) test -run='^$$' -fuzz=FuzzValidKey -fuzztime=$(FUZZTIME) ./evidence/objstore/
	$(GO) test -run='^$$' -fuzz=FuzzParseManifest -fuzztime=$(FUZZTIME) ./evidence/bagit/
	$(GO) test -run='^$$' -fuzz=FuzzParseInfo -fuzztime=$(FUZZTIME) ./evidence/bagit/
	$(GO) test -run='^$$' -fuzz=FuzzOpen -fuzztime=$(FUZZTIME) -fuzzminimizetime=5s ./evidence/bagit/
	$(GO) test -run='^$$' -fuzz=FuzzParseProof -fuzztime=$(FUZZTIME) ./evidence/exhibit/
	$(GO) test -run='^$$' -fuzz=FuzzVerify -fuzztime=$(FUZZTIME) -fuzzminimizetime=5s ./evidence/exhibit/
	$(GO) test -run='^$$' -fuzz=FuzzParseSealText -fuzztime=$(FUZZTIME) ./governance/audit/
	$(GO) test -run='^$$' -fuzz=FuzzParseHash -fuzztime=$(FUZZTIME) ./governance/access/
	$(GO) test -run='^$$' -fuzz=FuzzRender -fuzztime=$(FUZZTIME) ./gateway/monthly/

# bench: micro-benchmarks, the end-to-end ones (BENCHMARKS.md §1-4), then the
# evidence path against MinIO beside mc (§5, about 5 min; --bench installs mc).
bench: | $(BIN)
	@deploy/testenv/install.sh --bench > $(BIN)/.testenv
	$(GO) test -run='^$$' -bench=. -benchmem ./devices/ ./gateway/...
	. ./$(BIN)/.testenv && export VIGIL_MINIO VIGIL_MC && \
	  VIGIL_E2E_BENCH=1 $(GO) test -run='^$$' -bench=E2E -benchtime=1x -timeout 20m ./gateway/e2e/ && \
	  VIGIL_E2E_BENCH=1 VIGIL_BENCH_OUT=$(CURDIR)/$(BIN) $(GO) test -run='^$$' -bench=EvidenceUpload -benchtime=1x -timeout 60m ./gateway/e2e/

cross:
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/linux-arm64/ ./cmd/...
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/linux-armv7/ ./cmd/...
	@# vigil-verify is handed to police and defence experts: every desktop platform.
	@set -e; for target in linux/amd64 linux/arm64 windows/amd64 windows/arm64 darwin/amd64 darwin/arm64; do \
	  os=$${target%/*}; arch=$${target#*/}; \
	  echo "vigil-verify $$os/$$arch -> dist/vigil-verify/$$os-$$arch/"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/vigil-verify/$$os-$$arch/ ./cmd/vigil-verify; \
	done

lint:
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

$(BIN):
	@mkdir -p $(BIN)

clean:
	rm -rf $(BIN) dist

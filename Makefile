# Vigil — edge gateway for lone-worker safety.
#   make run    start Vigil on its embedded defaults (broker, ./var, http 127.0.0.1:8080)
#   make test   install test dependencies if missing, then run the whole suite

GO       ?= go
BIN      := bin
PKGS     := ./...

# What `vigil version` reports (cmd/internal/buildinfo), stamped with -X.
# BUILD_DATE is the commit's time (or SOURCE_DATE_EPOCH): the same commit
# builds the same binary, and make does not relink what has not changed.
# Each is computed once (:=) unless given: make package VERSION=1.0.0.
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
VERSION    := $(VERSION)
COMMIT     ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
COMMIT     := $(COMMIT)
BUILD_DATE ?= $(shell date -u -d @$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || date +%s)} +%Y-%m-%dT%H:%M:%SZ)
BUILD_DATE := $(BUILD_DATE)
BUILDINFO  := github.com/vigil-gw/vigil/cmd/internal/buildinfo
VERSION_LDFLAGS := -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT) -X $(BUILDINFO).date=$(BUILD_DATE)

LDFLAGS  := -s -w $(VERSION_LDFLAGS)
STATICCHECK_VERSION := v0.8.2

.PHONY: all build run test test-short test-emulated testenv bench bench-capacity cross package lint fuzz clean

all: build

build:
	$(GO) build -ldflags '$(VERSION_LDFLAGS)' -o $(BIN)/ ./cmd/...

run: build
	$(BIN)/vigil run

# testenv installs Mosquitto, socat, Chromium and the independent DC-09
# receiver when they are missing; it is a no-op on a machine that has them.
testenv:
	@deploy/testenv/install.sh > $(BIN)/.testenv || (rm -f $(BIN)/.testenv; exit 1)

test: | $(BIN)
	@deploy/testenv/install.sh > $(BIN)/.testenv
	. ./$(BIN)/.testenv && export VIGIL_SIA_DIR VIGIL_MINIO VIGIL_CHROMIUM VIGIL_PROMTOOL VIGIL_QEMU_AARCH64 VIGIL_QEMU_ARM && \
	  $(GO) vet $(PKGS) && \
	  $(GO) test -race -shuffle=on -timeout 12m $(PKGS) && \
	  $(MAKE) --no-print-directory test-emulated
	$(MAKE) --no-print-directory cross

test-short:
	$(GO) test -short -race $(PKGS)

# test-emulated runs the unit tests of EMULATED_PKGS built for the gateway's
# boards, linux/arm64 and linux/arm GOARM=7, under qemu user mode. binfmt is not
# registered on our machines, so the emulator is named with -exec (make
# testenv installs it); -race does not exist for these targets. armv7 is
# where it pays: int and uintptr are 32 bits there, 64-bit atomics need 8-byte
# alignment, and syscall structs (adjtimex, termios) have other layouts.
#
# EMULATED_PKGS was chosen by reading each package's tests: the gateway's own
# code whose tests need nothing but the Go runtime, temp files and loopback
# sockets. Left out: packages whose tests start MinIO (evidence,
# evidence/objstore, governance, gateway/doctor), Chromium, Mosquitto or the
# vigil binary (gateway/e2e, cmd/...), and firmware-sim (a simulator, not run
# on a gateway, with pty tests). devices/serial's Port tests drive a real pty
# and are skipped by EMULATED_SKIP; its codec tests run. All of them run on
# both architectures: ~100 s with a warm build cache on 2 cores, most of it the
# ledger, bagit, exhibit and audit tests (byte-order and hashing code, where
# the emulation earns its keep). -trimpath makes the arm packages compiled here
# the same build actions as make cross's and gateway/e2e's arm64 build, so a
# cold cache compiles them once.
QEMU_AARCH64 ?= $(or $(VIGIL_QEMU_AARCH64),qemu-aarch64-static)
QEMU_ARM     ?= $(or $(VIGIL_QEMU_ARM),qemu-arm-static)
EMULATED_PKGS := ./devices ./devices/serial ./devices/registry ./devices/pki ./devices/mqtt \
	./gateway/forward/dc09 ./gateway/forward/webhook ./gateway/forward/footage ./gateway/forward/wearer \
	./gateway/journal ./gateway/outbox ./gateway/alert ./gateway/timer ./gateway/incident \
	./gateway/broker ./gateway/console ./gateway/monthly ./gateway/sysclock ./gateway/internal/ratelog \
	./evidence/ledger ./evidence/bagit ./evidence/exhibit ./evidence/ingest ./evidence/sqlitedb \
	./governance/audit ./governance/access ./governance/report
EMULATED_SKIP := ^TestPort
EMULATED_TIMEOUT := 5m

test-emulated:
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) test -exec '$(QEMU_AARCH64)' -trimpath -short -shuffle=on \
	  -timeout $(EMULATED_TIMEOUT) -skip '$(EMULATED_SKIP)' $(EMULATED_PKGS)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) test -exec '$(QEMU_ARM)' -trimpath -short -shuffle=on \
	  -timeout $(EMULATED_TIMEOUT) -skip '$(EMULATED_SKIP)' $(EMULATED_PKGS)

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
	$(GO) test -run='^$$' -fuzz=FuzzVersion -fuzztime=$(FUZZTIME) ./gateway/internal/schema/
	$(GO) test -run='^$$' -fuzz=FuzzVersionFrom -fuzztime=$(FUZZTIME) ./gateway/app/

# bench: micro-benchmarks, the end-to-end ones (BENCHMARKS.md §1-4), then the
# evidence path against MinIO beside mc (§5, about 5 min; --bench installs mc).
bench: | $(BIN)
	@deploy/testenv/install.sh --bench > $(BIN)/.testenv
	$(GO) test -run='^$$' -bench=. -benchmem ./devices/ ./gateway/...
	. ./$(BIN)/.testenv && export VIGIL_MINIO VIGIL_MC && \
	  VIGIL_E2E_BENCH=1 $(GO) test -run='^$$' -bench=E2E -benchtime=1x -timeout 20m ./gateway/e2e/ && \
	  VIGIL_E2E_BENCH=1 VIGIL_BENCH_OUT=$(CURDIR)/$(BIN) $(GO) test -run='^$$' -bench=EvidenceUpload -benchtime=1x -timeout 60m ./gateway/e2e/

# bench-capacity: buttons and cameras one gateway carries before the alarm
# latency or upload targets slip (BENCHMARKS.md §6, deploy/SCALE.md; ~7 min).
bench-capacity: | $(BIN)
	@deploy/testenv/install.sh > $(BIN)/.testenv
	. ./$(BIN)/.testenv && export VIGIL_MINIO && \
	  VIGIL_E2E_BENCH=1 $(GO) test -v -run='^$$' -bench=Capacity -benchtime=1x -timeout 60m ./gateway/e2e/

cross:
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/linux-arm64/ ./cmd/...
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/linux-armv7/ ./cmd/...
	@# vigil-verify is handed to police and defence experts: every desktop platform.
	@set -e; for target in linux/amd64 linux/arm64 windows/amd64 windows/arm64 darwin/amd64 darwin/arm64; do \
	  os=$${target%/*}; arch=$${target#*/}; \
	  echo "vigil-verify $$os/$$arch -> dist/vigil-verify/$$os-$$arch/"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/vigil-verify/$$os-$$arch/ ./cmd/vigil-verify; \
	done

# package: .deb packages for a Raspberry Pi (arm64, armhf) and amd64 into
# dist/packages/: vigil (gateway, vigil-verify, systemd unit, /etc/vigil
# config) and vigil-tools (vigil-sim). nfpm is installed on first use.
# The Debian version is derived from VERSION (deploy/package/build.sh).
package:
	VERSION='$(VERSION)' COMMIT='$(COMMIT)' BUILD_DATE='$(BUILD_DATE)' GO='$(GO)' \
	  deploy/package/build.sh --out dist/packages amd64 arm64 armhf

lint:
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

$(BIN):
	@mkdir -p $(BIN)

clean:
	rm -rf $(BIN) dist

# The two commands a newcomer needs: `make run` and `make test`. Everything else is CMake's.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
PREFIX     ?= /usr/local
DESTDIR    ?=
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 10
MAKEFLAGS  += --no-print-directory

# Debian packages the build and the tests need (bench/ installs the peers it compares with).
DEPS = build-essential cmake pkg-config libuv1-dev libssl-dev openssl libcmocka-dev clang libclang-rt-14-dev \
       netcat-openbsd ncat socat python3 valgrind procps iproute2 util-linux \
       systemd haproxy groff-base man-db binutils curl prometheus prometheus-blackbox-exporter \
       podman runc catatonit containernetworking-plugins iptables python3-kubernetes python3-yaml \
       gcc-aarch64-linux-gnu libc6-dev-arm64-cross libuv1-dev:arm64 libssl-dev:arm64 qemu-user-static

.PHONY: all deps build run test test-unit test-asan test-valgrind fuzz bench soak install clean format \
        image image-arm64 cross-arm64

all: build

deps:
	@scripts/deps.sh $(DEPS)

# $(BUILD) is configured for PREFIX, so GNUInstallDirs chooses the libdir for it (Debian:
# lib/x86_64-linux-gnu under /usr, lib under /usr/local) and yodel.pc names the same one.
# Changing PREFIX rebuilds nothing.
CONFIGURE = cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX)
# What `make install` installs: the program and the two libraries (not the tests and examples).
INSTALLED_TARGETS = yodel yodel_static yodel_shared

build: deps
	@$(CONFIGURE) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/yodel serve

$(ASAN_BUILD)/yodel: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DYODEL_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

test: build
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DYODEL_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@echo "== tests (release build)"
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@echo "== tests under ASan+UBSan"
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)
	@echo "== server under valgrind"
	cd $(BUILD) && YODEL_VALGRIND=1 ctest --output-on-failure -j $(JOBS) -L valgrind
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)

fuzz: deps
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DYODEL_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)
	@FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run-all

bench: build
	bench/compare

soak: build
	tests/soak/run

# The container image (contrib/container): a static build in build-static, then podman;
# scripts/image-runtime then runs it once, or says in one line why no container can run here.
image: deps
	@scripts/image
	@if rt=$$(scripts/image-runtime); then echo "runs here with: podman run --runtime $$rt"; \
	 else echo "make image: built, not run: $$rt"; fi

# The same program for arm64 (Debian's cross compiler), checked under qemu-user.
cross-arm64: deps
	@scripts/image --arch arm64 --binary-only
	qemu-aarch64-static build-static-arm64/yodel --version

image-arm64: cross-arm64
	@scripts/image --arch arm64

install: deps
	@$(CONFIGURE) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target $(INSTALLED_TARGETS)
	DESTDIR=$(DESTDIR) cmake --install $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) build-static build-static-arm64

# splitkernel entry points. Each target installs what it needs first, so on a
# fresh machine `make test` alone sets everything up.
#
#   make            build build/bin/{monitor,pcomponent,mcomponent,scomponent,splitctl}
#   make test       build and run every test (ctest); SAN=1 for the sanitizer build
#   make cluster    start a cluster and open the console (see README)
#   make local      start the local cluster (background) and print its address
#   make local-down stop it
#   make clean

SAN ?=
ifeq ($(SAN),1)
BUILD ?= build-san
CMAKE_FLAGS += -DSK_SANITIZE=ON
else
BUILD ?= build
endif
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)

.PHONY: all deps configure test cluster local local-down clean

all: deps configure
	cmake --build $(BUILD) -j $(JOBS)

deps:
	@scripts/install-deps --check >/dev/null 2>&1 || scripts/install-deps

configure: deps
	@test -f $(BUILD)/build.ninja || cmake -S . -B $(BUILD) -G Ninja \
	  -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

test: all
	cd $(BUILD) && ctest --output-on-failure --timeout 600 $(CTEST_ARGS)

# Until the QEMU cluster exists, `make cluster` starts the local cluster and
# opens the console on it.
cluster: all
	@eval "$$(scripts/local-cluster up | tail -n 1)" && exec $(BUILD)/bin/splitctl --monitor "$$SPLIT_MONITOR"

local: all
	scripts/local-cluster up

local-down:
	scripts/local-cluster down

clean:
	rm -rf build build-san

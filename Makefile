# splitkernel entry points. Each target installs what it needs first, so on a
# fresh machine `make test` alone sets everything up.
#
#   make            build build/bin/{monitor,pcomponent,mcomponent,scomponent,splitctl}
#   make test       build and run every test (ctest); SAN=1 for the sanitizer build
#   make cluster    boot the QEMU cluster (one VM per component) and open the
#                   console on it; PCOMPONENTS=N MCOMPONENTS=N SCOMPONENTS=N
#                   FABRIC=verbs|tcp override qemu-configs/cluster.conf (verbs)
#   make cluster-down  stop the QEMU cluster's VMs
#   make local      start the local cluster (background) and print its address
#   make local-console  start the local cluster and open the console on it
#   make local-down stop it
#   make bench      benchmarks, native vs vNode on a local cluster of their own
#                   (under 20 min): bench/results.{json,md,svg}; BENCH_ARGS for bench/run.py
#   make bench-quick  smaller sizes, fewer cases (under 3 min): bench/results-quick.*
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

.PHONY: all deps configure test cluster cluster-down local local-console local-down bench bench-quick clean

all: deps configure
	cmake --build $(BUILD) -j $(JOBS)

deps:
	@scripts/install-deps --check >/dev/null 2>&1 || scripts/install-deps

configure: deps
	@test -f $(BUILD)/build.ninja || cmake -S . -B $(BUILD) -G Ninja \
	  -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

test: all
	cd $(BUILD) && ctest --output-on-failure --timeout 600 $(CTEST_ARGS)

# The QEMU cluster: scripts/qemu-cluster builds the VM images when they are
# out of date, boots the VMs in the background and prints the monitor's
# address last; the console opens on it (`quit` leaves it, the VMs keep
# running until `make cluster-down`).
QEMU_CLUSTER_FLAGS = $(if $(PCOMPONENTS),--pcomponents $(PCOMPONENTS)) \
  $(if $(MCOMPONENTS),--mcomponents $(MCOMPONENTS)) \
  $(if $(SCOMPONENTS),--scomponents $(SCOMPONENTS)) \
  $(if $(FABRIC),--fabric $(FABRIC))

cluster: all
	@BUILD=$(BUILD) scripts/qemu-cluster up $(QEMU_CLUSTER_FLAGS) | tee $(BUILD)/qemu-cluster.up \
	  && monitor=$$(tail -n 1 $(BUILD)/qemu-cluster.up | sed -n 's/^SPLIT_MONITOR=//p') \
	  && test -n "$$monitor" \
	  && echo "cluster ready: monitor at $$monitor (SPLIT_MONITOR=$$monitor; make cluster-down stops it)" \
	  && exec $(BUILD)/bin/splitctl --monitor "$$monitor"

cluster-down:
	BUILD=$(BUILD) scripts/qemu-cluster down

local-console: all
	@eval "$$(scripts/local-cluster up | tail -n 1)" && exec $(BUILD)/bin/splitctl --monitor "$$SPLIT_MONITOR"

local: all
	scripts/local-cluster up

local-down:
	scripts/local-cluster down

bench: all
	python3 bench/run.py --build $(BUILD) $(BENCH_ARGS)

bench-quick: all
	python3 bench/run.py --build $(BUILD) --quick $(BENCH_ARGS)

clean:
	rm -rf build build-san

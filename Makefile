# seL4 memory-management root task. The two commands a newcomer needs:
#   make run    build the kernel and the root task, boot QEMU, print the results
#   make test   every test: formatting, clippy, host unit/property tests, QEMU tests
# Others:
#   make bench  benchmarks on the release kernel under -icount (build/bench/latest.json)
#   make model-soak  the manager's host model test at 1 000 000 audited executions (MM_MODEL_SEED=...)
#   make kernel / make kernels   build one (CONFIG=...) / every kernel configuration
#   make deps   check (and, as root, install) what the build needs
# CONFIG selects the kernel configuration (kernel/configs/*.conf) for run and kernel.

CONFIG ?= debug-up
CARGO ?= cargo
ROOT := $(abspath .)
CONFIGS := $(basename $(notdir $(wildcard kernel/configs/*.conf)))
# Workspace-level cargo commands (clippy, host unit tests) need a kernel
# build to generate the bindings from: the debug UP kernel (and, for the root
# task's code behind the batched extension, the batched debug UP kernel).
LINT_KERNEL := $(ROOT)/build/kernel/debug-up
# Crates that only build for the root task (no_std binary, own panic handler).
# They are checked apart from the host crates: cargo unifies features across
# everything it builds at once, and the host crates' test dependencies turn on
# `std` features of shared dependencies.
TARGET_ONLY := root-task sel4-root-task
EXCLUDE_TARGET_ONLY := $(foreach c,$(TARGET_ONLY),--exclude $(c))

.PHONY: run test bench deps kernel kernels lint unit qemu-tests model-soak clean

deps:
	@tools/deps.sh

kernel: deps
	@python3 kernel/build.py $(CONFIG)

kernels: deps
	@for c in $(CONFIGS); do python3 kernel/build.py $$c || exit 1; done

run: deps
	@$(CARGO) run --quiet -p sel4-tests --bin sel4-boot -- run --config $(CONFIG)

bench: deps
	@$(CARGO) run --quiet -p sel4-tests --bin sel4-boot -- bench

test: deps lint unit qemu-tests

lint:
	@python3 kernel/build.py debug-up
	$(CARGO) fmt --all --check
	SEL4_KERNEL_BUILD_DIR=$(LINT_KERNEL) $(CARGO) clippy --workspace $(EXCLUDE_TARGET_ONLY) --all-targets -- -D warnings
	SEL4_KERNEL_BUILD_DIR=$(LINT_KERNEL) $(CARGO) clippy $(foreach c,$(TARGET_ONLY),-p $(c)) -- -D warnings
	@python3 kernel/build.py debug-up-batched
	SEL4_KERNEL_BUILD_DIR=$(LINT_KERNEL)-batched $(CARGO) clippy $(foreach c,$(TARGET_ONLY),-p $(c)) -- -D warnings

# Host tests of every crate except the harness (whose tests boot QEMU).
unit:
	@python3 kernel/build.py debug-up
	SEL4_KERNEL_BUILD_DIR=$(LINT_KERNEL) $(CARGO) test --workspace $(EXCLUDE_TARGET_ONLY) --exclude sel4-tests

# The memory manager against the kernel model with a failure at every
# invocation position: 500 000 audited executions per kernel model (stock,
# batched), ten times what `make unit` runs. About ten minutes here.
model-soak:
	@python3 kernel/build.py debug-up
	SEL4_KERNEL_BUILD_DIR=$(LINT_KERNEL) MM_MODEL_STEPS=$${MM_MODEL_STEPS:-500000} $(CARGO) test -p memory-manager --test model -- --nocapture books_equal

# Tests that build images and boot them in QEMU.
qemu-tests:
	$(CARGO) test -p sel4-tests -- --test-threads=2

clean:
	rm -rf build target

# Datacamp build and test entry points. See README.md.
SHELL := /bin/bash
CARGO ?= cargo
LEIN ?= lein
# Debian's offline Maven repo; users with Clojars set LEIN_PROFILE= (empty).
LEIN_PROFILE ?= +debian
comma := ,
LEIN_RUN := $(LEIN) $(if $(LEIN_PROFILE),with-profile $(LEIN_PROFILE))
# Cargo's output (CI points CARGO_TARGET_DIR at a cache that outlives the clone).
CARGO_OUT := $(or $(CARGO_TARGET_DIR),target)
NATIVE_DIR := target/native-resources/native/linux-x86_64
NATIVE_LIB := $(NATIVE_DIR)/libdatacamp.so
RUST_SOURCES := $(shell find src -name '*.rs') Cargo.toml Cargo.lock build.rs
# The operator CLI (src/bin/datacamp.rs): `make cli`, or `cargo install --path .`.
CLI := $(CARGO_OUT)/release/datacamp
JAVA_TEST_OUT := target/java-test
# Each test command runs with a temporary root of its own (TMPDIR, java.io.tmpdir), removed
# afterwards together with whatever killed child processes left in it.
WITH_TMP := scripts/with-temp-root

.PHONY: setup setup-s3 native cli install jar jar-classes repl lint test test-rust test-java \
        test-clj test-repl test-jar check-exports fault-proxy demo bench bench-smoke bench-defaults \
        bench-continuous \
        clean

# Build and demo prerequisites (no S3 test server); `setup-s3` adds moto for the S3 tests.
setup:
	@bin/setup

setup-s3:
	@bin/setup --s3

# The JNI library the jar bundles (rebuilt when a Rust source changed). The bundled copy
# drops debug info (the release build keeps it for profiling).
native: $(NATIVE_LIB)

$(NATIVE_LIB): $(RUST_SOURCES)
	$(CARGO) build --release --lib
	mkdir -p $(NATIVE_DIR)
	objcopy --strip-debug $(CARGO_OUT)/release/libdatacamp.so $@

cli:
	$(CARGO) build --release --bin datacamp
	@echo "built $(CLI)"

# Puts `datacamp` into ~/.cargo/bin.
install:
	$(CARGO) install --locked --path .

# The library jar (target/jvm/…/datacamp-*.jar) with the native library inside; lein's prep
# step builds the library too (tasks/leiningen/native_lib.clj), or fails saying why.
jar: native
	$(LEIN_RUN) jar

# Java classes + native library where deps.edn expects them.
jar-classes: native
	mkdir -p target/jvm/classes
	javac --release 17 -cp /usr/share/java/clojure.jar:$$(ls ~/.m2/repository/org/clojure/clojure/1.11.1/clojure-1.11.1.jar 2>/dev/null) -d target/jvm/classes java/datacamp/jni/*.java

# A REPL that works offline (clojure.main; `lein repl` needs nREPL from Clojars), in
# datacamp.repl: the API, the Datahike stand-in and fixture connections one call away.
repl: native
	@$(LEIN_RUN) trampoline run -m clojure.main -e "(require 'datacamp.repl) (in-ns 'datacamp.repl) (datacamp.repl/banner)" -r

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# The library exports exactly Native.java's entry points (and none of the CLI's code).
check-exports: native
	scripts/check-exports $(NATIVE_LIB)

test-rust:
	$(WITH_TMP) $(CARGO) test --release

test-java: native
	rm -rf $(JAVA_TEST_OUT) && mkdir -p $(JAVA_TEST_OUT)
	javac -Xlint:all -Werror -cp /usr/share/java/clojure.jar -d $(JAVA_TEST_OUT) java/datacamp/jni/*.java java-test/datacamp/jni/*.java
	$(WITH_TMP) sh -c 'exec java -Djava.io.tmpdir="$$TMPDIR" -cp /usr/share/java/clojure.jar:$(JAVA_TEST_OUT) datacamp.jni.DatomBatchTest'

# The fault proxy program the Clojure S3 tests start (examples/fault_proxy.rs).
fault-proxy:
	$(CARGO) build --release --example fault_proxy

# The Clojure suite; datacamp.cli-test runs the CLI binary against the API.
test-clj: native cli fault-proxy
	DATACAMP_CLI=$(CLI) $(WITH_TMP) $(LEIN_RUN) test

test-repl: native
	$(WITH_TMP) scripts/check-repl

# `make jar` on a clean copy of the tree, the jar used from an unrelated project.
test-jar:
	$(WITH_TMP) scripts/check-jar

# Every test: Rust unit + integration tests, the Java harness, the Clojure suite, the REPL
# and jar routes, the benchmark harness.
test: setup-s3 lint check-exports test-rust test-java test-clj test-repl test-jar bench-smoke
	@echo "all test suites passed"

# The main job: back up a sample database to ./backups, list it, verify it.
demo: setup native
	$(LEIN_RUN) run -m datacamp.demo ./backups

# Benchmarks (see BENCHMARKS.md): 1M and 5M synthetic datoms and the large fixture, each
# measurement in a fresh JVM; then the restore of ~2,000 small chunks from loopback S3, with
# and without 50 ms of latency per request (examples/s3_restore_bench.rs, about 5 minutes;
# S3_RESTORE_BENCH_ARGS=--no-before skips the slowest rows); writes BENCHMARKS.md.
# BENCH_20M=1 adds 20M datoms; BENCH_ARGS passes more options (e.g. --runs 3 --stages).
BENCH_LEIN := $(LEIN) with-profile $(if $(LEIN_PROFILE),$(LEIN_PROFILE)$(comma))+bench
bench: native
	$(BENCH_LEIN) run -m datacamp.bench $(if $(BENCH_20M),--20m) $(BENCH_ARGS)
	$(CARGO) run --release --example s3_restore_bench -- --write BENCHMARKS.md $(S3_RESTORE_BENCH_ARGS)

# Continuous backup (clj/bench/datacamp/bench/continuous.clj, about 8 minutes): transaction
# throughput with the capture off and on, lag commit -> durable at 200 tx/s for 60 s
# (directory and loopback S3), memory; writes its section of BENCHMARKS.md.
# BENCH_CONTINUOUS_ARGS passes options (e.g. --runs 5, --no-s3, --smoke).
bench-continuous: native
	$(BENCH_LEIN) run -m datacamp.bench.continuous $(BENCH_CONTINUOUS_ARGS)

# The defaults comparison (chunk size and parallelism: ours vs the original's), on the
# synthetic databases; prints its table (BENCHMARKS.md quotes it).
bench-defaults: native
	$(BENCH_LEIN) run -m datacamp.bench --defaults $(BENCH_ARGS)

# A tiny run of every benchmark measurement (20k datoms + a small fixture): no timing
# targets, fails if a run errors or a backup does not verify. Part of `make test`.
bench-smoke: native
	$(WITH_TMP) $(BENCH_LEIN) run -m datacamp.bench --smoke

clean:
	rm -rf target

# Datacamp build and test entry points. See README.md.
SHELL := /bin/bash
CARGO ?= cargo
LEIN ?= lein
# Debian's offline Maven repo; users with Clojars set LEIN_PROFILE= (empty).
LEIN_PROFILE ?= +debian
# Cargo's output (CI points CARGO_TARGET_DIR at a cache that outlives the clone).
CARGO_OUT := $(or $(CARGO_TARGET_DIR),target)
NATIVE_DIR := target/native-resources/native/linux-x86_64
JAVA_TEST_OUT := target/java-test

.PHONY: jar-classes setup native fault-proxy test test-rust test-java test-clj demo bench bench-smoke bench-continuous clean lint

setup:
	@bin/setup

native:
	$(CARGO) build --release --lib
	mkdir -p $(NATIVE_DIR)
	# The bundled copy drops debug info (the release build keeps it for profiling).
	objcopy --strip-debug $(CARGO_OUT)/release/libdatacamp.so $(NATIVE_DIR)/libdatacamp.so

# Java classes + native library where deps.edn expects them.
jar-classes: native
	mkdir -p target/jvm/classes
	javac --release 17 -cp /usr/share/java/clojure.jar:$$(ls ~/.m2/repository/org/clojure/clojure/1.11.1/clojure-1.11.1.jar 2>/dev/null) -d target/jvm/classes java/datacamp/jni/*.java

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

test-rust:
	$(CARGO) test --release

test-java: native
	rm -rf $(JAVA_TEST_OUT) && mkdir -p $(JAVA_TEST_OUT)
	javac -Xlint:all -Werror -cp /usr/share/java/clojure.jar -d $(JAVA_TEST_OUT) java/datacamp/jni/*.java java-test/datacamp/jni/*.java
	java -cp /usr/share/java/clojure.jar:$(JAVA_TEST_OUT) datacamp.jni.DatomBatchTest

# The fault proxy program the Clojure S3 tests start (examples/fault_proxy.rs).
fault-proxy:
	$(CARGO) build --release --example fault_proxy

test-clj: native fault-proxy
	$(LEIN) with-profile $(LEIN_PROFILE) test

# Every test: Rust unit + integration tests, the Java harness, the Clojure suite.
test: setup lint test-rust test-java test-clj bench-smoke
	@echo "all test suites passed"

# The main job: back up a sample database to ./backups, list it, verify it.
demo: setup native
	$(LEIN) with-profile $(LEIN_PROFILE) run -m datacamp.demo ./backups

# Benchmarks (see BENCHMARKS.md): 1M and 5M synthetic datoms and the large fixture, each
# measurement in a fresh JVM; then the restore of ~2,000 small chunks from loopback S3, with
# and without 50 ms of latency per request (examples/s3_restore_bench.rs, about 5 minutes;
# S3_RESTORE_BENCH_ARGS=--no-before skips the slowest rows); writes BENCHMARKS.md.
# BENCH_20M=1 adds 20M datoms; BENCH_ARGS passes more options (e.g. --runs 3 --stages).
comma := ,
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

# A tiny run of every benchmark measurement (20k datoms + a small fixture): no timing
# targets, fails if a run errors or a backup does not verify. Part of `make test`.
bench-smoke: native
	$(BENCH_LEIN) run -m datacamp.bench --smoke

clean:
	rm -rf target

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

.PHONY: jar-classes setup native test test-rust test-java test-clj demo bench-smoke clean lint

setup:
	@bin/setup

native:
	$(CARGO) build --release --lib
	mkdir -p $(NATIVE_DIR)
	cp $(CARGO_OUT)/release/libdatacamp.so $(NATIVE_DIR)/libdatacamp.so

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
	javac -X# Java classes + native library where deps.edn expects them.
jar-classes: native
	mkdir -p target/jvm/classes
	javac --release 17 -cp /usr/share/java/clojure.jar:$$(ls ~/.m2/repository/org/clojure/clojure/1.11.1/clojure-1.11.1.jar 2>/dev/null) -d target/jvm/classes java/datacamp/jni/*.java

lint:all -Werror -cp /usr/share/java/clojure.jar -d $(JAVA_TEST_OUT) java/datacamp/jni/*.java java-test/datacamp/jni/*.java
	java -cp /usr/share/java/clojure.jar:$(JAVA_TEST_OUT) datacamp.jni.DatomBatchTest

test-clj: native
	$(LEIN) with-profile $(LEIN_PROFILE) test

# Every test: Rust unit + integration tests, the Java harness, the Clojure suite.
test: setup lint test-rust test-java test-clj
	@echo "all test suites passed"

# The main job: back up a sample database to ./backups, list it, verify it.
demo: setup native
	$(LEIN) with-profile $(LEIN_PROFILE) run -m datacamp.demo ./backups

clean:
	rm -rf target

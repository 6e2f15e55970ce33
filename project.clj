(defproject org.replikativ/datacamp "0.1.0-SNAPSHOT"
  :description "Backup, restore and continuous protection for Datahike databases, with a Rust native core."
  :url "https://github.com/alekcz/datacamp"
  :license {:name "Eclipse Public License 2.0" :url "https://www.eclipse.org/legal/epl-2.0/"}
  :dependencies [[org.clojure/clojure "1.11.1"]]
  :source-paths ["clj/src"]
  :java-source-paths ["java"]
  :javac-options ["--release" "17"]
  :resource-paths ["target/native-resources"]
  :test-paths ["clj/test"]
  :target-path "target/jvm/%s"
  :compile-path "%s/classes"
  ;; Build the native library first (tasks/leiningen/native_lib.clj, via .lein-classpath):
  ;; `lein jar` never packs a jar without it, and fails loudly when it cannot be built.
  :prep-tasks ["native-lib" "javac" "compile"]
  ;; Temp files go where TMPDIR says (scripts/with-temp-root gives each test run its own).
  :jvm-opts [~(str "-Djava.io.tmpdir=" (or (System/getenv "TMPDIR") (System/getProperty "java.io.tmpdir")))]
  ;; *warn-on-reflection* is set in every namespace (checked by datacamp.reflection-test),
  ;; not project-wide, which would also flag lein's own injected code on every `lein run`.
  :profiles {:dev {:source-paths ["clj/test-support" "clj/demo"]
                   :dependencies [[org.clojure/data.fressian "1.0.0"]]}
             ;; Real Datahike for users who reach Clojars: `lein with-profile -dev,+datahike run -m datacamp.demo`.
             :datahike {:dependencies [[io.replikativ/datahike "0.6.1613"]]
                        :source-paths ["clj/demo"]}
             ;; Benchmarks (`make bench`, `make bench-smoke`; see BENCHMARKS.md): the harness in
             ;; clj/bench and data.fressian for the pure-JVM baseline. AOT only so that each
             ;; measurement's fresh JVM starts fast (classes go to target/jvm/…+bench).
             :bench {:source-paths ["clj/bench"]
                     :java-source-paths ["clj/bench/java"]
                     :dependencies [[org.clojure/data.fressian "1.0.0"]]
                     :aot [datacamp.bench.run]}
             ;; Offline build from Debian's Clojure packages (the Makefile uses it): no Clojars needed.
             :debian {:local-repo "/usr/share/maven-repo" :offline? true}})

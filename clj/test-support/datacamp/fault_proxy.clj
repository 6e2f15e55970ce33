(ns datacamp.fault-proxy
  "The S3 fault proxy of the Rust tests (tests/support/proxy.rs) for the JVM tests: a
  process (`examples/fault_proxy.rs`, built by `make test-clj`) between the S3 client and
  the test server, whose port can be closed (connections refused, as when the server is
  down) and opened again."
  (:require [clojure.java.io :as io]
            [clojure.string :as str]
            [datacamp.s3-server :as s3])
  (:import [java.io BufferedReader InputStreamReader OutputStreamWriter Writer]))

(set! *warn-on-reflection* true)

(defn- binary
  "The proxy binary: under CARGO_TARGET_DIR (CI) or target/."
  ^java.io.File []
  (let [f (io/file (or (System/getenv "CARGO_TARGET_DIR") "target") "release/examples/fault_proxy")]
    (when-not (.canExecute f)
      (throw (ex-info (str "the fault proxy " f " is missing: build it with "
                           "`cargo build --release --example fault_proxy` (make test-clj does)")
                      {})))
    f))

(defn start!
  "Start a proxy in front of the S3 test server; return `{:endpoint … :process …}`."
  []
  (let [upstream (str/replace (s3/start!) #"^http://" "")
        p (.start (ProcessBuilder. ^"[Ljava.lang.String;"
                                   (into-array String [(str (binary)) upstream])))
        in (BufferedReader. (InputStreamReader. (.getInputStream p)))
        line (.readLine in)]
    (when-not (and line (str/starts-with? line "endpoint "))
      (.destroy p)
      (throw (ex-info (str "the fault proxy did not start: " line) {})))
    {:endpoint (subs line (count "endpoint "))
     :process p
     :in in
     :out (OutputStreamWriter. (.getOutputStream p))}))

(defn- command! [{:keys [^BufferedReader in ^Writer out]} cmd]
  (locking out
    (.write out (str cmd "\n"))
    (.flush out)
    (.readLine in)))

(defn refuse!
  "Close the proxy's port: connections are refused until `accept!`."
  [proxy]
  (command! proxy "refuse"))

(defn accept!
  "Open the proxy's port again."
  [proxy]
  (command! proxy "accept"))

(defn stop!
  "Stop the proxy process."
  [{:keys [^Process process ^Writer out]}]
  (try (.close out) (catch Exception _ nil))
  (when-not (.waitFor process 5 java.util.concurrent.TimeUnit/SECONDS)
    (.destroyForcibly process)))

(defn target
  "An S3 target for `bucket` (created on the test server) through `proxy`."
  [proxy bucket]
  (s3/create-bucket! bucket)
  (assoc (s3/target bucket) :endpoint (:endpoint proxy)))

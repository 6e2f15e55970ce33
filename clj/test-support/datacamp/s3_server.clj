(ns datacamp.s3-server
  "A real S3 server (moto, scripts/s3-test-server) for the Clojure tests and the benchmark
  harness, and plain HTTP access to its objects (moto does not check signatures) for reading
  back, damaging and deleting what a backup wrote."
  (:require [clojure.java.io :as io]
            [clojure.string :as str])
  (:import [java.io BufferedReader InputStreamReader]
           [java.net HttpURLConnection URL]))

(set! *warn-on-reflection* true)

(defonce ^:private server (atom nil))

(defn start!
  "Start moto once for this JVM (it stops when the JVM exits: --until-eof); return the
  endpoint URL. Fails loudly when the venv is missing (bin/setup creates it)."
  []
  (or (:endpoint @server)
      (let [pb (doto (ProcessBuilder. ^"[Ljava.lang.String;" (into-array String ["scripts/s3-test-server" "--until-eof"]))
                 (.redirectError java.lang.ProcessBuilder$Redirect/INHERIT))
            p (.start pb)
            rdr (BufferedReader. (InputStreamReader. (.getInputStream p)))
            line (.readLine rdr)]
        (when-not (and line (str/starts-with? line "endpoint "))
          (throw (ex-info (str "the S3 test server did not start (run bin/setup): " line) {})))
        (let [endpoint (subs line (count "endpoint "))]
          (reset! server {:process p :endpoint endpoint})
          endpoint))))

(defn pid
  "The process id of the running server (to read its CPU time), or nil before `start!`."
  []
  (some-> ^Process (:process @server) .pid))

(defn- request
  "Send an HTTP request to moto; return [status body-bytes]."
  [method ^String url ^bytes body]
  (let [^HttpURLConnection c (.openConnection (URL. url))]
    (.setRequestMethod c method)
    ;; moto does not verify signatures, but treats requests without credentials as anonymous
    ;; (private objects answer 403): name the test access key.
    (.setRequestProperty c "Authorization" (str "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, "
                                               "SignedHeaders=host, Signature=0"))
    (when body
      (.setDoOutput c true)
      (with-open [out (.getOutputStream c)] (.write out body)))
    (let [status (.getResponseCode c)
          in (if (< status 400) (.getInputStream c) (.getErrorStream c))]
      [status (if in (with-open [in in] (.readAllBytes in)) (byte-array 0))])))

(defn create-bucket!
  "Create `bucket` on the server."
  [bucket]
  (let [[status] (request "PUT" (str (start!) "/" bucket) nil)]
    (assert (< status 300) (str "create bucket " bucket ": HTTP " status))))

(defn target
  "An S3 target map for `bucket` on the test server."
  [bucket]
  {:bucket bucket :region "us-east-1" :endpoint (start!) :path-style-access? true
   :access-key-id "test" :secret-access-key "test" :prefix "datahike-backups/"})

(defn- object-url [t key]
  (str (:endpoint t) "/" (:bucket t) "/" (:prefix t) key))

(defn get-object
  "The bytes of `key` (relative to the target's prefix)."
  ^bytes [t key]
  (let [[status body] (request "GET" (object-url t key) nil)]
    (assert (= 200 status) (str "GET " key ": HTTP " status))
    body))

(defn put-object!
  "Overwrite `key` with `bytes`."
  [t key ^bytes bytes]
  (let [[status] (request "PUT" (object-url t key) bytes)]
    (assert (< status 300) (str "PUT " key ": HTTP " status))))

(defn- enc ^String [^String s] (java.net.URLEncoder/encode s "UTF-8"))

(defn list-keys
  "Every key under `prefix` (both relative to the target's prefix), following continuation
  tokens (ListObjectsV2 answers at most 1,000 keys at a time)."
  [t prefix]
  (let [full (str (:prefix t) prefix)]
    (loop [token nil acc []]
      (let [url (str (:endpoint t) "/" (:bucket t) "?list-type=2&prefix=" (enc full)
                     (when token (str "&continuation-token=" (enc token))))
            [status ^bytes body] (request "GET" url nil)
            _ (assert (= 200 status) (str "list " full ": HTTP " status))
            xml (String. body "UTF-8")
            acc (into acc (map #(subs (second %) (count (:prefix t))))
                      (re-seq #"<Key>([^<]*)</Key>" xml))]
        (if-let [[_ next] (re-find #"<NextContinuationToken>([^<]*)</NextContinuationToken>" xml)]
          (recur next acc)
          acc)))))

(defn delete-object!
  "Delete `key`."
  [t key]
  (request "DELETE" (object-url t key) nil))

(defn- fault-proxy-binary
  "The fault proxy program (`examples/fault_proxy.rs`, built by `make test-clj`)."
  ^java.io.File []
  (let [f (io/file (or (System/getenv "CARGO_TARGET_DIR") "target") "release" "examples" "fault_proxy")]
    (when-not (.canExecute f)
      (throw (ex-info (str "no fault proxy at " f ": run `cargo build --release --example fault_proxy`"
                           " (make test-clj does)") {})))
    f))

(defn start-fault-proxy!
  "Start the fault proxy in front of the test server with `args` (e.g. `[\"--lose\" \"PUT\"
  \"/lock-0.edn\" \"1\"]`: the first PUT of that key is executed and its reply lost); return
  `{:endpoint … :process …}`. Stop it with `stop-fault-proxy!`."
  [args]
  (let [upstream (str/replace (start!) #"^http://" "")
        p (.start (doto (ProcessBuilder. ^java.util.List (into [(str (fault-proxy-binary)) upstream] args))
                    (.redirectError java.lang.ProcessBuilder$Redirect/INHERIT)))
        rdr (BufferedReader. (InputStreamReader. (.getInputStream p)))
        line (.readLine rdr)]
    (when-not (and line (str/starts-with? line "endpoint "))
      (.destroy p)
      (throw (ex-info (str "the fault proxy did not start: " line) {})))
    {:endpoint (subs line (count "endpoint ")) :process p :reader rdr}))

(defn- fault-proxy-command!
  "Send one command line to a fault proxy; return its answer line."
  [{:keys [^Process process ^BufferedReader reader]} cmd]
  (locking process
    (let [out (.getOutputStream process)]
      (.write out (.getBytes (str cmd "\n") "UTF-8"))
      (.flush out))
    (.readLine reader)))

(defn refuse-connections!
  "Close the fault proxy's port: connections are refused (as when the server is down)
  until `accept-connections!`."
  [proxy]
  (fault-proxy-command! proxy "refuse"))

(defn accept-connections!
  "Open the fault proxy's port again (the same port)."
  [proxy]
  (fault-proxy-command! proxy "accept"))

(defn stop-fault-proxy!
  "Stop a fault proxy; return how many replies it withheld."
  [{:keys [^Process process ^BufferedReader reader]}]
  (.close (.getOutputStream process))
  (let [line (.readLine reader)]
    (when-not (.waitFor process 10 java.util.concurrent.TimeUnit/SECONDS)
      (.destroyForcibly process))
    (some-> line (str/replace #"^lost " "") parse-long)))

(ns datacamp.hostile-child
  "The child JVM of `datacamp.hostile-test`: runs the crash-class cases (deep folders,
  decompression and cache bombs, huge metadata, deep nesting) with a small stack and a
  memory cap, one case at a time, and appends each outcome to a results file as soon as
  it is known — so a crash shows as the case that never reported and a non-zero exit.

  Run as `clojure.main -m datacamp.hostile-child cases.edn results.edn`: `cases.edn` holds
  a vector of `{:id … :op sym :args […] :stack-kb n}`; each op runs on a new thread with
  that stack (the JVM's default, `-Xss`, otherwise)."
  (:require [clojure.edn :as edn]
            [clojure.java.io :as io]
            [datacamp.core :as backup]
            [datacamp.fixtures :as fx]
            [datahike.api :as d])
  (:import [java.io Writer]))

(set! *warn-on-reflection* true)

(defn- restored-datoms
  "The datoms of `conn`'s database."
  [conn]
  (count (d/datoms @conn :eavt)))

(defn restore-into-empty
  "Restore backup `id` from `target` into a new empty database with `config` (`:dir` or
  `:s3` restore function); return the result, or rethrow with the target's datom count."
  [kind target id db-id config & opts]
  (let [conn (fx/empty-conn config)
        f (if (= kind :s3) backup/restore-from-s3 backup/restore-from-directory)]
    (try
      (assoc (apply f conn target id :database-id db-id opts) ::target-datoms (restored-datoms conn))
      (catch clojure.lang.ExceptionInfo e
        (throw (ex-info (.getMessage e) (assoc (ex-data e) ::target-datoms (restored-datoms conn)) e)))
      (finally (fx/dispose! conn)))))

(defn resume-fixture
  "Resume backup `id` of fixture `name` (its database) under `target`."
  [target id db-id name]
  (backup/resume-backup (fx/fixture-conn name) target id :database-id db-id))

(defn list-dir
  "The names in folder `path`."
  [path]
  (vec (.list (io/file path))))

(defn- outcome
  "What running `op` gave: its result, or the ex-info's data and message length."
  [op args]
  (try
    {:result (apply (requiring-resolve op) args)}
    (catch clojure.lang.ExceptionInfo e
      {:error (:datacamp/error (ex-data e))
       :data (dissoc (ex-data e) :datacamp/op)
       :message-length (count (.getMessage e))
       :message (subs (.getMessage e) 0 (min 400 (count (.getMessage e))))})
    (catch Throwable e
      {:raw (str (class e)) :message (str (.getMessage e))})))

(defn- run-case
  "Run one case on its own thread with a `stack-kb` stack; return its outcome."
  [{:keys [op args stack-kb]}]
  (let [out (promise)
        t (Thread. nil #(deliver out (outcome op args)) "hostile-case" (* 1024 (long (or stack-kb 0))))]
    (.start t)
    (.join t)
    (deref out 0 {:raw "the case thread died without an outcome"})))

(defn -main
  "Run every case of `cases-file`, appending `{:id … :outcome …}` lines to `results-file`,
  then `{:done true}`."
  [cases-file results-file]
  (let [cases (edn/read-string (slurp cases-file))]
    (with-open [^Writer w (io/writer results-file :append true)]
      (doseq [c cases]
        (let [o (run-case c)]
          (.write w (str (pr-str {:id (:id c) :outcome o}) "\n"))
          (.flush w)))
      (.write w (str (pr-str {:done true}) "\n")))
    (shutdown-agents)
    (System/exit 0)))

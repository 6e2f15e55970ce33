(ns datacamp.cli-test
  "The operator CLI (`datacamp`, the Rust binary, no JVM) agrees with the Clojure API on
  the same backups, on both backends: its `--edn` output of `list` and `verify` equals what
  `list-backups` and `verify-backup` return, and its exit codes say the same (0 intact, 1
  problems). The binary is the one `make cli` builds (`DATACAMP_CLI`, else
  `target/release/datacamp`)."
  (:require [clojure.edn :as edn]
            [clojure.java.io :as io]
            [clojure.string :as str]
            [clojure.test :refer [is testing]]
            [datacamp.backends :as bk :refer [defbackend-test]]
            [datacamp.core :as backup]
            [datacamp.fixtures :as fx])
  (:import [java.io File]
           [java.util List]))

(set! *warn-on-reflection* true)

(defn- cli-binary
  "The built `datacamp` binary; a test failure (not a skip) when it is missing."
  ^String []
  (let [f (io/file (or (System/getenv "DATACAMP_CLI")
                       (str (or (System/getenv "CARGO_TARGET_DIR") (str (fx/project-dir) "/target"))
                            "/release/datacamp")))]
    (when-not (.canExecute f)
      (throw (ex-info (str "no datacamp binary at " f ": build it with `make cli`") {:file (str f)})))
    (str f)))

(defn- target-args
  "The CLI arguments and environment for target `t` (credentials only in the environment)."
  [t]
  (if (:bucket t)
    {:args ["--target" (str "s3://" (:bucket t) "/" (:prefix t)) "--endpoint" (:endpoint t)
            "--region" (:region t)]
     :env {"AWS_ACCESS_KEY_ID" (:access-key-id t) "AWS_SECRET_ACCESS_KEY" (:secret-access-key t)}}
    {:args ["--target" (:path t)] :env {}}))

(defn- run-cli
  "Run the binary on target `t` with `args`; return `{:exit :out :err}`."
  [t & args]
  (let [{targs :args env :env} (target-args t)
        pb (ProcessBuilder. ^List (vec (concat [(cli-binary)] targs args)))
        penv (.environment pb)]
    (doseq [k (vec (keys penv)) :when (str/starts-with? k "AWS_")]
      (.remove penv k))
    (.put penv "AWS_EC2_METADATA_DISABLED" "true")
    (.put penv "AWS_CONFIG_FILE" "/nonexistent/aws-config")
    (.put penv "AWS_SHARED_CREDENTIALS_FILE" "/nonexistent/aws-credentials")
    (doseq [[k v] env] (.put penv k v))
    (let [err (File/createTempFile "datacamp-cli-err" ".txt")
          _ (.redirectError pb err)
          p (.start pb)
          out (slurp (.getInputStream p))
          exit (.waitFor p)]
      (try {:exit exit :out out :err (slurp err)}
           (finally (.delete err))))))

(defn- with-ids
  "The CLI's EDN as the API returns it: backup ids that are UUIDs parsed (the keys the
  API's own `with-ids` parses)."
  [x]
  (let [parse #(or (and (string? %) (parse-uuid %)) %)
        one (fn [m]
              (cond-> m
                (:backup-id m) (update :backup-id parse)
                (:parent m) (update :parent parse)
                (:base m) (update :base parse)
                (:chain m) (update :chain #(mapv parse %))
                (:links m) (update :links #(mapv parse %))))]
    (if (vector? x) (mapv one x) (one x))))

(defn- cli-edn [t & args]
  (let [{:keys [exit out err]} (apply run-cli t "--edn" args)]
    {:exit exit :value (with-ids (edn/read-string out)) :err err}))

(defbackend-test cli-list-and-verify-agree-with-the-api [b]
  (let [t (bk/fresh-target b)
        conn (fx/fixture-conn "kitchen-sink")
        good (bk/backup b conn t :database-id "ks" :chunk-size 20000)
        broken (bk/backup b conn t :database-id "ks" :chunk-size 20000)
        damaged (bk/backup b conn t :database-id "ks" :chunk-size 20000)
        [gid bid did] (map (comp str :backup-id) [good broken damaged])]
    (bk/delete! b t (bk/backup-key "ks" bid "manifest.edn"))
    (bk/flip-byte! b t (bk/backup-key "ks" did "chunks/datoms-2.fressian.gz") 30)
    (testing "list"
      (let [{:keys [exit value err]} (cli-edn t "list" "ks")
            api (backup/list-backups t "ks")]
        (is (= 0 exit) err)
        (is (= 3 (count api)))
        (is (= api value))
        (is (= {gid true bid false did true}
               (into {} (map (juxt (comp str :backup-id) :completed?)) value))
            "the one without a manifest lists as incomplete")))
    (testing "verify, shallow and deep"
      (doseq [[id want-exit] [[gid 0] [bid 1] [did 1]]
              deep? [false true]]
        (let [{:keys [exit value err]} (apply cli-edn t "verify" "ks" id (when deep? ["--deep"]))
              api (backup/verify-backup t (parse-uuid id) :database-id "ks" :deep? deep?)]
          (is (= want-exit exit) [id deep? err])
          (is (= api value) [id deep?])
          (is (= (zero? want-exit) (:success api))))))
    (testing "the JSON form lists the same backups"
      (let [{:keys [exit out]} (run-cli t "--json" "list" "ks")]
        (is (= 0 exit))
        (is (every? #(str/includes? out (str "\"backup_id\": \"" % "\"")) [gid bid did]) out)))
    (testing "a backup that is not there: exit 2, as the API's :datacamp/not-found"
      (let [{:keys [exit err]} (run-cli t "verify" "ks" "no-such-backup")]
        (is (= 2 exit))
        (is (= :datacamp/not-found
               (:datacamp/error (try (backup/verify-backup t "no-such-backup" :database-id "ks") nil
                                     (catch clojure.lang.ExceptionInfo e (ex-data e))))))
        (is (str/includes? err "no backup no-such-backup for database ks") err)))))

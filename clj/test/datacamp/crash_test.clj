(ns datacamp.crash-test
  "Crash safety: a JVM running a backup is killed with SIGKILL at seeded points (the core's
  failpoints kill the process right there, as a lost machine would), then `resume-backup`
  finishes the backup, which must be byte-identical to an uninterrupted one."
  (:require [clojure.java.io :as io]
            [clojure.test :refer [deftest is testing]]
            [datacamp.core :as backup]
            [datacamp.fixtures :as fx]
            [datacamp.s3-server :as s3]
            [datacamp.test-util :as u]
            [clojure.edn]
            [datahike.api])
  (:import [java.io File]
           [java.util Random]))

(set! *warn-on-reflection* true)

(def ^:private trials
  "Seeded crash trials per target (the issue asks for at least 20)."
  20)

(def ^:private backup-opts [:database-id "crash" :chunk-size 3000 :parallel 2])

(defn- child-backup!
  "Run a backup of the kitchen-sink fixture in a child JVM with `failpoint` armed; return
  its exit code and output. `where` is a directory (File) or an S3 target map."
  [where failpoint & {:keys [backup-opts] :or {backup-opts backup-opts}}]
  (let [[f target] (if (map? where)
                     ['datacamp.core/backup-to-s3 where]
                     ['datacamp.core/backup-to-directory {:path (str where)}])
        code (pr-str `(do (require 'datacamp.core 'datacamp.fixtures)
                          (apply (resolve '~f)
                                 ((resolve 'datacamp.fixtures/fixture-conn) "kitchen-sink")
                                 ~target ~backup-opts)
                          (shutdown-agents)
                          (System/exit 0)))
        pb (doto (ProcessBuilder. ^"[Ljava.lang.String;"
                                  (into-array String [(str (System/getProperty "java.home") "/bin/java")
                                                      ;; the run's temp root (scripts/with-temp-root)
                                                      (str "-Djava.io.tmpdir=" (System/getProperty "java.io.tmpdir"))
                                                      "-cp" (System/getProperty "java.class.path")
                                                      "clojure.main" "-e" code]))
             (.redirectErrorStream true))]
    (.put (.environment pb) "DATACAMP_FAILPOINT" failpoint)
    (let [p (.start pb)
          out (slurp (.getInputStream p))]
      {:exit (.waitFor p) :out out})))

(defn- chunk-bytes
  "Every chunk file of the only backup under root, by name, as byte vectors."
  [^File root]
  (let [[dir] (.listFiles (io/file root "crash"))]
    (into (sorted-map)
          (for [^File f (.listFiles (io/file dir "chunks"))]
            [(.getName f) (vec (java.nio.file.Files/readAllBytes (.toPath f)))]))))

(defn- reference
  "An uninterrupted backup with the same options: [result chunk-bytes]."
  [& {:keys [backup-opts] :or {backup-opts backup-opts}}]
  (let [root (u/temp-dir)
        r (apply backup/backup-to-directory (fx/fixture-conn "kitchen-sink") {:path (str root)} backup-opts)]
    [r (chunk-bytes root)]))

(defn- pick-failpoint
  "A seeded crash point; per-chunk points get an occurrence within the backup's chunks."
  [^Random rnd chunk-count]
  (let [points ["before-first-chunk" "mid-write" "chunk-stored" "checkpoint-written"
                "before-manifest" "before-marker"]
        point (nth points (.nextInt rnd (count points)))]
    (case point
      ("chunk-stored" "checkpoint-written") (str point ":" (inc (.nextInt rnd (int chunk-count))))
      "mid-write" (str point ":" (inc (.nextInt rnd (int (+ 2 chunk-count)))))
      point)))

(deftest killed-backups-resume-to-the-same-bytes
  (let [[ref-result ref-chunks] (reference)
        rnd (Random. 20261126)
        fixture (fx/load-fixture "kitchen-sink")
        outcomes (atom [])]
    (is (< 20 (:chunk-count ref-result)) "the backup has enough chunks to crash between")
    (dotimes [trial trials]
      (let [failpoint (pick-failpoint rnd (:chunk-count ref-result))
            root (u/temp-dir)
            target {:path (str root)}]
        (testing (str "trial " trial " " failpoint)
          (let [{:keys [exit out]} (child-backup! root failpoint)
                [b :as listed] (backup/list-backups target "crash")]
            (is (= 137 exit) (str "the child was killed (SIGKILL): " out))
            (is (= 1 (count listed)))
            (is (false? (:completed? b)) "a killed backup never lists as complete")
            (is (false? (:success (backup/verify-backup target (:backup-id b) :database-id "crash"))))
            (let [r (backup/resume-backup (fx/fixture-conn "kitchen-sink") target (:backup-id b)
                                          :database-id "crash")]
              (is (true? (:resumed? r)))
              (is (= (:datom-count ref-result) (:datom-count r)))
              (is (true? (= ref-chunks (chunk-bytes root))) "byte-identical to an uninterrupted backup, no temporaries left")
              (is (:success (backup/verify-backup target (:backup-id b) :database-id "crash" :deep? true)))
              (is (true? (:completed? (first (backup/list-backups target "crash")))))
              (is (:already-complete? (backup/resume-backup (fx/fixture-conn "kitchen-sink") target
                                                             (:backup-id b) :database-id "crash")))
              (swap! outcomes conj (= 137 exit)))))))
    (testing "the resumed bytes decode to the fixture's restore order"
      (let [root (u/temp-dir)
            _ (child-backup! root "chunk-stored:5")
            [b] (backup/list-backups {:path (str root)} "crash")
            _ (backup/resume-backup (fx/fixture-conn "kitchen-sink") {:path (str root)} (:backup-id b) :database-id "crash")
            dir (u/backup-dir root "crash" (:backup-id b))
            manifest (u/read-edn-file (io/file dir "manifest.edn"))
            datoms (mapcat (comp :datoms u/read-chunk) (u/chunk-files dir manifest))]
        (is (= (map u/norm (:tx-order fixture)) (map u/norm datoms)))))
    (println (format "crash trials: %d run, %d killed and resumed byte-identical"
                     trials (count (filter true? @outcomes))))))

(deftest resume-refuses-other-options-and-missing-backups
  (let [root (u/temp-dir)
        target {:path (str root)}
        _ (child-backup! root "chunk-stored:3")
        [b] (backup/list-backups target "crash")
        data (fn [f] (try (f) nil (catch clojure.lang.ExceptionInfo e (ex-data e))))]
    (is (= :datacamp/conflict
           (:datacamp/error (data #(backup/resume-backup (fx/fixture-conn "kitchen-sink") target (:backup-id b)
                                                         :database-id "crash" :chunk-size 5000))))
        "another chunk size")
    (is (= :datacamp/conflict
           (:datacamp/error (data #(backup/resume-backup (fx/fixture-conn "schema-on-read") target (:backup-id b)
                                                         :database-id "crash"))))
        "another database")
    (is (= :datacamp/not-found
           (:datacamp/error (data #(backup/resume-backup (fx/fixture-conn "kitchen-sink") target "no-such"
                                                         :database-id "crash")))))
    (is (true? (:resumed? (backup/resume-backup (fx/fixture-conn "kitchen-sink") target (:backup-id b)
                                                :database-id "crash"))))))

(deftest the-snapshot-of-a-current-state-backup-is-derived-from-history
  (doseq [name ["kitchen-sink" "schema-on-read" "attribute-refs"]]
    (let [fixture (fx/load-fixture name)
          conn (fx/fixture-conn name)
          db @conn
          eav (fn [ds] (set (map (fn [d] [(nth d 0) (nth d 1) (u/typed (nth d 2))]) ds)))]
      (testing name
        (is (= (eav (:current fixture))
               (eav (#'datacamp.datahike/current-as-of (datahike.api/datoms (datahike.api/history db) :eavt)
                                                       (:max-tx db))))
            "at the newest tx, history-derived = current (up to Datahike's re-assert tx quirk)")
        (let [basis (+ 536870913 5)
              expected (eav (datahike.api/datoms (datahike.api/as-of db basis) :eavt))]
          (is (= expected (eav (#'datacamp.datahike/current-as-of
                                (datahike.api/datoms (datahike.api/history db) :eavt) basis)))
              "at an older tx, history-derived = the as-of view"))))))

(defn- s3-chunk-bytes
  "Every chunk of the only backup of \"crash\" in S3 target `t`, by key, as byte vectors."
  [t]
  (let [[b] (backup/list-backups t "crash")
        base (str "crash/" (:backup-id b) "/")
        manifest (clojure.edn/read-string (String. (s3/get-object t (str base "manifest.edn")) "UTF-8"))]
    (into (sorted-map)
          (for [c (:chunks manifest)]
            [(:chunk/key c) (vec (s3/get-object t (str base (:chunk/key c))))]))))

(def ^:private bucket-counter (atom 0))

(defn- fresh-s3-target []
  (let [bucket (str "datacamp-crash-" (swap! bucket-counter inc))]
    (s3/create-bucket! bucket)
    (s3/target bucket)))

(deftest killed-s3-backups-resume-to-the-same-bytes
  (let [ref-t (fresh-s3-target)
        ref-result (apply backup/backup-to-s3 (fx/fixture-conn "kitchen-sink") ref-t backup-opts)
        ref-chunks (s3-chunk-bytes ref-t)
        rnd (Random. 4242)
        points ["before-first-chunk" "chunk-stored" "checkpoint-written" "before-manifest" "before-marker"]
        resumed (atom 0)]
    (dotimes [trial trials]
      (let [point (nth points (.nextInt rnd (count points)))
            failpoint (if (#{"chunk-stored" "checkpoint-written"} point)
                        (str point ":" (inc (.nextInt rnd (int (:chunk-count ref-result)))))
                        point)
            t (fresh-s3-target)]
        (testing (str "S3 trial " trial " " failpoint)
          (let [{:keys [exit out]} (child-backup! t failpoint)
                [b :as listed] (backup/list-backups t "crash")]
            (is (= 137 exit) out)
            (is (= 1 (count listed)))
            (is (false? (:completed? b)))
            (let [r (backup/resume-backup (fx/fixture-conn "kitchen-sink") t (:backup-id b) :database-id "crash")]
              (is (true? (:resumed? r)))
              (is (true? (= ref-chunks (s3-chunk-bytes t))) "byte-identical to an uninterrupted backup")
              (is (:success (backup/verify-backup t (:backup-id b) :database-id "crash" :deep? true)))
              (when (= 137 exit) (swap! resumed inc)))))))
    (println (format "S3 crash trials: %d run, %d killed and resumed byte-identical" trials @resumed))))

(defn- lock-edn
  "A lock.edn as another process would hold it, expiring `ms` from now."
  [ms]
  (str "{:lock/owner \"someone-else\" :lock/expires-at #inst \""
       (.toInstant (java.util.Date. (long (+ (System/currentTimeMillis) ms)))) "\"}"))

(deftest one-resumer-at-a-time
  (doseq [kind [:dir :s3]]
    (testing (name kind)
      (let [[where target] (if (= kind :dir)
                             (let [root (u/temp-dir)] [root {:path (str root)}])
                             (let [t (fresh-s3-target)] [t t]))
            _ (child-backup! where "chunk-stored:3")
            [b] (backup/list-backups target "crash")
            lock-key (str "crash/" (:backup-id b) "/lock-0.edn")
            put-lock! (fn [s]
                        (if (= kind :dir)
                          (spit (io/file (str where) lock-key) s)
                          (s3/put-object! where lock-key (.getBytes ^String s "UTF-8"))))
            resume #(try (backup/resume-backup (fx/fixture-conn "kitchen-sink") target (:backup-id b)
                                               :database-id "crash")
                         (catch clojure.lang.ExceptionInfo e (ex-data e)))]
        (put-lock! (lock-edn 600000))
        (is (= :datacamp/conflict (:datacamp/error (resume))) "a live lease of another process")
        (put-lock! (lock-edn -1000))
        (let [[r1 r2] (map deref [(future (resume)) (future (resume))])
              outcomes (frequencies (map #(cond (:resumed? %) :resumed
                                                (:already-complete? %) :already-complete
                                                :else (:datacamp/error %))
                                         [r1 r2]))]
          (is (= 1 (:resumed outcomes)) (str "exactly one resumer wins: " outcomes))
          (is (every? #{:resumed :already-complete :datacamp/conflict} (keys outcomes)) (str outcomes)))
        (is (true? (:completed? (first (backup/list-backups target "crash")))))
        (is (:success (backup/verify-backup target (:backup-id b) :database-id "crash" :deep? true)))))))

(ns datacamp.continuous-crash-test
  "Crash safety of continuous backup: a child JVM writes transactions while its capture
  runs and is killed with SIGKILL — at a seeded crash point of the native core (a segment
  sealed or stored, a file half-written, a chunk of the base backup stored) or after a
  seeded delay. The database survives the process as a real one would: the child journals
  each transaction's number before it transacts it, and the seeded workload rebuilds the
  same database here (a transaction that was journaled but not committed is as if it had
  been committed after the last report). Then the capture is restarted here: it catches
  up from the database, more transactions follow, and the chain restored as of its newest
  transaction (and as of earlier ones) must equal the source modulo phantom
  re-assertions."
  (:require [clojure.java.io :as io]
            [clojure.string :as str]
            [clojure.test :refer [deftest is testing]]
            [datacamp.capture-load :as load]
            [datacamp.core :as dc]
            [datacamp.s3-server :as s3]
            [datacamp.test-util :as u]
            [datahike.api :as d])
  (:import [java.util Random]
           [java.util.concurrent TimeUnit]))

(set! *warn-on-reflection* true)

(def ^:private trials
  "Seeded SIGKILL trials on a directory target (the issue asks for at least 20)."
  20)

(def ^:private s3-trials
  "More trials on S3."
  4)

(def ^:private capture-opts
  [:flush-interval-ms 50 :lock-lease-ms 1500 :chunk-size 4000])

(defn- child!
  "Start a child JVM that builds database `name` (the workload's first `pre` transactions),
  starts capturing it into `target` with `extra` options, then writes transactions
  (journaling each number into `journal` first) until it dies. `failpoint` arms a crash
  point. Returns the Process."
  ^Process [name target journal seed pre failpoint extra]
  (let [code (pr-str
              `(do (require 'datacamp.core 'datacamp.capture-load)
                   (let [conn# ((resolve 'datacamp.capture-load/fresh-conn) ~name)
                         out# (java.io.FileOutputStream. ~(str journal) true)
                         journal# (fn [i#] (.write out# (.getBytes (str i# "\n"))))
                         alive# (reduce (fn [a# i#] (journal# i#)
                                          (second ((resolve 'datacamp.capture-load/transact-one!) conn# ~seed i# a#)))
                                        [] (range 1 ~(inc pre)))]
                     (apply (resolve 'datacamp.core/start-continuous-backup) conn# ~target
                            ~(vec (concat capture-opts extra)))
                     (loop [i# ~(inc pre) a# alive#]
                       (journal# i#)
                       (let [[_# a2#] ((resolve 'datacamp.capture-load/transact-one!) conn# ~seed i# a#)]
                         (Thread/sleep 2)
                         (recur (inc i#) a2#))))))
        pb (doto (ProcessBuilder. ^"[Ljava.lang.String;"
                                  (into-array String [(str (System/getProperty "java.home") "/bin/java")
                                                      "-cp" (System/getProperty "java.class.path")
                                                      "clojure.main" "-e" code]))
             (.redirectErrorStream true)
             (.redirectOutput (io/file (str journal ".out"))))]
    (when failpoint
      (.put (.environment pb) "DATACAMP_FAILPOINT" failpoint))
    (.start pb)))

(defn- journaled
  "The number of the last transaction the child journaled (0 for none)."
  [journal]
  (let [f (io/file journal)]
    (if (.exists f)
      (or (some->> (str/split-lines (slurp f)) (remove str/blank?) last parse-long) 0)
      0)))

(defn- pick-kill
  "A seeded way to die: a crash point of the core, or a plain SIGKILL after a delay."
  [^Random rnd]
  (let [points ["log-sealed" "log-segment-stored" "mid-write" "chunk-stored" "before-manifest"]]
    (if (< (.nextInt rnd 3) 2)
      (let [p (nth points (.nextInt rnd (count points)))]
        {:failpoint (str p ":" (inc (.nextInt rnd (if (#{"chunk-stored" "before-manifest"} p) 2 25))))
         :max-ms (+ 1500 (.nextInt rnd 2000))})
      {:failpoint nil :max-ms (+ 300 (.nextInt rnd 2500))})))

(defn- restore-latest
  "A new empty database holding the newest state the chains of `db-id` in `target` have."
  [target db-id name]
  (let [cfg {:store {:backend :mem :id (str name "-restored-" (System/nanoTime))}
             :keep-history? true :schema-flexibility :write}]
    (d/create-database cfg)
    (let [conn (d/connect cfg)
          r (if (:bucket target)
              (dc/restore-from-s3 conn target nil :database-id db-id :latest? true)
              (dc/restore-from-directory conn target nil :database-id db-id :latest? true))]
      [conn r])))

(defn- run-trial!
  "One trial; returns a map of what happened (asserting as it goes)."
  [target ^Random rnd trial]
  (let [name (str "crash-" trial "-" (System/nanoTime))
        journal (io/file (u/temp-dir) "journal")
        seed (.nextInt rnd 1000000)
        pre (+ 5 (.nextInt rnd 30))
        {:keys [failpoint max-ms]} (pick-kill rnd)
        spool (when (.nextBoolean rnd) (str (u/temp-dir)))
        db-id (str "crash-" trial)
        extra (cond-> [:database-id db-id] spool (into [:spool-dir spool]))
        p (child! name target journal seed pre failpoint extra)
        died (.waitFor p (long (+ max-ms 8000)) TimeUnit/MILLISECONDS)]
    ;; no crash point reached in time: a plain SIGKILL (destroyForcibly is SIGKILL)
    (when-not (and died (not (.isAlive p)))
      (.destroyForcibly p)
      (.waitFor p 10 TimeUnit/SECONDS))
    (let [exit (.exitValue p)
          k (journaled journal)
          conn (load/fresh-conn name)
          alive (load/replay! conn seed 1 k [])
          h (apply dc/start-continuous-backup conn target
                   (concat capture-opts extra [:lock-wait-ms 10000]))
          more (+ 5 (.nextInt rnd 15))
          _ (load/replay! conn seed (inc k) (+ k more) alive)
          final (dc/stop-continuous-backup h)
          [restored r] (restore-latest target db-id name)
          source @conn
          txs (range (inc (long load/tx0)) (inc (long (:max-tx source))))
          sample (conj (set (take 4 (shuffle txs))) (:max-tx source))
          diff (load/compare-dbs source @restored sample)]
      (testing (str "trial " trial " (" (or failpoint (str "kill after " max-ms " ms")) ", "
                    k " journaled, spool " (boolean spool) ")")
        (is (= 137 exit) (str "the child was killed by SIGKILL: " (slurp (str journal ".out"))))
        (is (nil? (:last-error final)) (str (:last-error final)))
        (is (= (:max-tx source) (:last-durable-tx final) (:restored-to-tx r)))
        (is (= {} diff) "restore = source, modulo phantom re-assertions"))
      {:exit exit :journaled k :caught-up (count (:catch-ups final))
       :new-chain? (= :new-chain (:kind (:started-as final)))})))

(deftest killed-captures-restart-with-catch-up-and-lose-nothing
  (let [rnd (Random. 20261205)
        root (u/temp-dir)
        target {:path (str root)}
        outcomes (vec (for [trial (range trials)] (run-trial! target rnd trial)))]
    (is (= trials (count (filter #(= 137 (:exit %)) outcomes))))
    (println (format "continuous crash trials (directory): %d run, %d SIGKILLed, %d restarts caught up, %d started a new chain"
                     trials (count (filter #(= 137 (:exit %)) outcomes))
                     (count (filter #(pos? (long (:caught-up %))) outcomes))
                     (count (filter :new-chain? outcomes))))))

(deftest killed-s3-captures-restart-with-catch-up-and-lose-nothing
  (let [rnd (Random. 777)
        bucket (str "continuous-crash-" (System/nanoTime))
        _ (s3/create-bucket! bucket)
        target (s3/target bucket)
        outcomes (vec (for [trial (range s3-trials)] (run-trial! target rnd trial)))]
    (println (format "continuous crash trials (S3): %d run, %d SIGKILLed"
                     s3-trials (count (filter #(= 137 (:exit %)) outcomes))))))

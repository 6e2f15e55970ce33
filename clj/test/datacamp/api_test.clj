(ns datacamp.api-test
  "The API as a new user meets it: misspelled option keys, error texts, defaults, the
  checkpoint of a finished backup, a backup's `:progress-fn`, and a restore whose target's
  Datahike writer dies (the stand-in's `kill-writer-after!`)."
  (:require [clojure.java.io :as io]
            [clojure.string :as str]
            [clojure.test :refer [deftest is testing]]
            [datacamp.core :as backup]
            [datacamp.datahike :as dh]
            [datacamp.fixtures :as fx]
            [datacamp.test-util :as u]
            [datahike.api :as d]
            [datahike.connector :as dc])
  (:import [java.lang.ref WeakReference]
           [java.util.concurrent TimeoutException]))

(set! *warn-on-reflection* true)

(defn- thrown
  "What `f` throws: `{:message … :data … :cause …}`, nil when it returns."
  [f]
  (try (f) nil
       (catch clojure.lang.ExceptionInfo e
         {:message (ex-message e) :data (ex-data e) :cause (ex-cause e)})))

(defn- target [] {:path (str (u/temp-dir))})

(defn- nothing-under? [{:keys [path]}]
  (empty? (.listFiles (io/file path))))

(deftest misspelled-option-keys-name-the-closest-known-one
  (let [conn (fx/fixture-conn "kitchen-sink")
        t (target)
        good (backup/backup-to-directory conn t :database-id "ks" :chunk-size 20000)
        id (:backup-id good)]
    (doseq [[what f key closest]
            [["backup" #(backup/backup-to-directory conn (target) :database-id "x" :paralel 4) ":paralel" ":parallel"]
             ["backup, a string key" #(backup/backup-to-directory conn (target) "parallel" 4) "\"parallel\"" ":parallel"]
             ["restore" #(backup/restore-from-directory (fx/empty-conn "kitchen-sink") t id
                                                        :database-id "ks" :verify-frist? false)
              ":verify-frist?" ":verify-first?"]
             ["verify" #(backup/verify-backup t id :database-id "ks" :deeep? true) ":deeep?" ":deep?"]
             ["cleanup" #(backup/cleanup-incomplete t "ks" :older-than 3) ":older-than" ":older-than-hours"]
             ["resume" #(backup/resume-backup conn t id :database-id "ks" :brake-lock? true) ":brake-lock?" ":break-lock?"]]]
      (testing what
        (let [{:keys [message data]} (thrown f)]
          (is (= :datacamp/invalid-argument (:datacamp/error data)))
          (is (= (str "unknown option " key " (closest known option: " closest ")")
                 (re-find #"unknown option .*\)" (str message)))
              message)
          (is (str/includes? (str (:datacamp/hint data)) closest) "the hint lists the known keys"))))
    (testing "a misspelled backup option writes nothing"
      (let [t2 (target)]
        (is (thrown (fn [] (backup/backup-to-directory conn t2 :database-id "x" :chunk-sise 1000))))
        (is (nothing-under? t2))))
    (testing "the API's own keys are accepted"
      (let [r (backup/backup-to-directory conn (target) :database-id "ks" :batch-size 500
                                          :progress-fn (fn [_]))]
        (is (:success r)))
      (is (:success (backup/verify-backup t id :database-id "ks" :deep? true)))
      (let [r (backup/restore-from-directory (fx/empty-conn "kitchen-sink") t id :database-id "ks"
                                             :batch-size 100000 :load-timeout-ms 60000
                                             :progress-fn (fn [_]) :verify-first? false)]
        (is (= (:datom-count good) (:datoms-restored r)))))))

(deftest error-texts-read-like-clojure
  (let [conn (fx/fixture-conn "kitchen-sink")]
    (testing "a value of the wrong range is shown as Clojure shows it"
      (let [{:keys [message data]} (thrown #(backup/backup-to-directory conn (target) :database-id "x"
                                                                        :compression-level 42))]
        (is (= :datacamp/invalid-argument (:datacamp/error data)))
        (is (str/includes? message ":compression-level must be an integer from 0 to 9, got 42") message)
        (is (not (str/includes? message "Long(")) message)))
    (testing "a target path that is a file"
      (let [f (doto (io/file (u/temp-dir) "a-file") (spit "x"))
            {:keys [message data]} (thrown #(backup/backup-to-directory conn {:path (str f)} :database-id "x"))]
        (is (= :datacamp/io (:datacamp/error data)))
        (is (str/includes? message (str f " is not a directory")) message)
        (is (not (str/includes? message "os error")) message)))
    (testing "one wording for a bad database id, whichever function meets it"
      (let [t (target)
            in-backup (thrown #(backup/backup-to-directory conn t :database-id "a/b"))
            in-list (thrown #(backup/list-backups t "a/b"))
            in-verify (thrown #(backup/verify-backup t "x" :database-id "a/b"))]
        (is (= :datacamp/invalid-argument (get-in in-backup [:data :datacamp/error])))
        (is (str/includes? (:message in-backup) "database-id \"a/b\" is not a valid name") (:message in-backup))
        (is (= (:message in-backup) (:message in-list) (:message in-verify)))
        (is (nothing-under? t))))
    (testing "a nil backup id is reported as nil, not as a blank name"
      (doseq [[what f] [["verify" #(backup/verify-backup (target) nil :database-id "x")]
                        ["restore" #(backup/restore-from-directory (fx/empty-conn "kitchen-sink") (target) nil
                                                                   :database-id "x")]
                        ["resume" #(backup/resume-backup conn (target) nil :database-id "x")]]]
        (testing what
          (let [{:keys [message data]} (thrown f)]
            (is (= :datacamp/invalid-argument (:datacamp/error data)))
            (is (str/includes? message "the backup id is nil") message)
            (is (contains? data :backup-id))
            (is (nil? (:backup-id data)))
            (is (not (str/includes? message "\"\"")) message)))))))

(deftest database-id-defaults-to-default-db
  (let [conn (fx/fixture-conn "kitchen-sink")
        t (target)]
    (is (nil? (get-in @conn [:config :store :id])) "the fixture's :file store has no :id")
    (let [r (backup/backup-to-directory conn t)]
      (is (= "default-db" (:database-id r)))
      (is (.isDirectory (io/file (:path t) "default-db" (str (:backup-id r)))))
      (is (= [(:backup-id r)] (mapv :backup-id (backup/list-backups t "default-db"))))
      (testing "verify and restore look there too when :database-id is left out"
        (is (:success (backup/verify-backup t (:backup-id r))))
        (is (= (:datom-count r)
               (:datoms-restored (backup/restore-from-directory (fx/empty-conn "kitchen-sink") t (:backup-id r)))))))
    (testing "the store's :id wins over the default"
      (let [cfg {:store {:backend :mem :id "has-an-id"} :schema-flexibility :read}]
        (d/delete-database cfg)
        (d/create-database cfg)
        (let [c (d/connect cfg)]
          (d/transact c {:tx-data [{:db/id -1 :x/y 1}]})
          (is (= "has-an-id" (:database-id (backup/backup-to-directory c t))))
          (d/release c))))))

(deftest a-finished-backups-checkpoint-says-complete
  (let [t (target)
        r (backup/backup-to-directory (fx/fixture-conn "kitchen-sink") t :database-id "ks" :chunk-size 20000)
        cp (u/read-edn-file (io/file (u/backup-dir (:path t) "ks" (:backup-id r)) "checkpoint.edn"))]
    (is (< 3 (:chunk-count r)))
    (is (= :complete (:checkpoint/phase cp)))
    (is (= (:chunk-count r) (:progress/total-chunks cp) (:progress/completed cp)))
    (is (= (:datom-count r) (:progress/datoms-stored cp) (:progress/datoms-received cp)))))

(deftest backup-progress-fn-reports-datoms-and-bytes
  (let [fixture (fx/load-fixture "kitchen-sink")
        history (:history fixture)
        facts (dh/describe (fx/fixture-db "kitchen-sink"))
        native-opts (backup/backup-options {:chunk-size 20000} "progress" facts)
        seen-reading (promise)
        events (atom [])
        progress-fn (fn [e]
                      (swap! events conj e)
                      (when (and (= :reading (:stage e)) (pos? (:datoms-done e)))
                        (deliver seen-reading true)))
        ;; The datoms stop after the first 1000 until a :reading event was reported: the
        ;; reports come while the backup runs, not only at its end.
        datoms (concat (take 1000 history)
                       (lazy-seq (when-not (deref seen-reading 60000 nil)
                                   (throw (ex-info "no :reading progress within 60 s" {})))
                                 (drop 1000 history)))
        r (backup/backup-datoms (target) native-opts datoms {:batch-size 250 :progress-fn progress-fn})
        evs @events
        stages [:reading :sorting :writing :committing :done]]
    (is (:success r))
    (is (realized? seen-reading))
    (let [reading (filter #(= :reading (:stage %)) evs)]
      (is (seq reading))
      (is (every? #(<= 250 (:datoms-done %) (count history)) reading))
      (is (apply <= (map :datoms-done reading)) "datoms done only grow"))
    (is (= (sort-by #(.indexOf ^java.util.List stages %) (map :stage evs)) (map :stage evs))
        "stages come in order")
    (is (apply <= (map :bytes-done evs)) "bytes done only grow")
    (is (= {:stage :done :datoms-done (:datom-count r) :datoms-total (:datom-count r)
            :bytes-done (:total-size-bytes r) :chunks-done (:chunk-count r)}
           (last evs)))
    (testing "an exception from :progress-fn stops the backup and is rethrown"
      (let [t (target)
            gate (promise)
            datoms (concat (take 1000 history)
                           (lazy-seq (deref gate 60000 nil) (drop 1000 history)))
            {:keys [message]} (thrown #(backup/backup-datoms t (assoc native-opts :database-id "boom") datoms
                                                             {:batch-size 250
                                                              :progress-fn (fn [_] (deliver gate true)
                                                                             (throw (ex-info "progress-fn failed" {})))}))]
        (is (= "progress-fn failed" message))
        (is (not-any? :completed? (backup/list-backups t "boom")) "the backup did not complete")))))

(deftest a-backup-keeps-no-datom-it-pushed
  ;; A backup walks the database's datoms lazily: nothing may keep the head of the seq, or
  ;; the whole database ends up in the heap (it did: a closure over the datoms kept it). The
  ;; seq's head is watched by a weak reference; after 1000 datoms a full GC runs, and the
  ;; head must be gone — with and without :progress-fn (the walk then runs on another thread).
  (let [fixture (fx/load-fixture "kitchen-sink")
        history (:history fixture)
        facts (dh/describe (fx/fixture-db "kitchen-sink"))]
    (doseq [opts [{:batch-size 100} {:batch-size 100 :progress-fn (fn [_])}]]
      (let [head (atom nil)
            collected (promise)
            watched (fn []
                      (let [s (concat (take 1000 history)
                                      (lazy-seq (System/gc)
                                                (deliver collected (nil? (.get ^WeakReference @head)))
                                                (drop 1000 history)))]
                        (reset! head (WeakReference. s))
                        s))
            r (backup/backup-datoms (target) (backup/backup-options {} "heads" facts) (watched) opts)]
        (is (= (count history) (:datom-count r)))
        (is (true? (deref collected 0 :never-walked)) (str "the head was kept, " (keys opts)))))))

(deftest await-write-bounds-every-kind-of-deref-able
  (is (= ::dh/timeout (dh/await-write (promise) 50)) "a plain promise: its timeout value")
  (is (= ::dh/timeout (dh/await-write (dc/writer-promise) 50))
      "Datahike 0.6's throwable-promise: a thrown ExceptionInfo caused by a TimeoutException")
  (is (= :v (dh/await-write (dc/delivered :v) 50)))
  (is (= :v (dh/await-write (delay :v) 50)) "a deref-able without a timed deref")
  (is (= :v (dh/await-write :v 50)) "a plain value")
  (let [boom (ex-info "boom" {:x 1})]
    (is (identical? boom (try (dh/await-write (dc/delivered boom) 50) (catch Exception e e)))
        "a delivered failure is rethrown")))

(deftest a-restore-never-waits-forever-on-a-dead-writer
  (let [t (target)
        r (backup/backup-to-directory (fx/fixture-conn "kitchen-sink") t :database-id "ks")
        id (:backup-id r)]
    (testing "the writer dies in the third load-entities call: a bounded wait, a clear error"
      (let [conn (fx/empty-conn "kitchen-sink")
            _ (dc/kill-writer-after! conn 1000 (java.nio.file.FileSystemException. "/db/x" nil "Too many open files"))
            started (System/nanoTime)
            {:keys [message data cause]} (thrown #(backup/restore-from-directory conn t id :database-id "ks"
                                                                                 :batch-size 500
                                                                                 :load-timeout-ms 2000))]
        (is (= :datacamp/target-failed (:datacamp/error data)) message)
        (is (str/includes? message "did not answer load-entities call 3 within 2000 ms") message)
        (is (str/includes? message "1000 datoms were loaded before") message)
        (is (str/includes? message "PARTIAL") message)
        (is (str/includes? (:datacamp/hint data) ":batch-size (now 500)"))
        (is (= {:datoms-loaded 1000 :load-entities-calls 2 :batch-size 500 :database-id "ks"}
               (select-keys data [:datoms-loaded :load-entities-calls :batch-size :database-id])))
        (is (instance? TimeoutException cause))
        (is (< (/ (- (System/nanoTime) started) 1e9) 60) "gave up after the bound, not never")
        (is (some? (dc/writer-error conn)) "the stand-in's writer did die")
        (is (< dh/tx0 (:max-tx @conn)) "the first two calls were committed: the target is partial")))
    (testing "a writer that is dead before the restore: the first call"
      (let [conn (fx/empty-conn "kitchen-sink")
            _ (dc/kill-writer! conn nil)
            {:keys [message data]} (thrown #(backup/restore-from-directory conn t id :database-id "ks"
                                                                           :load-timeout-ms 500))]
        (is (= :datacamp/target-failed (:datacamp/error data)))
        (is (str/includes? message "load-entities call 1 within 500 ms") message)
        (is (= 0 (:datoms-loaded data)))))))

(ns datahike.listen-test
  "Proves the stand-in's transaction reports, `d/listen` and writer behave like
  the real Datahike 0.6.1613: the reports a REAL Datahike handed to a listener
  for a scripted 23-transaction workload (clj/test/datahike/tx-reports.edn, a
  verbatim copy of ../shared/fixtures/tx-reports.edn, see README.txt there) are
  reproduced step by step; listener threading, ordering and failure
  behaviour, load-entities without listeners, a dying writer, and Datahike 0.7
  store configs."
  (:require [clojure.edn :as edn]
            [clojure.java.io :as io]
            [clojure.test :refer [deftest is testing]]
            [datacamp.fixtures :as fx]
            [datacamp.tx-delta :as delta]
            [datahike.api :as d]
            [datahike.connector :as dc]
            [datahike.standin :as standin])
  (:import [clojure.lang ExceptionInfo]
           [java.nio.file FileSystemException]
           [java.util Base64 Date UUID]
           [java.util.concurrent CountDownLatch TimeUnit TimeoutException]))

(set! *warn-on-reflection* true)

(def ^:private tx0 536870912)

;; ---------------------------------------------------------------------------
;; the fixture

(def ^:private fixture
  (delay (edn/read-string {:readers {'fixture/bytes #(.decode (Base64/getDecoder) ^String %)}}
                          (slurp (io/resource "datahike/tx-reports.edn")))))

(defn- norm-v
  "A value made comparable across the fixture and the stand-in: bytes by
  content, everything else with its class."
  [v]
  (if (bytes? v) [:bytes (vec v)] [(class v) v]))

(defn- norm-row
  "[e a v tx added] with the value normalised; txInstant values (which differ
  from the real run) replaced by ::inst."
  [[e a v tx added]]
  [e a (if (= :db/txInstant a) ::inst (norm-v v)) tx added])

(defn- rows [datoms] (mapv #(vec (seq %)) datoms))
(defn- norm-rows [rs] (mapv norm-row rs))

(defn- tx-history-view
  "The history datoms of tx in the db, in history (EAVT) order."
  [db tx]
  (filterv #(= tx (:tx %)) (d/datoms (d/history db) :eavt)))

(defn- fresh-config
  ([] (fresh-config {}))
  ([extra] (merge {:store {:backend :mem :id (str "listen-test-" (UUID/randomUUID))}} extra)))

(defn- fresh-conn
  ([] (fresh-conn {}))
  ([extra] (let [cfg (fresh-config extra)] (d/create-database cfg) (d/connect cfg))))

(defn- replay!
  "Transact every step's input into conn with a listener registered; return
  per step {:step :report :heard :thread :heard-before-return?}."
  [conn]
  (let [heard (atom [])
        k (d/listen conn ::replay (fn [r] (swap! heard conj [r (.getName (Thread/currentThread))])))
        out (vec (for [s (:steps @fixture)]
                   (let [r (d/transact conn (:input s))
                         [lr thread] (peek @heard)]
                     {:step s :report r :heard lr :thread thread
                      :heard-before-return? (identical? lr r)})))]
    (d/unlisten conn k)
    (is (= (count (:steps @fixture)) (count @heard)) "one report per transaction")
    out))

(defn- check-step
  "Every per-step assertion against the fixture; `what` labels the messages."
  [what {:keys [step report]}]
  (let [label (str what " step " (:step step) " (" (:label step) ")")
        {:keys [db-before db-after tx-data tempids tx-meta]} report
        tx (:tx step)]
    (testing label
      (is (= "datahike.db.TxReport" (.getName (class report))))
      (is (= #{:db-before :db-after :tx-data :tempids :tx-meta} (set (keys report))))
      (testing ":tx-data in report order"
        (is (= (norm-rows (:tx-data step)) (norm-rows (rows tx-data)))))
      (testing ":tempids incl. :db/current-tx"
        (is (= (:tempids step) tempids)))
      (testing ":tx-meta: txInstant, commitId and the caller's meta"
        (is (= (set (keys (:tx-meta step))) (set (keys tx-meta))))
        (is (= (dissoc (:tx-meta step) :db/txInstant :db/commitId) (dissoc tx-meta :db/txInstant :db/commitId)))
        (is (instance? Date (:db/txInstant tx-meta)))
        (is (uuid? (:db/commitId tx-meta)))
        (is (= (:db/txInstant tx-meta) (:v (first (filter #(= :db/txInstant (:a %)) tx-data)))))
        (is (= (:db/commitId tx-meta) (get-in db-after [:meta :datahike/commit-id]))))
      (testing "max-tx before/after, max-eid after"
        (is (= [(:db-before-max-tx step) (:db-after-max-tx step) (:db-after-max-eid step)]
               [(:max-tx db-before) (:max-tx db-after) (:max-eid db-after)]))
        (is (= tx (:db/current-tx tempids))))
      (testing "the history view of the tx right after it"
        (is (= (norm-rows (:history-view-of-tx step)) (norm-rows (rows (tx-history-view db-after tx))))))
      (testing "the before/after delta (datacamp.tx-delta)"
        (is (= (norm-rows (:before-after-delta step)) (norm-rows (delta/before-after-delta report))))))))

(defn- check-final [what conn]
  (testing (str what ": final history, current datoms, max-eid, max-tx")
    (is (= (norm-rows (:final-history @fixture)) (norm-rows (rows (d/datoms (d/history @conn) :eavt)))))
    (is (= (norm-rows (:final-current @fixture)) (norm-rows (rows (d/datoms @conn :eavt)))))
    (is (= [(:final-max-eid @fixture) (:final-max-tx @fixture)] [(:max-eid @conn) (:max-tx @conn)]))))

;; ---------------------------------------------------------------------------
;; the fixture, step by step

(deftest fixture-config
  (is (= "0.6.1613" (:datahike/version @fixture)))
  (is (= 23 (count (:steps @fixture))))
  (when (.exists (io/file "/work/shared/fixtures/tx-reports.edn"))
    (testing "the copy on the test classpath is the shared fixture"
      (is (= (slurp "/work/shared/fixtures/tx-reports.edn") (slurp (io/resource "datahike/tx-reports.edn")))))))

(deftest reports-match-the-real-datahike
  (let [conn (fresh-conn (:config @fixture))
        steps (replay! conn)]
    (doseq [s steps] (check-step "0.6" s))
    (check-final "0.6" conn)
    (testing "the listener got the very report transact returned, before transact returned"
      (is (every? :heard-before-return? steps)))
    (testing "reports chain: each :db-before max-tx = the previous :db-after max-tx"
      (is (= (map (comp :max-tx :db-after :report) (butlast steps))
             (map (comp :max-tx :db-before :report) (rest steps)))))
    (testing "listeners run on dispatch threads, never the caller's"
      (let [me (.getName (Thread/currentThread))
            threads (map :thread steps)]
        (is (not-any? #{me} threads))
        (is (every? #(.startsWith ^String % "datahike-standin-async-dispatch-") threads))
        (is (< 1 (count (set threads))) "like core.async, not always the same thread")))
    (d/release conn)))

(deftest documented-quirks-of-tx-data
  (let [conn (fresh-conn (:config @fixture))
        steps (replay! conn)
        by-step (fn [n] (:report (nth steps n)))
        datom-rows (fn [n] (set (map norm-row (rows (:tx-data (by-step n))))))]
    (testing "no implicit retraction of a replaced card-one value (p1's name, step 4)"
      (is (contains? (datom-rows 4) [19 :person/name (norm-v "Person One") (+ tx0 5) true]))
      (is (not (contains? (datom-rows 4) [19 :person/name (norm-v "Person 1") (+ tx0 5) false])))
      (is (contains? (set (norm-rows (rows (tx-history-view (:db-after (by-step 4)) (+ tx0 5)))))
                     [19 :person/name (norm-v "Person 1") (+ tx0 5) false])))
    (testing "re-assertions of unchanged values (the upsert of step 6) that history does not keep"
      (is (= #{[25 :person/id (norm-v "p4") (+ tx0 7) true] [25 :person/name (norm-v "Person 4") (+ tx0 7) true]}
             (disj (datom-rows 6) [(+ tx0 7) :db/txInstant ::inst (+ tx0 7) true])))
      (is (= 1 (count (tx-history-view (:db-after (by-step 6)) (+ tx0 7))))))
    (testing ":db/noHistory assertions and retractions are in :tx-data"
      (is (contains? (datom-rows 5) [23 :person/nick (norm-v "N3b") (+ tx0 6) true]))
      (is (contains? (datom-rows 13) [37 :person/nick (norm-v "nick10") (+ tx0 14) false])))
    (testing "retractEntity: every datom, components included (step 9)"
      (is (= 13 (count (remove #(= :db/txInstant (:a %)) (:tx-data (by-step 9)))))))
    (testing "an empty transaction reports its txInstant datom only"
      (is (= [[(+ tx0 20) :db/txInstant ::inst (+ tx0 20) true]] (norm-rows (rows (:tx-data (by-step 19)))))))
    (testing "as measured on the real run (README.txt): the unions vs the history index"
      (let [history (set (norm-rows (rows (d/datoms (d/history @conn) :eavt))))
            delta-union (set (mapcat (comp norm-rows delta/before-after-delta :report) steps))
            tx-data-union (set (mapcat (comp norm-rows rows :tx-data :report) steps))]
        (is (= 2 (count (remove delta-union history))) "phantom re-assertions only")
        (is (= 8 (count (remove history delta-union))))
        (is (every? #(= :person/nick (second %)) (remove history delta-union)))
        (is (= 25 (count (remove history tx-data-union))))
        (is (= 8 (count (remove tx-data-union history))))))
    (d/release conn)))

;; ---------------------------------------------------------------------------
;; listeners

(defn- with-uncaught-handler
  "Run f with a default uncaught-exception handler collecting into an atom
  (instead of stderr); return [result caught]."
  [f]
  (let [caught (atom [])
        old (Thread/getDefaultUncaughtExceptionHandler)]
    (Thread/setDefaultUncaughtExceptionHandler
     (reify Thread$UncaughtExceptionHandler
       (uncaughtException [_ t e] (swap! caught conj [(.getName t) e]))))
    (try
      [(f) caught]
      (finally (Thread/setDefaultUncaughtExceptionHandler old)))))

(def ^:private schema
  [{:db/ident :n :db/valueType :db.type/long :db/cardinality :db.cardinality/one}
   {:db/ident :s :db/valueType :db.type/string :db/cardinality :db.cardinality/one}])

(deftest listen-basics
  (let [conn (fresh-conn)
        seen (atom [])
        k (d/listen conn (fn [r] (swap! seen conj r)))]
    (testing "the 2-arity returns a (random) key"
      (is (some? k)))
    (let [r (d/transact conn schema)
          r2 @(d/transact! conn [{:n 1}])]
      (is (= [r r2] @seen))
      (is (identical? r2 (peek @seen))))
    (testing "registering a key again replaces its fn; unlisten returns the remaining listeners"
      (let [other (atom 0)]
        (d/listen conn :other (fn [_] (swap! other inc)))
        (d/listen conn :other (fn [_] (swap! other + 10)))
        (d/transact conn [{:n 2}])
        (is (= 10 @other))
        (is (= #{k} (set (keys (d/unlisten conn :other)))))
        (is (= {} (d/unlisten conn k)))
        (d/transact conn [{:n 3}])
        (is (= 3 (count @seen)))))
    (testing "a failed transaction throws and reports nothing"
      (d/listen conn :again (fn [r] (swap! seen conj r)))
      (is (thrown-with-msg? ExceptionInfo #"Bad entity value" (d/transact conn [{:n "x"}])))
      (is (= 3 (count @seen)))
      (d/transact conn [{:n 4}])
      (is (= 4 (count @seen))))
    (d/release conn)))

(deftest load-entities-fires-no-listener
  (let [conn (fresh-conn {:schema-flexibility :read})
        seen (atom [])]
    (d/listen conn :k (fn [r] (swap! seen conj r)))
    (let [report @(d/load-entities conn [[(inc tx0) :db/txInstant (Date. 0) (inc tx0) true]
                                          [1 :x 1 (inc tx0) true]
                                          [2 :x 2 (inc tx0) true]])]
      (testing "the load's report: :tx-meta holds the commit id only"
        (is (= #{:db/commitId} (set (keys (:tx-meta report)))))
        (is (= 3 (count (:tx-data report))))))
    (is (= [] @seen))
    (d/transact conn [[:db/add "a" :x 3]])
    (is (= 1 (count @seen)))
    @(d/load-entities conn [[1 :y 1 (+ tx0 7) true]])
    (is (= 1 (count @seen)) "still only the transact")
    (d/release conn)))

(deftest listeners-run-after-the-commit-before-transact-returns
  (let [conn (fresh-conn)
        entered (CountDownLatch. 1)
        gate (CountDownLatch. 1)
        seen (atom [])]
    (d/transact conn schema)
    (d/listen conn :slow (fn [r]
                           (.countDown entered)
                           (.await gate 10 TimeUnit/SECONDS)
                           (swap! seen conj (:max-tx (:db-after r)))))
    (let [p (d/transact! conn [{:n 1}])
          q (d/transact! conn [{:n 2}])]
      (is (.await entered 5 TimeUnit/SECONDS))
      (dotimes [_ 100] (when (< (long (:max-tx @conn)) (+ tx0 3)) (Thread/sleep 20)))
      (testing "while the first listener runs: both transactions are committed (the writer goes on,
                as the real commit loop does), but neither caller has its report yet"
        (is (= (+ tx0 3) (:max-tx @conn)))
        (is (not (realized? p)))
        (is (not (realized? q)) "stand-in: reports reach listeners and callers strictly in order"))
      (.countDown gate)
      (is (= (+ tx0 2) (:max-tx (:db-after @p))))
      (is (= (+ tx0 3) (:max-tx (:db-after @q))))
      (is (= [(+ tx0 2) (+ tx0 3)] @seen)))
    (testing "a slow listener slows every transact"
      (d/unlisten conn :slow)
      (d/listen conn :sleepy (fn [_] (Thread/sleep 150)))
      (let [t0 (System/nanoTime)]
        (d/transact conn [{:n 3}])
        (d/transact conn [{:n 4}])
        (is (<= 300 (quot (- (System/nanoTime) t0) 1000000)))))
    (d/release conn)))

(deftest a-throwing-listener
  (let [conn (fresh-conn)
        later (atom [])]
    (d/transact conn schema)
    (d/listen conn :a-bad (fn [r] (when (= 1 (count (filter #(= :n (:a %)) (:tx-data r))))
                                    (throw (IllegalStateException. "listener failed")))))
    (d/listen conn :b-good (fn [r] (swap! later conj (:max-tx (:db-after r)))))
    (let [[[p hung] caught]
          (with-uncaught-handler
            (fn []
              (let [p (d/transact! conn [{:n 1}])
                    hung (binding [dc/*hang-ms* 300]
                           (try (d/transact conn [{:n 2}]) (catch ExceptionInfo e e)))]
                [p hung])))]
      (testing "the exception goes to the dispatch thread's uncaught-exception handler"
        (is (= 2 (count @caught)))
        (is (every? (fn [[thread e]] (and (.startsWith ^String thread "datahike-standin-async-dispatch-")
                                          (= "listener failed" (.getMessage ^Throwable e))))
                    @caught)))
      (testing "the caller's report is never delivered (real: transact hangs forever)"
        (is (not (realized? p)))
        (is (= :standin/hung (:error (ex-data hung)))))
      (testing "the other listeners of that report are skipped"
        (is (= [] @later)))
      (testing "but the transactions were committed"
        (is (= (+ tx0 3) (:max-tx @conn)))))
    (testing "later transactions are reported normally"
      (d/unlisten conn :a-bad)
      (d/transact conn [{:s "ok"}])
      (is (= [(+ tx0 4)] @later)))
    (d/release conn)))

(deftest a-listener-may-transact
  (testing "a listener's own transact on the same connection does not deadlock (stand-in choice, see datahike.connector)"
    (let [conn (fresh-conn)
          seen (atom [])
          once (atom true)]
      (d/transact conn schema)
      (d/listen conn :k (fn [r]
                          (swap! seen conj (:max-tx (:db-after r)))
                          (when (compare-and-set! once true false)
                            (d/transact conn [{:s "from the listener"}]))))
      (d/transact conn [{:n 1}])
      (is (= [(+ tx0 2) (+ tx0 3)] (do (dotimes [_ 50] (when (< (count @seen) 2) (Thread/sleep 20))) @seen)))
      (d/release conn))))

;; ---------------------------------------------------------------------------
;; timed deref (real throwable-promise semantics)

(deftest timed-deref-throws-like-the-real-throwable-promise
  (let [p (dc/writer-promise)
        e (try (deref p 50 ::timeout) (catch ExceptionInfo e e))]
    (is (instance? ExceptionInfo e))
    (is (= "java.util.concurrent.TimeoutException" (ex-message e)))
    (is (= {} (ex-data e)))
    (is (instance? TimeoutException (ex-cause e)))
    (is (not (realized? p)))
    (deliver p :v)
    (is (= :v (deref p 50 ::timeout)))
    (is (= :v @p)))
  (testing "a delivered exception is rethrown"
    (let [ex (ex-info "boom" {:x 1})
          p (dc/delivered ex)]
      (is (identical? ex (try @p (catch ExceptionInfo e e))))
      (is (identical? ex (try (deref p 10 ::t) (catch ExceptionInfo e e))))))
  (testing "a delivered nil gives the timeout value (tools.cljc's if-let)"
    (is (= ::t (deref (dc/delivered nil) 10 ::t)))))

;; ---------------------------------------------------------------------------
;; a dying writer

(defn- timed-out?
  "True when a timed deref of p throws the real throwable-promise's timeout."
  [p ms]
  (try (deref p ms ::none) false
       (catch ExceptionInfo e (instance? TimeoutException (ex-cause e)))))

(deftest kill-writer
  (let [cfg (fresh-config)
        _ (d/create-database cfg)
        conn (d/connect cfg)
        seen (atom [])
        too-many (FileSystemException. "/tmp/db/abc" nil "Too many open files")]
    (d/transact conn schema)
    (d/listen conn :k (fn [r] (swap! seen conj r)))
    (let [before @conn
          [[p q hung blocked] caught]
          (with-uncaught-handler
            (fn []
              (is (identical? too-many (dc/kill-writer! conn too-many)))
              (let [p (d/load-entities conn [[5 :n 1 (+ tx0 9) true]])
                    q (d/transact! conn [{:n 2}])
                    hung (binding [dc/*hang-ms* 200]
                           (try (d/transact conn [{:n 3}]) (catch ExceptionInfo e e)))
                    blocked (future @p)]
                (Thread/sleep 100)
                [p q hung blocked])))]
      (testing "the writer thread died of the exception (uncaught handler, like a dying thread)"
        (is (identical? too-many (dc/writer-error conn)))
        (is (some (fn [[thread e]] (and (identical? too-many e) (.startsWith ^String thread "datahike-standin-writer-")))
                  @caught)))
      (testing "load-entities and transact! return deref-ables that are never delivered"
        (is (not (realized? p)))
        (is (not (realized? q)))
        (is (timed-out? p 100))
        (is (timed-out? q 100))
        (is (not (realized? blocked)) "a blocking deref hangs")
        (future-cancel blocked))
      (testing "transact hangs (bounded by *hang-ms* in the stand-in)"
        (is (= :standin/hung (:error (ex-data hung)))))
      (testing "nothing was committed, no listener called"
        (is (identical? before @conn))
        (is (= [] @seen))))
    (testing "release works; a new connection gets a new writer"
      (d/release conn)
      (let [c2 (d/connect cfg)]
        (is (nil? (dc/writer-error c2)))
        (is (= (+ tx0 2) (:max-tx (:db-after (d/transact c2 [{:n 5}])))))
        (d/release c2)))
    (d/delete-database cfg)))

(deftest kill-writer-mid-transaction
  (testing "a write being applied when the writer dies is not committed"
    (let [conn (fresh-conn)
          entered (CountDownLatch. 1)
          gate (CountDownLatch. 1)]
      (d/transact conn schema)
      (let [before @conn
            [p _] (with-uncaught-handler
                    (fn []
                      (let [p (dc/dispatch! conn :transact
                                            (fn [db]
                                              (.countDown entered)
                                              (.await gate 5 TimeUnit/SECONDS)
                                              (d/with db [{:n 1}]))
                                            (constantly 1))]
                        (.await entered 5 TimeUnit/SECONDS)
                        (dc/kill-writer! conn nil)
                        (.countDown gate)
                        (Thread/sleep 100)
                        p)))]
        (is (not (realized? p)))
        (is (identical? before @conn))
        (is (instance? FileSystemException (dc/writer-error conn))))
      (d/release conn))))

(deftest kill-writer-after-n-datoms
  (let [tx-order (fx/intern-values (:tx-order (fx/load-fixture "kitchen-sink")))
        batches (mapv vec (partition-all 1000 tx-order))
        reference (fx/empty-conn "kitchen-sink")
        _ (doseq [b (take 2 batches)] @(d/load-entities reference b))
        conn (fx/empty-conn "kitchen-sink")
        too-many (FileSystemException. "/tmp/db" nil "Too many open files")]
    (dc/kill-writer-after! conn 2000 too-many)
    (let [[ps caught] (with-uncaught-handler
                        (fn []
                          (let [ps (mapv #(d/load-entities conn %) batches)]
                            (deref (first ps) 10000 nil)
                            (deref (second ps) 10000 nil)
                            (Thread/sleep 200)
                            ps)))]
      (testing "a restore in batches of 1,000 fails halfway: 2,000 datoms load, then the writer dies"
        (is (= 6 (count ps)))
        (is (= [true true false false false false] (mapv realized? ps)))
        (is (every? #(timed-out? % 50) (drop 2 ps)))
        (is (identical? too-many (dc/writer-error conn)))
        (is (some #(identical? too-many (second %)) @caught)))
      (testing "the db holds exactly the first two batches"
        (is (= [(:max-eid @reference) (:max-tx @reference)] [(:max-eid @conn) (:max-tx @conn)]))
        (is (= (rows (d/datoms (d/history @reference) :eavt)) (rows (d/datoms (d/history @conn) :eavt))))))
    (fx/dispose! reference)
    (fx/dispose! conn)))

;; ---------------------------------------------------------------------------
;; Datahike 0.7 configs

(defn- fresh-conn-07 [extra]
  (let [cfg (merge {:store {:backend :memory :id (UUID/randomUUID)}} extra)]
    (d/create-database cfg)
    (d/connect cfg)))

(deftest datahike-07-configs
  (binding [standin/*version* "0.7"]
    (let [id (UUID/randomUUID)
          cfg (merge (:config @fixture) {:store {:backend :memory :id id}})
          full (d/create-database cfg)
          conn (d/connect cfg)]
      (testing "a 0.7 store config is kept as given: UUID :id, :memory, no :scope"
        (is (= {:backend :memory :id id} (:store full)))
        (is (= full (:config @conn)))
        (is (= "0.7.1660" (get-in @conn [:meta :datahike/version])))
        (is (.contains ^String (pr-str @conn) (str "#uuid \"" id "\""))))
      (testing "the same reports, listeners and datoms as 0.6"
        (let [steps (replay! conn)]
          (doseq [s steps] (check-step "0.7" s))
          (is (every? :heard-before-return? steps)))
        (check-final "0.7" conn))
      (testing "load-entities works the same (and fires no listener)"
        (let [seen (atom 0)
              c2 (fresh-conn-07 {:schema-flexibility :read})]
          (d/listen c2 :k (fn [_] (swap! seen inc)))
          @(d/load-entities c2 [[(inc tx0) :db/txInstant (Date. 0) (inc tx0) true] [1 :x 1 (inc tx0) true]])
          (is (= [(+ tx0 2) 1 0] [(:max-tx @c2) (:max-eid @c2) @seen]))
          (d/release c2)))
      (d/release conn)
      (testing "a reconnect sees the same db; delete works"
        (let [c (d/connect cfg)]
          (is (= (:final-max-tx @fixture) (:max-tx @c)))
          (d/release c))
        (d/delete-database cfg)
        (is (false? (d/database-exists? cfg)))))
    (testing ":file with a UUID :id and a :path"
      (let [cfg {:store {:backend :file :path (str "/tmp/listen-test-" (UUID/randomUUID)) :id (UUID/randomUUID)}}
            full (d/create-database cfg)]
        (is (= (:store cfg) (:store full)))
        (d/delete-database cfg)))
    (testing "0.6-shaped or incomplete store configs are rejected"
      (is (thrown-with-msg? ExceptionInfo #"renamed :mem to :memory"
                            (d/create-database {:store {:backend :mem :id "x"}})))
      (is (thrown-with-msg? ExceptionInfo #"UUID :id" (d/create-database {:store {:backend :memory :id "x"}})))
      (is (thrown-with-msg? ExceptionInfo #"UUID :id" (d/create-database {:store {:backend :memory}})))
      (is (thrown-with-msg? ExceptionInfo #"UUID :id" (d/create-database {:store {:backend :file :path "/tmp/x"}})))))
  (testing "in 0.6 mode (the default) :memory is rejected"
    (is (= "0.6" (standin/version)))
    (is (thrown-with-msg? ExceptionInfo #"0.7" (d/create-database {:store {:backend :memory :id (UUID/randomUUID)}}))))
  (testing "the system property datahike.standin.version selects the mode too"
    (System/setProperty "datahike.standin.version" "0.7")
    (try
      (is (standin/v07?))
      (is (= "0.7.1660" (standin/datahike-version)))
      (finally (System/clearProperty "datahike.standin.version")))
    (is (not (standin/v07?)))))

(ns datacamp.restore-test
  "Backup → restore round trips through the real JNI path into the Datahike stand-in, whose
  load-entities behaves as real Datahike's does (id allocation by first appearance, one
  extra tx per call, identical-object retractions). Every test runs twice, against a local
  directory and against S3 (moto): see `datacamp.backends`."
  (:require [clojure.string :as str]
            [clojure.test :refer [is testing]]
            [datacamp.backends :as bk :refer [defbackend-test]]
            [datacamp.fixtures :as fx]
            [datacamp.test-util :as u]
            [datahike.api :as d]))

(set! *warn-on-reflection* true)

(def ^:private counter (atom 0))

(defn- fresh-conn
  "A new empty stand-in database with the fixture's configuration."
  [config]
  (let [cfg (assoc config :store {:backend :mem :id (str "restore-" (swap! counter inc))})]
    (d/delete-database cfg)
    (d/create-database cfg)
    (d/connect cfg)))

(defn- history [conn]
  (mapv (comp u/typed u/datom-vec) (d/datoms (d/history @conn) :eavt)))

(defn- current [conn]
  (mapv (comp u/typed u/datom-vec) (d/datoms @conn :eavt)))

(defn- round-trip
  "Back up fixture `name` to a fresh target of `backend`, restore it into a fresh db;
  return [fixture restored-conn result backup-result]."
  [backend name backup-opts restore-opts]
  (let [fixture (fx/load-fixture name)
        target (bk/fresh-target backend)
        b (apply bk/backup backend (fx/fixture-conn name) target :database-id name backup-opts)
        conn (fresh-conn (:config fixture))
        r (apply bk/restore backend conn target (:backup-id b) :database-id name restore-opts)]
    [fixture conn r b]))

(defbackend-test history-fixtures-restore-exactly-with-one-call [backend]
  (doseq [name ["kitchen-sink" "schema-on-read" "attribute-refs" "large"]]
    (testing name
      (let [[fixture conn r b] (round-trip backend name [] [])]
        (is (true? (:success r)))
        (is (= 1 (:load-entities-calls r)))
        (is (= (:datom-count b) (:datoms-restored r)))
        (is (true? (= (mapv (comp u/typed u/datom-vec) (:history fixture)) (history conn)))
            "the restored history equals the source's, datom by datom, types included")
        (is (= (:max-eid fixture) (:max-eid @conn)))
        (is (= (inc (:max-tx fixture)) (:max-tx @conn)) "load-entities takes one extra tx")
        (d/release conn)))))

(defbackend-test zstd-backups-restore-exactly [backend]
  (doseq [name ["kitchen-sink" "schema-on-read"]]
    (testing name
      (let [[fixture conn r b] (round-trip backend name [:compression :zstd :chunk-size 4096] [])]
        (is (true? (:success r)))
        (is (< 1 (:chunks-processed r)) "several zstd chunks")
        (is (= (:datom-count b) (:datoms-restored r)))
        (is (true? (= (mapv (comp u/typed u/datom-vec) (:history fixture)) (history conn)))
            "the restored history equals the source's, datom by datom, types included")
        (d/release conn)))))

(defbackend-test many-calls-remap-tx-ids-monotonically [backend]
  (let [[fixture conn r] (round-trip backend "kitchen-sink" [:chunk-size 256] [:batch-size 700])
        src (mapv u/datom-vec (:history fixture))
        dst (mapv u/datom-vec (d/datoms (d/history @conn) :eavt))
        calls (:load-entities-calls r)
        tx-map (into (sorted-map) (map (fn [s t] [(nth s 3) (nth t 3)]) src dst))]
    (is (< 5 calls))
    (is (= (count src) (count dst)))
    (is (true? (= (for [[e a] src] [(get tx-map e e) a]) (for [[e a] dst] [e a])))
        "entity ids identical, tx entities mapped like their txs, attributes identical")
    (is (= (count tx-map) (count (set (map #(nth % 3) dst)))) "tx ids are mapped one to one")
    (is (apply < (vals tx-map)) "strictly increasing")
    (is (every? (fn [[s t]] (<= 0 (- t s) (dec calls))) tx-map) "each call boundary shifts later txs by one")
    (is (= (+ (:max-tx fixture) calls) (:max-tx @conn)))
    (is (= (:max-eid fixture) (:max-eid @conn)))
    (d/release conn)))

(defn- non-ref-values
  "The multiset of [a v] of a db's datoms whose attribute is not a ref (ids may differ)."
  [datoms schema]
  (frequencies (for [[_ a v] (map u/datom-vec datoms)
                     :when (not= :db.type/ref (get-in schema [a :db/valueType]))]
                 [a (u/typed v)])))

(defbackend-test current-state-and-no-history-restore-the-same-facts [backend]
  (doseq [[name opts] [["no-history" []] ["kitchen-sink" [:history? false]]]]
    (testing name
      (let [[fixture conn r] (round-trip backend name opts [])]
        (is (= (count (:current fixture)) (:datoms-restored r)))
        (is (= (count (:current fixture)) (count (d/datoms @conn :eavt))))
        (is (= (non-ref-values (:current fixture) (:schema fixture))
               (non-ref-values (d/datoms @conn :eavt) (:schema fixture))))
        (d/release conn)))))

(defbackend-test thousands-of-chunks [backend]
  (let [[fixture conn r b] (round-trip backend "kitchen-sink" [:chunk-size 200] [:parallel 4])]
    (is (< 1000 (:chunk-count b)))
    (is (= (:chunk-count b) (:chunks-processed r)))
    (is (true? (= (mapv (comp u/typed u/datom-vec) (:history fixture)) (history conn))))
    (d/release conn)))

(defbackend-test empty-backup-restores-to-an-empty-db [backend]
  (let [cfg {:store {:backend :mem :id "restore-empty-src"}}]
    (d/delete-database cfg)
    (d/create-database cfg)
    (let [src (d/connect cfg)
          target (bk/fresh-target backend)
          b (bk/backup backend src target :database-id "e")
          conn (fresh-conn {})
          r (bk/restore backend conn target (:backup-id b) :database-id "e")]
      (is (= 0 (:datoms-restored r)))
      (is (= [] (current conn)))
      (d/release src)
      (d/release conn))))

(defbackend-test progress-is-reported [backend]
  (let [seen (atom [])
        [_ conn r] (round-trip backend "schema-on-read" [:chunk-size 4096] [:progress-fn #(swap! seen conj %)])]
    (is (= :started (:stage (first @seen))))
    (is (= :done (:stage (last @seen))))
    (is (= (:datoms-restored r) (:datoms-done (last @seen)) (:datoms-total (last @seen))))
    (is (apply <= (map :datoms-done @seen)))
    (is (some :chunk-id @seen))
    (d/release conn)))

(defn- thrown-data [f]
  (try (f) nil (catch clojure.lang.ExceptionInfo e (assoc (ex-data e) ::message (ex-message e)))))

(defbackend-test damaged-backups-stop-the-restore-naming-the-chunk [backend]
  (let [fixture (fx/load-fixture "kitchen-sink")
        target (bk/fresh-target backend)
        b (bk/backup backend (fx/fixture-conn "kitchen-sink") target :database-id "ks" :chunk-size 20000)
        chunk (fn [i] (bk/backup-key "ks" (:backup-id b) (str "chunks/datoms-" i ".fressian.gz")))
        attempt (fn [& opts]
                  (let [conn (fresh-conn (:config fixture))
                        data (thrown-data #(apply bk/restore backend conn target (:backup-id b)
                                                  :database-id "ks" opts))]
                    [data (count (d/datoms @conn :eavt))]))]
    (testing "a flipped byte, caught before anything is loaded"
      (bk/flip-byte! backend target (chunk 2) 50)
      ;; `restore-from-s3` defaults to :verify-first? false (its docstring), so name it
      ;; explicitly for S3; the directory case checks the default.
      (let [[data loaded] (apply attempt (when (= :s3 (:kind backend)) [:verify-first? true]))]
        (is (= :datacamp/corrupt (:datacamp/error data)))
        (is (str/includes? (::message data) "chunk 2") (::message data))
        (is (= 0 loaded) "verify-first? keeps the target untouched"))
      (let [[data] (attempt :verify-first? false)]
        (is (= :datacamp/corrupt (:datacamp/error data)))
        (is (str/includes? (::message data) "chunk 2")))
      (bk/flip-byte! backend target (chunk 2) 50))
    (testing "a truncated chunk"
      (let [bs (bk/read-bytes backend target (chunk 1))]
        (bk/truncate! backend target (chunk 1) 100)
        (let [[data] (attempt)]
          (is (= :datacamp/corrupt (:datacamp/error data)))
          (is (str/includes? (::message data) "chunk 1")))
        (bk/write-bytes! backend target (chunk 1) bs)))
    (testing "a missing chunk"
      (bk/delete! backend target (chunk 3))
      (let [[data] (attempt :verify-first? false)]
        (is (= :datacamp/corrupt (:datacamp/error data)))
        (is (str/includes? (::message data) "chunk 3 is missing"))))))

(defbackend-test refusals [backend]
  (let [fixture (fx/load-fixture "schema-on-read")
        target (bk/fresh-target backend)
        restore (partial bk/restore backend)
        b (bk/backup backend (fx/fixture-conn "schema-on-read") target :database-id "sor")]
    (testing "a non-empty target"
      (let [conn (fresh-conn (:config fixture))]
        (d/transact conn {:tx-data [{:sor/name "someone"}]})
        (is (= :datacamp/target-not-empty
               (:datacamp/error (thrown-data #(restore conn target (:backup-id b) :database-id "sor")))))))
    (testing "an incompatible target"
      (let [conn (fresh-conn (assoc (:config fixture) :schema-flexibility :write))
            data (thrown-data #(restore conn target (:backup-id b) :database-id "sor"))]
        (is (= :datacamp/incompatible-target (:datacamp/error data)))
        (is (= {:backup :read :target :write} (get-in data [:differences :schema-flexibility])))
        (is (= 0 (count (d/datoms @conn :eavt))))))
    (testing "an unknown backup"
      (is (= :datacamp/not-found
             (:datacamp/error (thrown-data #(restore (fresh-conn (:config fixture)) target "nope" :database-id "sor"))))))
    (testing "an incomplete backup"
      (bk/delete! backend target (bk/backup-key "sor" (:backup-id b) "complete.marker"))
      (is (= :datacamp/conflict
             (:datacamp/error (thrown-data #(restore (fresh-conn (:config fixture)) target (:backup-id b) :database-id "sor"))))))))

(defbackend-test original-datacamp-backups-restore [backend]
  ;; The original datacamp's backups are folders on disk; for S3 they are uploaded first.
  (let [target (bk/copy-of-directory backend "tests/fixtures/upstream")]
    (doseq [[name id] [["kitchen-sink" "20261126-062656-e0d6a0"] ["large" "20261126-062732-a0777b"]]]
      (testing name
        (let [fixture (fx/load-fixture name)
              conn (fresh-conn (:config fixture))
              r (bk/restore backend conn target id :database-id name)]
          (is (= :datacamp-original (:format r)))
          (is (= (count (:current fixture)) (:datoms-restored r) (count (d/datoms @conn :eavt))))
          (is (= (non-ref-values (:current fixture) (:schema fixture))
                 (non-ref-values (d/datoms @conn :eavt) (:schema fixture)))
              "the same facts (ids are renumbered: the original keeps no history)")
          (when (= name "kitchen-sink")
            (is (every? vector? (for [[_ a v] (map u/datom-vec (d/datoms @conn :eavt))
                                      :when (= a :ks/first+last)] v))
                "composite tuples come back as vectors (the original's own restore fails here)"))
          (d/release conn))))))

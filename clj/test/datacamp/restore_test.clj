(ns datacamp.restore-test
  "Backup → restore round trips through the real JNI path into the Datahike stand-in, whose
  load-entities behaves as real Datahike's does (id allocation by first appearance, one
  extra tx per call, identical-object retractions)."
  (:require [clojure.java.io :as io]
            [clojure.string :as str]
            [clojure.test :refer [deftest is testing]]
            [datacamp.core :as backup]
            [datacamp.fixtures :as fx]
            [datacamp.test-util :as u]
            [datahike.api :as d])
  (:import [java.io File RandomAccessFile]))

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
  "Back up fixture `name`, restore it into a fresh db; return [fixture restored-conn result]."
  [name backup-opts restore-opts]
  (let [fixture (fx/load-fixture name)
        root (u/temp-dir)
        target {:path (str root)}
        b (apply backup/backup-to-directory (fx/fixture-conn name) target :database-id name backup-opts)
        conn (fresh-conn (:config fixture))
        r (apply backup/restore-from-directory conn target (:backup-id b) :database-id name restore-opts)]
    [fixture conn r b]))

(deftest history-fixtures-restore-exactly-with-one-call
  (doseq [name ["kitchen-sink" "schema-on-read" "attribute-refs" "large"]]
    (testing name
      (let [[fixture conn r b] (round-trip name [] [])]
        (is (true? (:success r)))
        (is (= 1 (:load-entities-calls r)))
        (is (= (:datom-count b) (:datoms-restored r)))
        (is (true? (= (mapv (comp u/typed u/datom-vec) (:history fixture)) (history conn)))
            "the restored history equals the source's, datom by datom, types included")
        (is (= (:max-eid fixture) (:max-eid @conn)))
        (is (= (inc (:max-tx fixture)) (:max-tx @conn)) "load-entities takes one extra tx")
        (d/release conn)))))

(deftest many-calls-remap-tx-ids-monotonically
  (let [[fixture conn r] (round-trip "kitchen-sink" [:chunk-size 256] [:batch-size 700])
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

(deftest current-state-and-no-history-restore-the-same-facts
  (doseq [[name opts] [["no-history" []] ["kitchen-sink" [:history? false]]]]
    (testing name
      (let [[fixture conn r] (round-trip name opts [])]
        (is (= (count (:current fixture)) (:datoms-restored r)))
        (is (= (count (:current fixture)) (count (d/datoms @conn :eavt))))
        (is (= (non-ref-values (:current fixture) (:schema fixture))
               (non-ref-values (d/datoms @conn :eavt) (:schema fixture))))
        (d/release conn)))))

(deftest thousands-of-chunks
  (let [[fixture conn r b] (round-trip "kitchen-sink" [:chunk-size 200] [:parallel 4])]
    (is (< 1000 (:chunk-count b)))
    (is (= (:chunk-count b) (:chunks-processed r)))
    (is (true? (= (mapv (comp u/typed u/datom-vec) (:history fixture)) (history conn))))
    (d/release conn)))

(deftest empty-backup-restores-to-an-empty-db
  (let [cfg {:store {:backend :mem :id "restore-empty-src"}}]
    (d/delete-database cfg)
    (d/create-database cfg)
    (let [src (d/connect cfg)
          root (u/temp-dir)
          b (backup/backup-to-directory src {:path (str root)} :database-id "e")
          conn (fresh-conn {})
          r (backup/restore-from-directory conn {:path (str root)} (:backup-id b) :database-id "e")]
      (is (= 0 (:datoms-restored r)))
      (is (= [] (current conn)))
      (d/release src)
      (d/release conn))))

(deftest progress-is-reported
  (let [seen (atom [])
        [_ conn r] (round-trip "schema-on-read" [:chunk-size 4096] [:progress-fn #(swap! seen conj %)])]
    (is (= :started (:stage (first @seen))))
    (is (= :done (:stage (last @seen))))
    (is (= (:datoms-restored r) (:datoms-done (last @seen)) (:datoms-total (last @seen))))
    (is (apply <= (map :datoms-done @seen)))
    (is (some :chunk-id @seen))
    (d/release conn)))

(defn- thrown-data [f]
  (try (f) nil (catch clojure.lang.ExceptionInfo e (assoc (ex-data e) ::message (ex-message e)))))

(defn- flip-byte! [^File f pos]
  (with-open [raf (RandomAccessFile. f "rw")]
    (.seek raf (long pos))
    (let [b (.read raf)]
      (.seek raf (long pos))
      (.write raf (int (bit-xor b 0xff))))))

(deftest damaged-backups-stop-the-restore-naming-the-chunk
  (let [fixture (fx/load-fixture "kitchen-sink")
        root (u/temp-dir)
        target {:path (str root)}
        b (backup/backup-to-directory (fx/fixture-conn "kitchen-sink") target :database-id "ks" :chunk-size 20000)
        chunk (fn [i] (io/file (u/backup-dir root "ks" (:backup-id b)) (str "chunks/datoms-" i ".fressian.gz")))
        attempt (fn [& opts]
                  (let [conn (fresh-conn (:config fixture))
                        data (thrown-data #(apply backup/restore-from-directory conn target (:backup-id b)
                                                  :database-id "ks" opts))]
                    [data (count (d/datoms @conn :eavt))]))]
    (testing "a flipped byte, caught before anything is loaded"
      (flip-byte! (chunk 2) 50)
      (let [[data loaded] (attempt)]
        (is (= :datacamp/corrupt (:datacamp/error data)))
        (is (str/includes? (::message data) "chunk 2") (::message data))
        (is (= 0 loaded) "verify-first? keeps the target untouched"))
      (let [[data] (attempt :verify-first? false)]
        (is (= :datacamp/corrupt (:datacamp/error data)))
        (is (str/includes? (::message data) "chunk 2")))
      (flip-byte! (chunk 2) 50))
    (testing "a truncated chunk"
      (let [bs (java.nio.file.Files/readAllBytes (.toPath ^File (chunk 1)))]
        (with-open [raf (RandomAccessFile. ^File (chunk 1) "rw")] (.setLength raf 100))
        (let [[data] (attempt)]
          (is (= :datacamp/corrupt (:datacamp/error data)))
          (is (str/includes? (::message data) "chunk 1")))
        (java.nio.file.Files/write (.toPath ^File (chunk 1)) ^bytes bs
                                   ^"[Ljava.nio.file.OpenOption;" (make-array java.nio.file.OpenOption 0))))
    (testing "a missing chunk"
      (io/delete-file (chunk 3))
      (let [[data] (attempt :verify-first? false)]
        (is (= :datacamp/corrupt (:datacamp/error data)))
        (is (str/includes? (::message data) "chunk 3 is missing"))))))

(deftest refusals
  (let [fixture (fx/load-fixture "schema-on-read")
        root (u/temp-dir)
        target {:path (str root)}
        b (backup/backup-to-directory (fx/fixture-conn "schema-on-read") target :database-id "sor")]
    (testing "a non-empty target"
      (let [conn (fresh-conn (:config fixture))]
        (d/transact conn {:tx-data [{:sor/name "someone"}]})
        (is (= :datacamp/target-not-empty
               (:datacamp/error (thrown-data #(backup/restore-from-directory conn target (:backup-id b) :database-id "sor")))))))
    (testing "an incompatible target"
      (let [conn (fresh-conn (assoc (:config fixture) :schema-flexibility :write))
            data (thrown-data #(backup/restore-from-directory conn target (:backup-id b) :database-id "sor"))]
        (is (= :datacamp/incompatible-target (:datacamp/error data)))
        (is (= {:backup :read :target :write} (get-in data [:differences :schema-flexibility])))
        (is (= 0 (count (d/datoms @conn :eavt))))))
    (testing "an unknown backup"
      (is (= :datacamp/not-found
             (:datacamp/error (thrown-data #(backup/restore-from-directory (fresh-conn (:config fixture)) target "nope" :database-id "sor"))))))
    (testing "an incomplete backup"
      (io/delete-file (io/file (u/backup-dir root "sor" (:backup-id b)) "complete.marker"))
      (is (= :datacamp/conflict
             (:datacamp/error (thrown-data #(backup/restore-from-directory (fresh-conn (:config fixture)) target (:backup-id b) :database-id "sor"))))))))

(deftest original-datacamp-backups-restore
  (doseq [[name id] [["kitchen-sink" "20261126-062656-e0d6a0"] ["large" "20261126-062732-a0777b"]]]
    (testing name
      (let [fixture (fx/load-fixture name)
            conn (fresh-conn (:config fixture))
            r (backup/restore-from-directory conn {:path "tests/fixtures/upstream"} id :database-id name)]
        (is (= :datacamp-original (:format r)))
        (is (= (count (:current fixture)) (:datoms-restored r) (count (d/datoms @conn :eavt))))
        (is (= (non-ref-values (:current fixture) (:schema fixture))
               (non-ref-values (d/datoms @conn :eavt) (:schema fixture)))
            "the same facts (ids are renumbered: the original keeps no history)")
        (when (= name "kitchen-sink")
          (is (every? vector? (for [[_ a v] (map u/datom-vec (d/datoms @conn :eavt))
                                    :when (= a :ks/first+last)] v))
              "composite tuples come back as vectors (the original's own restore fails here)"))
        (d/release conn)))))

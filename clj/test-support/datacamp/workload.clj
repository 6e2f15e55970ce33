(ns datacamp.workload
  "The scripted workload a real Datahike 0.6.1613 ran to record tests/fixtures/tx-reports.edn
  (schema; persons with component addresses, card-many tags, a :db/noHistory nick, byte-array
  photos; card-one and noHistory replacements; upserts re-asserting unchanged values; a
  phantom re-assertion; tx-meta; retractEntity with components; a schema change; an empty
  transaction …), replayed through the stand-in with the recorded :db/txInstants, so every
  JVM builds the same database, transaction by transaction.

  - `reports`: the fixture map (byte arrays as byte[]).
  - `fresh-conn`: a new empty database with the fixture's configuration.
  - `replay!`: transact steps `from` (inclusive) to `to` (exclusive).
  - `tx-of`: the tx id of step k."
  (:require [clojure.edn :as edn]
            [clojure.java.io :as io]
            [datacamp.fixtures :as fx]
            [datahike.api :as d]
            [datahike.connector :as dc]))

(set! *warn-on-reflection* true)

(def reports
  "The fixture map of tests/fixtures/tx-reports.edn (read once)."
  (delay (edn/read-string {:readers {'fixture/bytes #(.decode (java.util.Base64/getDecoder) ^String %)}}
                          (slurp (io/file (fx/project-dir) "tests" "fixtures" "tx-reports.edn")))))

(defn steps
  "The recorded steps, in transaction order."
  []
  (:steps @reports))

(defn tx-of
  "The tx id step `k` produced."
  [k]
  (:tx (nth (steps) k)))

(defn instant-of
  "The :db/txInstant real Datahike gave step `k`."
  [k]
  (let [s (nth (steps) k)]
    (some (fn [[e a v tx]] (when (and (= a :db/txInstant) (= e tx)) v)) (:tx-data s))))

(def ^:private counter (atom 0))

(defn fresh-conn
  "A connection to a new, empty stand-in database with the workload's configuration (a
  name-based :datahike/id, the same in every JVM for the same `name`)."
  ([] (fresh-conn (str "workload-" (swap! counter inc) "-" (System/nanoTime))))
  ([name]
   (let [cfg (merge (:config @reports) {:store {:backend :mem :id name}})]
     (d/delete-database cfg)
     (d/create-database cfg)
     (let [conn (d/connect cfg)]
       (dc/reset-db! conn (assoc-in @conn [:meta :datahike/id]
                                    (java.util.UUID/nameUUIDFromBytes
                                     (.getBytes (str "datacamp-workload:" name) "UTF-8"))))
       conn))))

(defn replay!
  "Transact steps `from` (inclusive) to `to` (exclusive) into `conn`, each with its recorded
  tx-meta and :db/txInstant; return `conn`. Throws when a step lands on another tx id."
  [conn from to]
  (doseq [k (range from to)
          :let [{:keys [input tx]} (nth (steps) k)
                r (d/transact conn {:tx-data (:tx-data input)
                                    :tx-meta (merge (:tx-meta input) {:db/txInstant (instant-of k)})})]]
    (when-not (= tx (:max-tx (:db-after r)))
      (throw (ex-info (str "step " k " landed on tx " (:max-tx (:db-after r)) ", recorded " tx) {}))))
  conn)

(defn conn-at
  "A new connection holding the workload after its first `n` steps."
  ([n] (replay! (fresh-conn) 0 n))
  ([name n] (replay! (fresh-conn name) 0 n)))

(ns datacamp.capture-load
  "A seeded workload of small transactions for the continuous-backup tests, crash trials
  and benchmarks: persons created, renamed, re-asserted unchanged (phantoms later), tagged
  and untagged, befriended (refs), given component addresses and `:db/noHistory` nicks,
  retracted whole (`retractEntity`), plus empty transactions with tx-meta. Transaction `i`
  of seed `s` is always the same, with the `:db/txInstant` `instant-of i`, so a database
  can be rebuilt in another JVM transaction by transaction (the crash trials rebuild the
  killed process's database from its journal).

  - `fresh-conn`: an empty stand-in database with the schema (a name-based `:datahike/id`).
  - `tx-data`: transaction `i` given the workload's state; `replay!`: transactions `from`
    to `to`.
  - `bench-tx`: a transaction of exactly 10 datoms (9 + its txInstant).
  - `compare-dbs`: source vs restored, modulo phantom re-assertions."
  (:require [clojure.set :as set]
            [datahike.api :as d]
            [datahike.connector :as dconn])
  (:import [java.util Date Random]))

(set! *warn-on-reflection* true)

(def tx0 536870912)

(def schema
  [{:db/ident :p/id :db/valueType :db.type/string :db/cardinality :db.cardinality/one
    :db/unique :db.unique/identity}
   {:db/ident :p/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
   {:db/ident :p/age :db/valueType :db.type/long :db/cardinality :db.cardinality/one}
   {:db/ident :p/tags :db/valueType :db.type/keyword :db/cardinality :db.cardinality/many}
   {:db/ident :p/friend :db/valueType :db.type/ref :db/cardinality :db.cardinality/many}
   {:db/ident :p/nick :db/valueType :db.type/string :db/cardinality :db.cardinality/one
    :db/noHistory true}
   {:db/ident :p/address :db/valueType :db.type/ref :db/cardinality :db.cardinality/one
    :db/isComponent true}
   {:db/ident :a/street :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
   {:db/ident :tx/note :db/valueType :db.type/string :db/cardinality :db.cardinality/one}])

(def ^:private epoch
  "The txInstant of transaction 0 (2027-01-01); transaction i is i × 10 ms later."
  1798761600000)

(defn instant-of
  "The :db/txInstant of workload transaction `i`."
  ^Date [i]
  (Date. (long (+ (long epoch) (* 10 (long i))))))

(defn fresh-conn
  "A connection to a new, empty stand-in database named `name` holding the schema (as
  transaction 0), whose :datahike/id is derived from `name` (the same in every JVM)."
  [name]
  (let [cfg {:store {:backend :mem :id name} :keep-history? true :schema-flexibility :write}]
    (d/delete-database cfg)
    (d/create-database cfg)
    (let [conn (d/connect cfg)]
      (dconn/reset-db! conn (assoc-in @conn [:meta :datahike/id]
                                      (java.util.UUID/nameUUIDFromBytes
                                       (.getBytes (str "datacamp-capture-load:" name) "UTF-8"))))
      (d/transact conn {:tx-data schema :tx-meta {:db/txInstant (instant-of 0)}})
      conn)))

(defn- pick [^Random rnd v] (nth v (.nextInt rnd (count v))))

(defn tx-data
  "Transaction `i` (from 1) of the workload seeded by `seed`, given `alive` (the ids of the
  persons transactions 1..i-1 left, a vector). Returns `[tx-data tx-meta alive']`; the
  random draw depends only on seed and i."
  [seed i alive]
  (let [rnd (Random. (+ (* 1000003 (long seed)) (long i)))
        id (str "p" i)
        someone (fn [] (when (seq alive) (pick rnd alive)))
        op (.nextInt rnd 100)]
    (cond
      (or (< op 30) (< (count alive) 3))
      (let [friend (someone)]
        [[(cond-> {:p/id id :p/name (str "name " i) :p/age (long (.nextInt rnd 90))
                   :p/tags #{(pick rnd [:a :b :c :d])}}
            friend (assoc :p/friend [[:p/id friend]])
            (< (.nextInt rnd 3) 1) (assoc :p/address {:a/street (str "street " i)})
            (< (.nextInt rnd 4) 1) (assoc :p/nick (str "nick " i)))]
         nil (conj alive id)])

      (< op 50)
      [[[:db/add [:p/id (someone)] :p/name (str "renamed " i)]
        [:db/add [:p/id (someone)] :p/age (long (.nextInt rnd 90))]] nil alive]

      (< op 58)
      (let [p (someone)]
        ;; an upsert that re-asserts the unchanged id (and maybe the name): phantoms later
        [[{:p/id p :p/age (long (+ 100 (.nextInt rnd 10)))}] nil alive])

      (< op 68)
      (let [p (someone) t (pick rnd [:a :b :c :d :e])]
        [[(if (.nextBoolean rnd)
            [:db/add [:p/id p] :p/tags t]
            [:db/retract [:p/id p] :p/tags t])] nil alive])

      (< op 76)
      [[[:db/add [:p/id (someone)] :p/nick (str "nick " i)]] nil alive]

      (< op 82)
      (let [a (someone) b (someone)]
        [[[:db/add [:p/id a] :p/friend [:p/id b]]] nil alive])

      (< op 88)
      (let [p (someone)]
        [[[:db/retractEntity [:p/id p]]] nil (vec (remove #{p} alive))])

      (< op 93)
      [[] {:tx/note (str "note " i)} alive]

      :else
      (let [n (+ 2 (.nextInt rnd 3))
            ids (mapv #(str id "-" %) (range n))]
        ;; several new entities referring to each other, by tempids and lookup refs
        [(vec (for [[k pid] (map-indexed vector ids)]
                (cond-> {:db/id (str "t" k) :p/id pid :p/name (str "group " i "/" k)}
                  (pos? k) (assoc :p/friend [(str "t" (dec k))]))))
         nil (into alive ids)]))))

(defn transact-one!
  "Transact workload transaction `i` into `conn`; return `[report alive']`."
  [conn seed i alive]
  (let [[data meta alive'] (tx-data seed i alive)]
    [(d/transact conn {:tx-data data :tx-meta (merge meta {:db/txInstant (instant-of i)})})
     alive']))

(defn replay!
  "Transact workload transactions `from` to `to` (inclusive) into `conn`, starting with
  `alive`; return the alive persons after them."
  [conn seed from to alive]
  (reduce (fn [alive i] (second (transact-one! conn seed i alive)))
          alive (range from (inc (long to)))))

(defn bench-tx
  "A transaction of exactly 10 datoms (a new person with 9 values, plus the txInstant)."
  [i]
  [{:p/id (str "b" i) :p/name (str "bench " i) :p/age (mod i 90) :p/nick (str "n" i)
    :p/tags #{:a :b :c :d :e}}])

;; ------------------------------------------------------------------ comparing databases

(defn- norm [v] (if (bytes? v) [:bytes (vec v)] v))

(defn- eav [ds] (set (map (fn [d] [(nth d 0) (nth d 1) (norm (nth d 2))]) ds)))

(defn- hist [db] (set (map (fn [d] [(nth d 0) (nth d 1) (norm (nth d 2)) (nth d 3) (nth d 4)])
                           (d/datoms (d/history db) :eavt))))

(defn compare-dbs
  "Compare a source db with a restored one as continuous backup promises (DATAHIKE.md):
  the same current datoms (e a v), the same as-of view at each tx of `as-of-txs`, the same
  history except assertions of a value that was already current (phantom re-assertions),
  the same :max-eid, and :max-tx one more (the restore's load-entities call). Returns a map of what differs (empty when equal)."
  [source restored as-of-txs]
  (let [hs (hist source)
        hr (hist restored)
        ;; an as-of view of the source cannot show a :db/noHistory value that was replaced
        ;; or retracted later (no history keeps it): such values are left out of as-of views
        no-nick (fn [s] (set (remove #(= :p/nick (nth % 1)) s)))
        only-source (set/difference hs hr)
        phantom? (fn [[e a v t added]]
                   (and added (some (fn [[e2 a2 v2 t2 added2]]
                                      (and added2 (= [e a v] [e2 a2 v2]) (< (long t2) (long t))))
                                    hs)))
        as-of-diff (into {} (for [t as-of-txs
                                  :let [a (no-nick (eav (d/datoms (d/as-of source t) :eavt)))
                                        b (no-nick (eav (d/datoms (d/as-of restored t) :eavt)))]
                                  :when (not= a b)]
                              [t {:only-source (set/difference a b) :only-restored (set/difference b a)}]))]
    (cond-> {}
      (not= (eav (d/datoms source :eavt)) (eav (d/datoms restored :eavt)))
      (assoc :current {:only-source (set/difference (eav (d/datoms source :eavt)) (eav (d/datoms restored :eavt)))
                       :only-restored (set/difference (eav (d/datoms restored :eavt)) (eav (d/datoms source :eavt)))})
      (seq (set/difference hr hs)) (assoc :history-only-restored (set/difference hr hs))
      (seq (remove phantom? only-source)) (assoc :history-only-source (set (remove phantom? only-source)))
      (seq as-of-diff) (assoc :as-of as-of-diff)
      ;; the restore's one load-entities call takes one transaction of its own
      (not= [(:max-eid source) (inc (:max-tx source))] [(:max-eid restored) (:max-tx restored)])
      (assoc :max [[(:max-eid source) (:max-tx source)] [(:max-eid restored) (:max-tx restored)]]))))

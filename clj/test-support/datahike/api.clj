(ns datahike.api
  "Test stand-in for the parts of Datahike 0.6.1613's `datahike.api` that
  Datacamp and its tests use. Behaviour follows ../shared/DATAHIKE.md and the
  real source (replikativ/datahike 0.6.1613 era); see the namespaces it builds on:
  `datahike.datom` (Datom), `datahike.db` (DB record, history),
  `datahike.db.transaction` (transact, load-entities), `datahike.connector`
  (stores, connections).

  Lifecycle: `create-database` `delete-database` `database-exists?` `connect`
  `release` `db`. Backends `:mem` (string `:id`) and `:file` (`:path`), kept in
  memory for the life of the JVM.
  Reading: `datoms` (`(datoms db :eavt e …)` or `(datoms db {:index :eavt
  :components [e]})`), `history`, `as-of`, `schema`.
  Writing: `transact` / `transact!`, `with` / `db-with`, `load-entities`
  (returns a deref-able; deref rethrows a failure), `listen` / `unlisten`.
  Not provided: `q`, `pull`, `entity`, `since`, `seek-datoms`, `index-range`,
  branches, garbage collection, remote writers, and `swap!`/`reset!` on a
  connection (the real 0.6 `Connection` is an `IAtom` over its internal db
  value; the original datacamp's restore `swap!`s `:max-eid`/`:max-tx` into it,
  and the real outcome recorded in tests/fixtures shows only `:max-tx` taking
  effect - see `datahike.connector/reset-db!` for tests that need it)."
  (:require [datahike.connector :as dc]
            [datahike.db :as db]
            [datahike.db.transaction :as dt]
            [datahike.schema :as ds])
  (:import [clojure.lang Keyword PersistentArrayMap]))

(set! *warn-on-reflection* true)

;; ---------------------------------------------------------------------------
;; configuration

(def default-config
  "The configuration keys Datahike 0.6.1613 fills in when only `:store` is given."
  {:keep-history? true
   :search-cache-size 10000
   :index :datahike.index/persistent-set
   :store-cache-size 1000
   :attribute-refs? false
   :writer {:backend :self}
   :crypto-hash? false
   :schema-flexibility :write
   :branch :db})

(def ^:private hostname
  (delay (try (.getHostAddress (java.net.InetAddress/getLocalHost))
              (catch Exception _ "127.0.0.1"))))

(defn- invalid-config [msg store]
  (throw (ex-info msg {:error :config/invalid :store store})))

(defn- complete-store [{:keys [backend] :as store}]
  (case backend
    :mem (let [store (merge {:id (str (java.util.UUID/randomUUID)) :scope @hostname} store)]
           (when-not (string? (:id store))
             (invalid-config "Invalid datahike configuration: a :mem store :id must be a string (0.6)." store))
           store)
    :file (do (when-not (string? (:path store))
                (invalid-config "Invalid datahike configuration: a :file store needs a string :path." store))
              (merge {:scope @hostname} store))
    (invalid-config (str "The Datahike stand-in supports the :mem and :file backends (0.6), not " backend) store)))

(defn load-config
  "Given a user config, return the full config Datahike 0.6.1613 would use:
  defaults filled in and the store completed with `:scope` (and a random `:id`
  for a `:mem` store without one)."
  [config]
  (when-not (map? (:store config))
    (invalid-config "Invalid datahike configuration: :store is required." (:store config)))
  (-> (merge default-config config)
      (update :store complete-store)))

;; ---------------------------------------------------------------------------
;; lifecycle

(declare transact)

(defn create-database
  "Given a config, create an empty database and return the full config; throws
  ex-info `Database already exists.` when it does. Honours `:initial-tx`."
  [config]
  (let [config (load-config config)]
    (dc/create-store! (dissoc config :initial-tx))
    (when-let [txs (:initial-tx config)]
      (let [conn (dc/connect! config)]
        (try (transact conn txs) (finally (dc/release! conn)))))
    config))

(defn delete-database
  "Given a config, delete its database (releasing its open connection)."
  [config]
  (dc/delete-store! (load-config config)))

(defn database-exists?
  "Given a config, return true if its database exists."
  [config]
  (dc/store-exists? (load-config config)))

(defn connect
  "Given a config, return the connection to its database: the same cached
  object for the same store, one more reference per call (release each).
  Throws ex-info `Database does not exist.` for a missing database."
  [config]
  (dc/connect! (load-config config)))

(defn release
  "Given a connection, drop one reference; the last release closes it. Any later
  use of the connection throws (the real transact would hang)."
  [conn]
  (dc/release! conn))

(defn db
  "Given a connection, return its current database value (= `@conn`)."
  [conn]
  @conn)

;; ---------------------------------------------------------------------------
;; reading

(defmulti datoms
  "Given a db and either an index keyword and components or a map
  `{:index :components}`, return the matching datoms lazily in index order.
  Dispatches like the real one (map argument: `PersistentArrayMap` only)."
  (fn
    ([_db arg-map] (type arg-map))
    ([_db index & _components] (type index))))

(defmethod datoms PersistentArrayMap
  [db {:keys [index components]}]
  (db/-datoms db index (vec components)))

(defmethod datoms Keyword
  [db index & components]
  (db/-datoms db index (vec components)))

(defn history
  "Given a db, return its history view; throws ex-info when the db keeps no history."
  [db]
  (let [base (db/base-db db)]
    (if (:keep-history? (:config base))
      (db/->HistoricalDB base)
      (throw (ex-info "history is only allowed on temporal indexed databases."
                      {:config (:config base)})))))

(defn as-of
  "Given a db or its history view and a tx id (>= tx0) or a java.util.Date,
  return the view as of that point (Datahike 0.6's AsOfDB): for a history view
  the history datoms of the txs up to it; otherwise the datoms live at that
  point, as a vector in Datahike's (hash-map) order, not index order."
  [db time-point]
  (let [base (db/base-db db)]
    (cond
      (not (:keep-history? (:config base)))
      (throw (ex-info "as-of is only allowed on temporal indexed databases." {:config (:config base)}))
      (and (int? time-point) (< (long time-point) 536870912))
      (throw (ex-info "Invalid transaction ID. Must be bigger than 536870912." {:time-point time-point}))
      :else (db/->AsOfDB db time-point))))

(defn schema
  "Given a db, return the user schema keyed by ident (as `datahike.api/schema`)."
  [db]
  (reduce-kv
   (fn [m k v]
     (cond
       (and (keyword? k) (not (or (ds/entity-spec-attr? k) (ds/schema-attr? k) (ds/sys-ident? k)))) (update m k #(merge % v))
       (number? k) (update m v #(merge % {:db/id k}))
       :else m))
   {}
   (:schema (db/base-db db))))

;; ---------------------------------------------------------------------------
;; writing

(defn- realized-promise
  "A deref-able holding a result; deref rethrows it when it is a Throwable."
  [result]
  (reify
    clojure.lang.IDeref
    (deref [_] (if (instance? Throwable result) (throw ^Throwable result) result))
    clojure.lang.IBlockingDeref
    (deref [_ _ _] (if (instance? Throwable result) (throw ^Throwable result) result))
    clojure.lang.IPending
    (isRealized [_] true)))

(defn- notify! [conn report]
  (doseq [[_ f] (:listeners (dc/state conn))]
    (f report))
  report)

(defn- tx-arg [arg-map]
  (cond
    (map? arg-map) (if (contains? arg-map :tx-data)
                     arg-map
                     (throw (ex-info "Bad argument to transact, map missing key :tx-data."
                                     {:error :transact/syntax :argument-keys (keys arg-map)})))
    (or (vector? arg-map) (seq? arg-map)) {:tx-data arg-map}
    :else (throw (ex-info "Bad argument to transact, expected map, vector or sequence."
                          {:error :transact/syntax :argument-type (type arg-map)}))))

(defn with
  "Given a db and `{:tx-data :tx-meta}` (or tx-data), return the TxReport of
  applying it to the db value (nothing is committed)."
  ([db arg-map]
   (let [{:keys [tx-data tx-meta]} (tx-arg arg-map)]
     (with db tx-data tx-meta)))
  ([db tx-data tx-meta]
   (dt/transact-tx-data (db/map->TxReport {:db-before db :db-after db :tx-data []
                                           :tempids {} :tx-meta tx-meta})
                        tx-data)))

(defn db-with
  "Given a db and tx-data, return the db after applying it."
  [db tx-data]
  (:db-after (with db tx-data nil)))

(defn transact
  "Given a connection and `{:tx-data [...] :tx-meta {...}}` (or a vector of
  tx-data), transact synchronously and return the TxReport
  `{:db-before :db-after :tx-data :tempids :tx-meta}`. Throws on a released
  connection."
  [conn arg-map]
  (let [{:keys [tx-data tx-meta]} (tx-arg arg-map)]
    (notify! conn (dc/update-db! conn #(with % tx-data tx-meta)))))

(defn transact!
  "Like `transact` but returns a deref-able of the TxReport."
  [conn arg-map]
  (realized-promise (try (transact conn arg-map) (catch Throwable t t))))

(defn load-entities
  "Given a connection and `[e a v tx added]` tuples (vectors or datoms), load
  them exactly as Datahike 0.6.1613 does (see
  `datahike.db.transaction/transact-entities-directly`) and return a deref-able
  of the TxReport; deref rethrows a failure (e.g. the `ClassCastException` of a
  retraction whose byte[]/map/set/list value is not the asserted object)."
  [conn entities]
  (realized-promise
   (try
     (notify! conn (dc/update-db! conn (fn [db]
                                         (dt/transact-entities-directly
                                          (db/map->TxReport {:db-before db :db-after db :tx-data []
                                                             :tempids {} :tx-meta []})
                                          entities))))
     (catch Throwable t t))))

(defn listen
  "Given a connection, (a key) and a fn, call the fn with each TxReport of a
  transact or load-entities on it; return the key."
  ([conn f] (listen conn (keyword (gensym "listener")) f))
  ([conn key f] (dc/add-listener! conn key f)))

(defn unlisten
  "Given a connection and a listener key, remove the listener."
  [conn key]
  (dc/remove-listener! conn key))

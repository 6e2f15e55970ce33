(ns datahike.api
  "Test stand-in for the parts of Datahike 0.6.1613's `datahike.api` that
  Datacamp and its tests use. Behaviour follows ../shared/DATAHIKE.md and the
  real source (replikativ/datahike 0.6.1613 era); see the namespaces it builds on:
  `datahike.datom` (Datom), `datahike.db` (DB record, history),
  `datahike.db.transaction` (transact, load-entities), `datahike.connector`
  (stores, connections).

  Lifecycle: `create-database` `delete-database` `database-exists?` `connect`
  `release` `db`. Backends `:mem` (string `:id`) and `:file` (`:path`), kept in
  memory for the life of the JVM; in 0.7 mode (`datahike.standin/*version*`)
  `:memory` and `:file` with a UUID `:id`.
  Reading: `datoms` (`(datoms db :eavt e …)` or `(datoms db {:index :eavt
  :components [e]})`), `history`, `as-of`, `schema`.
  Writing: `transact` / `transact!`, `with` / `db-with`, `load-entities`
  (returns a deref-able; deref rethrows a failure), `listen` / `unlisten`.
  Writes go through the connection's writer thread and listeners are called as
  in the real 0.6.1613 - see `datahike.connector` (and its test hooks
  `kill-writer!` / `kill-writer-after!` for a writer that dies).
  Not provided: `q`, `pull`, `entity`, `since`, `seek-datoms`, `index-range`,
  branches, garbage collection, remote writers, and `swap!`/`reset!` on a
  connection (the real 0.6 `Connection` is an `IAtom` over its internal db
  value; the original datacamp's restore `swap!`s `:max-eid`/`:max-tx` into it,
  and the real outcome recorded in tests/fixtures shows only `:max-tx` taking
  effect - see `datahike.connector/reset-db!` for tests that need it)."
  (:require [datahike.connector :as dc]
            [datahike.db :as db]
            [datahike.db.transaction :as dt]
            [datahike.schema :as ds]
            [datahike.standin :as standin])
  (:import [clojure.lang Keyword PersistentArrayMap]))

(set! *warn-on-reflection* true)

;; ---------------------------------------------------------------------------
;; configuration

(def default-config
  "The configuration keys Datahike 0.6.1613 fills in when only `:store` is given
  (used in 0.7 mode too: 0.7.1660's own defaults were not measured)."
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

(defn- complete-store-06 [{:keys [backend] :as store}]
  (case backend
    :mem (let [store (merge {:id (str (java.util.UUID/randomUUID)) :scope @hostname} store)]
           (when-not (string? (:id store))
             (invalid-config "Invalid datahike configuration: a :mem store :id must be a string (0.6)." store))
           store)
    :file (do (when-not (string? (:path store))
                (invalid-config "Invalid datahike configuration: a :file store needs a string :path." store))
              (merge {:scope @hostname} store))
    :memory (invalid-config (str "The :memory backend is Datahike 0.7's; the stand-in imitates 0.6 (use :mem "
                                 "with a string :id, or bind datahike.standin/*version* to \"0.7\").")
                            store)
    (invalid-config (str "The Datahike stand-in supports the :mem and :file backends (0.6), not " backend) store)))

(defn- complete-store-07 [{:keys [backend id] :as store}]
  (when-not (#{:memory :file} backend)
    (invalid-config (str "The Datahike stand-in in 0.7 mode supports the :memory and :file backends, not "
                         backend (when (= :mem backend) " (0.7 renamed :mem to :memory)"))
                    store))
  (when-not (uuid? id)
    (invalid-config "Invalid datahike configuration (0.7): every store config needs a java.util.UUID :id." store))
  (when (and (= :file backend) (not (string? (:path store))))
    (invalid-config "Invalid datahike configuration: a :file store needs a string :path." store))
  store)

(defn load-config
  "Given a user config, return the full config Datahike would use: defaults
  filled in; in 0.6 mode (the default, see `datahike.standin`) the store
  completed with `:scope` (and a random string `:id` for a `:mem` store without
  one); in 0.7 mode the store as given, validated (`:memory` or `:file`, a UUID
  `:id`). Throws ex-info `:config/invalid` for an invalid store."
  [config]
  (when-not (map? (:store config))
    (invalid-config "Invalid datahike configuration: :store is required." (:store config)))
  (-> (merge default-config config)
      (update :store (if (standin/v07?) complete-store-07 complete-store-06))))

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
  applying it to the db value (nothing is committed, no listener is called)."
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

(defn transact!
  "Given a connection and `{:tx-data [...] :tx-meta {...}}` (or a vector/seq of
  tx-data), hand the transaction to the connection's writer and return at once
  a deref-able of its TxReport (real: `datahike.writer/transact!`; a malformed
  argument throws here, synchronously). The report, as the real 0.6.1613 one
  (../shared/fixtures/tx-reports.edn):
  `{:db-before :db-after :tx-data :tempids :tx-meta}` where `:tx-data` holds the
  datoms in the order the transaction produced them (with the real quirks: no
  implicit retraction of a replaced card-one value, re-assertions of unchanged
  values, `:db/noHistory` datoms, every datom of a retractEntity), `:tempids`
  maps tempids to eids plus `:db/current-tx`, and `:tx-meta` is
  `{:db/txInstant inst, <the caller's tx-meta>, :db/commitId uuid}`.
  The deref-able is delivered after the commit and after every `listen`er
  returned (see `datahike.connector`); a failed transaction delivers its
  exception (deref rethrows it). Deref-able semantics: `datahike.connector`
  (a timed deref that runs out THROWS, like the real `throwable-promise`)."
  [conn arg-map]
  (let [{:keys [tx-data tx-meta]} (tx-arg arg-map)]
    (dc/dispatch! conn :transact #(with % tx-data tx-meta) #(count (:tx-data %)))))

(defn transact
  "Given a connection and `{:tx-data [...] :tx-meta {...}}` (or a vector of
  tx-data), transact and return the TxReport (see `transact!`): `@(transact!
  conn arg-map)`. It returns only after the connection's listeners were called
  with the report (on another thread). Throws what the transaction threw, and
  on a released connection. Where the real one blocks forever (dead writer,
  see `datahike.connector/kill-writer!`; a listener that threw), it throws
  ex-info `:standin/hung` after `datahike.connector/*hang-ms*`."
  [conn arg-map]
  (dc/await! (transact! conn arg-map)))

(defn load-entities
  "Given a connection and `[e a v tx added]` tuples (vectors or datoms), hand
  them to the connection's writer, which loads them exactly as Datahike
  0.6.1613 does (see `datahike.db.transaction/transact-entities-directly`), and
  return at once a deref-able of the TxReport (`:tx-meta` `{:db/commitId uuid}`).
  Calls NO listener (real: `datahike.writer/load-entities` delivers without
  them). Deref rethrows a failure (e.g. the `ClassCastException` of a
  retraction whose byte[]/map/set/list value is not the asserted object). When
  the writer is dead (`datahike.connector/kill-writer!`, `kill-writer-after!`)
  the deref-able is never delivered: a blocking deref hangs, a timed deref
  throws (see `datahike.connector`)."
  [conn entities]
  (dc/dispatch! conn :load-entities
                (fn [db]
                  (dt/transact-entities-directly
                   (db/map->TxReport {:db-before db :db-after db :tx-data []
                                      :tempids {} :tx-meta nil})
                   entities))
                (fn [_report] (count entities))))

(defn listen
  "Given a connection, (a key) and a fn, call the fn with the TxReport of each
  later `transact`/`transact!` on the connection (never for `load-entities`);
  return the key (a random one when not given, like the real `(rand)`).
  Real 0.6.1613 behaviour (datahike.writer/transact!): the fn runs after the
  commit on a core.async dispatch thread - here a pool thread
  \"datahike-standin-async-dispatch-N\", never the caller's - and before the
  transacting caller gets the report, so `transact` returns only after every
  listener returned; reports arrive one after another in transaction order; a
  slow listener slows every transaction. A listener that throws: the exception
  goes to the thread's uncaught-exception handler (stderr), the other
  listeners of that report are skipped and that `transact` never returns (real:
  hangs forever; stand-in: `:standin/hung` after
  `datahike.connector/*hang-ms*`); the transaction itself is committed.
  Registering a key again replaces its fn."
  ([conn f] (listen conn (rand) f))
  ([conn key f] (dc/add-listener! conn key f)))

(defn unlisten
  "Given a connection and a listener key, remove the listener; return the
  remaining listeners (a map key -> fn)."
  [conn key]
  (dc/remove-listener! conn key))

(ns datahike.connector
  "Test stand-in for Datahike 0.6.1613's connections and in-memory stores.

  Stores live in this JVM only, keyed by store identity (`[:mem id]`,
  `[:file path]`): a `:file` database is NOT written to disk, but two connects
  of the same config see the same database. `connect` returns the cached
  `Connection` for a store (a reference count per connect); `release` drops one
  reference and, at zero, marks the connection released. Unlike the real one (a
  released connection's `transact` hangs forever), every use of a released
  connection - deref, transact, load-entities, listen - throws an ex-info with
  `:error :standin/connection-released`, so such bugs show up in tests."
  (:require [datahike.db :as db]))

(set! *warn-on-reflection* true)

(deftype Connection [state]
  clojure.lang.IDeref
  (deref [this]
    (let [{:keys [released? db conn-id]} @state]
      (when released?
        (throw (ex-info "Connection has been released (real Datahike would hang or fail here)."
                        {:error :standin/connection-released :conn-id conn-id})))
      db)))

(defmethod print-method Connection [^Connection c ^java.io.Writer w]
  (.write w (str "#datahike/Connection " (pr-str (:conn-id @(.-state c))))))

(defonce ^{:doc "store identity -> the database value 'persisted' in that store."}
  stores (atom {}))

(defonce ^{:doc "store identity -> {:conn Connection :count n} of open connections."}
  connections (atom {}))

(defn store-identity
  "Given a full config, return the identity of its store."
  [{:keys [store]}]
  (case (:backend store)
    :mem [:mem (:id store)]
    :file [:file (:path store)]
    (throw (ex-info (str "The Datahike stand-in supports the :mem and :file backends, not " (:backend store))
                    {:error :standin/unsupported :store store}))))

(defn state
  "The state map of a connection: {:db :conn-id :config :released? :listeners}."
  [^Connection conn]
  @(.-state conn))

(defn check-open!
  "Throw unless the connection is open."
  [^Connection conn]
  (let [{:keys [released? conn-id]} (state conn)]
    (when released?
      (throw (ex-info "Connection has been released; the real Datahike's transact would hang forever."
                      {:error :standin/connection-released :conn-id conn-id})))))

(defn update-db!
  "Given an open connection and a fn of the current db returning a TxReport,
  commit the report's db-after (also to the store) and return the report."
  [^Connection conn f]
  (locking conn
    (check-open! conn)
    (let [{:keys [db conn-id]} (state conn)
          report (f db)]
      (swap! (.-state conn) assoc :db (:db-after report))
      (swap! stores assoc conn-id (:db-after report))
      report)))

(defn add-listener!
  "Register f under key to be called with each TxReport of the open connection."
  [^Connection conn key f]
  (check-open! conn)
  (swap! (.-state conn) assoc-in [:listeners key] f)
  key)

(defn remove-listener!
  "Remove the listener registered under key."
  [^Connection conn key]
  (swap! (.-state conn) update :listeners dissoc key)
  nil)

(defn reset-db!
  "Test hook: replace the open connection's current db value (and its store's).
  The real 0.6 `Connection` implements `IAtom` (`swap!`/`reset!` act on its
  internal value); the stand-in offers only this explicit hook, see the
  namespace doc of `datahike.api`."
  [^Connection conn db-value]
  (locking conn
    (check-open! conn)
    (swap! (.-state conn) assoc :db db-value)
    (swap! stores assoc (:conn-id (state conn)) db-value)
    db-value))

(defn connect!
  "Given a full config of an existing store, return its (cached) connection,
  counting one more reference."
  [config]
  (let [id (store-identity config)]
    (locking connections
      (if-let [{:keys [conn]} (get @connections id)]
        (do (swap! connections update-in [id :count] inc) conn)
        (let [stored (or (get @stores id)
                         (throw (ex-info "Database does not exist."
                                         {:type :db-does-not-exist :config config})))
              conn (Connection. (atom {:db (dissoc stored :migration)
                                       :conn-id id
                                       :config (:config stored)
                                       :released? false
                                       :listeners {}}))]
          (swap! connections assoc id {:conn conn :count 1})
          conn)))))

(defn- mark-released! [^Connection conn]
  (swap! (.-state conn) assoc :released? true))

(defn release!
  "Drop one reference to the connection; at zero it is released. Releasing a
  connection that is no longer open is a no-op, as in Datahike."
  [^Connection conn]
  (let [id (:conn-id (state conn))]
    (locking connections
      (when-let [{n :count cached :conn :as entry} (get @connections id)]
        (when (identical? cached conn)
          (if (<= (long n) 1)
            (do (swap! connections dissoc id) (mark-released! conn))
            (swap! connections assoc id (update entry :count dec))))))
    nil))

(defn create-store!
  "Given a full config, store an empty database for it; throws if it exists."
  [config]
  (let [id (store-identity config)]
    (locking connections
      (when (contains? @stores id)
        (throw (ex-info "Database already exists." {:type :db-already-exists :config (:store config)})))
      (swap! stores assoc id (db/empty-db config))
      config)))

(defn put-store!
  "Given a full config and a database value, store the value (used to replay fixtures)."
  [config db-value]
  (swap! stores assoc (store-identity config) db-value)
  config)

(defn delete-store!
  "Delete the store of a config, releasing its open connection if any."
  [config]
  (let [id (store-identity config)]
    (locking connections
      (when-let [{:keys [conn]} (get @connections id)]
        (swap! connections dissoc id)
        (mark-released! conn))
      (swap! stores dissoc id)
      nil)))

(defn store-exists?
  "True if a database exists for the config's store."
  [config]
  (contains? @stores (store-identity config)))

(ns ^:no-doc datacamp.datahike
  "What Datacamp needs from Datahike, resolved at run time (Datahike is not a compile-time
  dependency): the db behind a connection, its datoms, and facts read off its schema."
  (:import [clojure.lang IBlockingDeref IDeref]
           [java.util.concurrent TimeoutException]))

(set! *warn-on-reflection* true)

(def tx0
  "The first transaction id of every Datahike database (2^29)."
  536870912)

(defn api-fn
  "Given a symbol's name in datahike.api, return the function; throw `ex-info`
  (`:datacamp/missing-dependency`) when Datahike is not on the classpath."
  [sym]
  (let [full (symbol "datahike.api" (name sym))]
    (or (try (requiring-resolve full)
             (catch java.io.FileNotFoundException e
               (throw (ex-info "Datahike (datahike.api) is not on the classpath"
                               {:datacamp/error :datacamp/missing-dependency
                                :datacamp/hint "add io.replikativ/datahike to your dependencies"}
                               e))))
        (throw (ex-info (str full " does not exist in this Datahike version")
                        {:datacamp/error :datacamp/missing-dependency})))))

(defn- timeout?
  "True when `e` is how a timed deref of a Datahike deref-able reports that time ran out:
  0.6's `throwable-promise` THROWS an ExceptionInfo whose cause is the TimeoutException
  (its timeout value is only returned for a delivered nil); a bare TimeoutException too."
  [^Throwable e]
  (or (instance? TimeoutException e)
      (and (instance? clojure.lang.ExceptionInfo e)
           (instance? TimeoutException (ex-cause e)))))

(defn await-write
  "Given what a Datahike write returned (`load-entities`' deref-able; a plain value is
  returned as is) and a bound in ms, wait at most that long and return its value. A failure
  the writer delivered is rethrown. When no answer comes in time — Datahike's writer died
  (e.g. a `:file` store out of file descriptors) and will never deliver — return
  `::timeout` instead of waiting forever, whichever way the deref-able reports it (a
  timeout value, or a thrown ExceptionInfo caused by a TimeoutException)."
  [p ^long timeout-ms]
  (let [bounded (fn [d]
                  (try
                    (deref d timeout-ms ::timeout)
                    (catch java.util.concurrent.ExecutionException e
                      (throw (or (.getCause e) e)))
                    (catch Exception e
                      (if (timeout? e) ::timeout (throw e)))))]
    (cond
      (instance? IBlockingDeref p) (bounded p)
      ;; A deref-able without a timed deref: wait for it on another thread, bounded.
      (instance? IDeref p) (bounded (future (deref ^IDeref p)))
      :else p)))

(defn current-db
  "Given a connection, return its current db value; throw `:datacamp/invalid-argument`
  for nil or anything that is not a connection."
  [conn]
  (when-not (instance? IDeref conn)
    (throw (ex-info (if (nil? conn)
                      "conn is nil: pass a Datahike connection"
                      (str "conn must be a Datahike connection, got " (class conn)))
                    {:datacamp/error :datacamp/invalid-argument})))
  @conn)

(defn datoms
  "Return the EAVT datoms of `db` (its history when `history?`), lazily."
  [db history?]
  (let [datoms-fn (api-fn 'datoms)]
    (if history?
      (datoms-fn ((api-fn 'history) db) :eavt)
      (datoms-fn db :eavt))))

(defn- attr-entries
  "The attribute definitions of a schema map (ident -> attribute map)."
  [schema]
  (filter (fn [[k v]] (and (keyword? k) (map? v))) schema))

(defn- value-key
  "A value as a grouping key that is equal for equal contents (NaN equals NaN, byte arrays
  compare by content), as Datahike's index compares them."
  [v]
  (cond
    (and (instance? Double v) (Double/isNaN v)) ::nan
    (bytes? v) (vec ^bytes v)
    :else v))

(defn- current-as-of
  "The current datoms at `basis`, derived while streaming the history (EAVT order, so each
  [e a v]'s datoms are adjacent and ascend by tx): the last assertion of every [e a v]
  whose last datom up to `basis` is an assertion. (Datahike 0.6's `as-of` view does not
  return EAVT order, which the backup's chunk boundaries depend on.)"
  [history basis]
  (->> history
       (filter #(<= (long (nth % 3)) basis))
       (partition-by (fn [d] [(nth d 0) (nth d 1) (value-key (nth d 2))]))
       (keep (fn [group] (let [d (last group)] (when (nth d 4) d))))))

(defn snapshot-datoms
  "The datoms of `db` as they were at transaction `basis` (the snapshot an interrupted
  backup read), in EAVT order: history datoms up to `basis`, or the current datoms at
  `basis`. Throws `:datacamp/conflict` when the db changed since `basis` and keeps no
  history to recover the snapshot from."
  [db history? basis]
  (let [basis (long basis)]
    (cond
      history? (filter #(<= (long (nth % 3)) basis) (datoms db true))
      (= basis (:max-tx db)) (datoms db false)
      (get-in db [:config :keep-history?]) (current-as-of (datoms db true) basis)
      :else (throw (ex-info (str "the database changed since the backup started (max-tx " basis
                                 " then, " (:max-tx db) " now) and keeps no history, so the"
                                 " backup's snapshot cannot be read again; start a new backup")
                            {:datacamp/error :datacamp/conflict :basis basis :max-tx (:max-tx db)})))))

(defn ref-attrs
  "Given a db, return the attributes whose values are entity ids: their idents and, for
  `:attribute-refs? true` databases, their entity ids too."
  [db]
  (vec (for [[ident attr] (attr-entries (:schema db))
             :when (= :db.type/ref (:db/valueType attr))
             a (cond-> [ident] (:db/id attr) (conj (:db/id attr)))]
         a)))

(defn no-history-attrs
  "Given a db, return its `:db/noHistory` attributes: their idents and, for
  `:attribute-refs? true` databases, their entity ids too."
  [db]
  (vec (for [[ident attr] (attr-entries (:schema db))
             :when (:db/noHistory attr)
             a (cond-> [ident] (:db/id attr) (conj (:db/id attr)))]
         a)))

(defn listen!
  "Register `f` under `key` as a listener of the connection's transactions (`d/listen`)."
  [conn key f]
  ((api-fn 'listen) conn key f))

(defn unlisten!
  "Remove the listener registered under `key` (`d/unlisten`)."
  [conn key]
  ((api-fn 'unlisten) conn key))

(defn tx-instant-attr
  "The attribute under which datoms carry `:db/txInstant`: the keyword, or its entity id in
  `:attribute-refs? true` databases."
  [db]
  (if (get-in db [:config :attribute-refs?])
    (or (get-in db [:schema :db/txInstant :db/id]) :db/txInstant)
    :db/txInstant))

(defn safe-config
  "The db's configuration without anything that may hold secrets (store details beyond
  the backend, credentials)."
  [db]
  (let [cfg (:config db)]
    (-> (select-keys cfg [:keep-history? :schema-flexibility :attribute-refs? :index
                          :search-cache-size :store-cache-size :crypto-hash? :branch])
        (assoc :store (select-keys (:store cfg) [:backend])))))

(defn describe
  "Facts the backup records about `db`."
  [db]
  {:max-eid (:max-eid db)
   :max-tx (:max-tx db)
   :datahike-version (some-> (get-in db [:meta :datahike/version]) str)
   :datahike-id (some-> (get-in db [:meta :datahike/id]) str)
   :keep-history? (boolean (get-in db [:config :keep-history?]))
   :attribute-refs? (boolean (get-in db [:config :attribute-refs?]))
   :db-config (safe-config db)
   :ref-attrs (ref-attrs db)
   :no-history-attrs (no-history-attrs db)
   :tx-instant-attr (tx-instant-attr db)})

(ns datacamp.fixtures
  "Real Datahike 0.6.1613 databases (tests/fixtures/NAME.fressian, see
  tests/fixtures/README.txt) for tests, and stand-in connections replaying them.

  - `load-fixture`: the fixture map, read once per JVM (memoized).
  - `fixture-db`, `fixture-conn`: a `datahike.db.DB` / connection whose config,
    schema, max-eid, max-tx, current datoms and history datoms are the
    fixture's, in the fixture's order.

  Fressian loses Clojure collection types: vectors AND lists come back as
  `java.util.List`, sets as `java.util.HashSet`. `load-fixture` restores them
  recursively in `:config`, `:schema` and in the values of the datom tuples of
  `:history`, `:current` and `:tx-order`: every `java.util.List` becomes a
  vector (so tuple values and `:db/tupleAttrs` are vectors again), every
  non-Clojure set a Clojure set, every non-Clojure map a Clojure map; the tuples
  themselves become vectors `[e a v tx added]`. Values that contain none of
  these are returned as the very objects read. Consequence: a schema-on-read
  value that was a LIST comes back as a VECTOR (the Fressian files cannot tell).
  Other keys (`:queries`, `:tx-order-check`) are left as read."
  (:require [clojure.data.fressian :as fress]
            [clojure.java.io :as io]
            [datahike.api :as d]
            [datahike.connector :as dc]
            [datahike.datom :as dd]
            [datahike.db :as db]))

(set! *warn-on-reflection* true)

(defn project-dir
  "The project root: system property `datacamp.project.dir`, else the working directory."
  ^String []
  (or (System/getProperty "datacamp.project.dir") (System/getProperty "user.dir")))

(defn fixture-file
  "Given a fixture name (e.g. \"kitchen-sink\"), return its Fressian file."
  ^java.io.File [name]
  (io/file (project-dir) "tests" "fixtures" (str name ".fressian")))

(declare restore-value)

(defn- restore-all
  "Restore each element; return nil when nothing changed."
  [xs]
  (let [ys (mapv restore-value xs)]
    (when-not (every? true? (map identical? xs ys)) ys)))

(defn restore-value
  "Given a value read by data.fressian, return it with Clojure collection types
  restored (List -> vector, java Set -> set, java Map -> map), recursively; an
  unchanged value is returned as the same object."
  [v]
  (cond
    (instance? clojure.lang.IPersistentVector v) (if-let [ys (restore-all v)] ys v)
    (instance? clojure.lang.IPersistentSet v) (if-let [ys (restore-all (seq v))] (set ys) v)
    (instance? clojure.lang.IPersistentMap v)
    (let [ks (keys v) vs (vals v) ks' (restore-all ks) vs' (restore-all vs)]
      (if (or ks' vs') (zipmap (or ks' (vec ks)) (or vs' (vec vs))) v))
    (instance? clojure.lang.IPersistentCollection v) v
    (instance? java.util.List v) (mapv restore-value v)
    (instance? java.util.Set v) (set (map restore-value v))
    (instance? java.util.Map v) (into {} (map (fn [[k x]] [(restore-value k) (restore-value x)])) v)
    :else v))

(defn- restore-tuple [t]
  (let [[e a v tx added] t]
    [e a (restore-value v) tx added]))

(defn- read-fixture [name]
  (let [f (fixture-file name)]
    (when-not (.exists f)
      (throw (ex-info (str "No fixture file " f) {:fixture name :file (str f)})))
    (let [m (with-open [in (io/input-stream f)] (fress/read in))]
      (cond-> (-> m
                  (update :config restore-value)
                  (update :schema restore-value))
        (:history m) (update :history #(mapv restore-tuple %))
        (:current m) (update :current #(mapv restore-tuple %))
        (:tx-order m) (update :tx-order #(mapv restore-tuple %))))))

(def ^:private cache (atom {}))

(defn load-fixture
  "Given a fixture name, return the fixture map (read once, then cached):
  `:config :max-eid :max-tx :schema :history :current :tx-order :queries
  :tx-order-check :datahike/version`, collections restored as described in the
  namespace docstring."
  [name]
  (or (get @cache name)
      (let [m (read-fixture name)]
        (swap! cache assoc name m)
        m)))

(defn incomparable?
  "True for values `compare` only accepts when identical: arrays and
  non-Comparable objects (maps, sets, lists …)."
  [v]
  (and (some? v)
       (or (.isArray (class v))
           (not (or (instance? Comparable v) (instance? Number v))))))

(defn- content-key [v]
  (if (.isArray (class v))
    [(class v) (vec (if (bytes? v) (seq ^bytes v) (seq (object-array [v]))))]
    [(class v) v]))

(defn intern-values
  "Given datom tuples `[e a v tx added]`, return them with every incomparable
  value replaced by the first value of equal content seen on the same e and a,
  so an assertion and its retraction share one object as in the real database.
  The 2-arity takes and returns the intern table too: [table tuples]."
  ([tuples] (second (intern-values {} tuples)))
  ([table tuples]
   (loop [table table ts (seq tuples) out (transient [])]
     (if-let [t (first ts)]
       (let [v (nth t 2)]
         (if (incomparable? v)
           (let [[e a _ tx added] t
                 k [e a (content-key v)]
                 v' (get table k v)]
             (recur (assoc table k v') (next ts) (conj! out (if (identical? v v') t [e a v' tx added]))))
           (recur table (next ts) (conj! out t))))
       [table (persistent! out)]))))

(defn- ->datoms [tuples]
  (mapv (fn [[e a v tx added]] (dd/datom e a v tx added)) tuples))

(def ^:private db-cache (atom {}))

(defn fixture-db
  "Given a fixture name, return a DB value replaying it: the fixture's config,
  schema, max-eid, max-tx, current datoms and history (cached per name)."
  [name]
  (or (get @db-cache name)
      (let [f (load-fixture name)
            [table current] (intern-values {} (:current f))
            history (some->> (:history f) (intern-values table) second)
            v (db/db-from-datoms {:config (:config f)
                                  :schema (:schema f)
                                  :max-eid (:max-eid f)
                                  :max-tx (:max-tx f)
                                  :current (->datoms current)
                                  :history (some-> history ->datoms)})]
        (swap! db-cache assoc name v)
        v)))

(defn fixture-config
  "Given a fixture name, return a full config like the fixture's, with a fresh
  `:file` store of its own (kept in memory by the stand-in)."
  [name]
  (d/load-config (assoc (:config (load-fixture name))
                        :store {:backend :file
                                :path (str (System/getProperty "java.io.tmpdir")
                                           "/datacamp-fixture-" name "-" (java.util.UUID/randomUUID))})))

(defn fixture-conn
  "Given a fixture name, return a new stand-in connection whose database replays
  the fixture (config equal to the fixture's apart from the store's :path and
  :scope, which the fixture dropped). Release it like any connection."
  [name]
  (let [config (fixture-config name)]
    (dc/put-store! config (assoc (fixture-db name)
                                 :config config
                                 ;; A replay stands for the same persisted database in every JVM
                                 ;; (as a real store keeps its id): a name-based :datahike/id.
                                 :meta (assoc (db/new-meta (java.util.Date.))
                                              :datahike/id (java.util.UUID/nameUUIDFromBytes
                                                            (.getBytes (str "datacamp-fixture:" name) "UTF-8")))))
    (d/connect config)))

(defn empty-conn
  "Given a fixture name (or a config map), return a connection to a new, empty
  database with the same config (fresh store)."
  [name-or-config]
  (let [config (if (map? name-or-config)
                 (d/load-config name-or-config)
                 (fixture-config name-or-config))]
    (d/create-database config)
    (d/connect config)))

(defn dispose!
  "Given a connection, delete its database (and release it), freeing memory."
  [conn]
  (dc/delete-store! (:config (dc/state conn))))

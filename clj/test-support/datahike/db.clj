(ns datahike.db
  "Test stand-in for Datahike 0.6.1613's `datahike.db`: the `DB` record (so
  `(class db)` is `datahike.db.DB`), the history and as-of views, `TxReport`,
  empty databases and datom access.

  Like the real record, `DB` replaces the record's map-ness where it matters: it
  is `Seqable` over its current EAVT datoms, `(count db)` counts datoms and
  therefore `(keys db)` fails (a `KeySeq` over datoms throws `ClassCastException`
  as soon as it is walked), while keyword lookup of fields still works:
  `(:max-eid db) (:max-tx db) (:config db) (:schema db) (:meta db)`.

  History: as in 0.6.1613 the current indexes hold the live datoms and the
  temporal indexes hold every card-one assertion (`temporal-upsert`), retracted
  card-many values and all retractions. The history view is the merge of the
  temporal EAVT index with the current datoms of card-many and `:db/noHistory`
  attributes (`distinct-datoms`), in temporal EAVT order."
  (:require [clojure.walk]
            [datahike.datom :as dd]
            [datahike.index :as di]
            [datahike.schema :as ds]
            [datahike.db.utils :as dbu]
            [datahike.standin :as standin])
  (:import [datahike.datom Datom]))

(set! *warn-on-reflection* true)

;; ---------------------------------------------------------------------------
;; defrecord with overridable built-in methods (as datahike.db/defrecord-updatable)

(defn- get-sig [method]
  (and (sequential? method)
       (symbol? (first method))
       (vector? (second method))
       (let [sym (first method)
             ns (or (some->> sym resolve meta :ns str) "clojure.core")]
         [(symbol ns (name sym)) (-> method second count)])))

(defn- dedupe-interfaces [deftype-form]
  (let [[deftype* tagname classname fields implements interfaces & more] deftype-form]
    (when (or (not= deftype* 'deftype*) (not= implements :implements))
      (throw (IllegalArgumentException. "deftype-form mismatch")))
    (list* deftype* tagname classname fields implements (vec (distinct interfaces)) more)))

(defn- make-record-updatable [name fields & impls]
  (let [impl-map (->> impls (map (juxt get-sig identity)) (filter first) (into {}))
        body (macroexpand-1 (list* 'defrecord name fields impls))]
    (clojure.walk/postwalk
     (fn [form]
       (if (and (sequential? form) (= 'deftype* (first form)))
         (->> form
              dedupe-interfaces
              (remove (fn [method]
                        (when-let [impl (-> method get-sig impl-map)]
                          (not= method impl))))
              (apply list))
         form))
     body)))

(defmacro ^:private defrecord-updatable
  "`defrecord` whose given method implementations replace the generated ones."
  [name fields & impls]
  (apply make-record-updatable name fields impls))

;; ---------------------------------------------------------------------------
;; protocols

(defprotocol IIndexAccess
  "Datom access shared by the database views."
  (-datoms [db index-type components]
    "Datoms of index-type matching the components, lazily, in index order."))

(defprotocol IView
  "What a database view is made of."
  (-origin [db] "The underlying `DB`.")
  (-view-kind [db] "One of :current :history :as-of."))

(declare equiv-db current-datoms history-datoms as-of-datoms)

(defrecord-updatable DB [schema eavt aevt avet temporal-eavt temporal-aevt temporal-avet
                         max-eid max-tx op-count rschema hash config system-entities
                         ident-ref-map ref-ident-map meta]
  Object
  (hashCode [db] (unchecked-int hash))
  clojure.lang.IHashEq
  (hasheq [db] (unchecked-int hash))
  clojure.lang.Seqable
  (seq [db] (seq eavt))
  clojure.lang.IPersistentCollection
  (count [db] (count eavt))
  (equiv [db other] (equiv-db db other))
  (empty [db] (throw (UnsupportedOperationException. "empty is not supported by the stand-in DB")))

  IIndexAccess
  (-datoms [db index-type components] (current-datoms db index-type components))

  IView
  (-origin [db] db)
  (-view-kind [_] :current))

(defn- unsupported [what kind]
  (throw (UnsupportedOperationException. (str what " is not supported on " kind))))

(defrecord-updatable HistoricalDB [origin-db]
  clojure.lang.IPersistentCollection
  (count [db] (count (-datoms db :eavt [])))
  (equiv [db o] (and (instance? HistoricalDB o) (equiv-db (.-origin-db db) (-origin o))))
  (cons [db [k v]] (unsupported "cons" "HistoricalDB"))
  (empty [db] (unsupported "empty" "HistoricalDB"))
  clojure.lang.Seqable
  (seq [db] (seq (-datoms db :eavt [])))
  clojure.lang.Associative
  (assoc [db k v] (unsupported "assoc" "HistoricalDB"))

  IIndexAccess
  (-datoms [db index-type components] (history-datoms (.-origin-db db) index-type components))

  IView
  (-origin [db] (.-origin-db db))
  (-view-kind [_] :history))

(defrecord-updatable AsOfDB [origin-db time-point]
  clojure.lang.IPersistentCollection
  (count [db] (count (-datoms db :eavt [])))
  (equiv [db o] (identical? db o))
  (cons [db [k v]] (unsupported "cons" "AsOfDB"))
  (empty [db] (unsupported "empty" "AsOfDB"))
  clojure.lang.Seqable
  (seq [db] (seq (-datoms db :eavt [])))
  clojure.lang.Associative
  (assoc [db k v] (unsupported "assoc" "AsOfDB"))

  IIndexAccess
  (-datoms [db index-type components]
    (let [origin (.-origin-db db)]
      (as-of-datoms (-origin origin) (.-time-point db) (= :history (-view-kind origin))
                    index-type components)))

  IView
  (-origin [db] (.-origin-db db))
  (-view-kind [_] :as-of))

(defrecord TxReport [db-before db-after tx-data tempids tx-meta])

(defn db?
  "True for any database view (current, history, as-of)."
  [x]
  (satisfies? IIndexAccess x))

(defn base-db
  "Given any database view, return the underlying `DB`."
  [view]
  (loop [v view]
    (if (instance? DB v) v (recur (-origin v)))))

(defn- equiv-db [^DB db other]
  (and (instance? DB other)
       (= (:schema db) (:schema other))
       (= (seq (:eavt db)) (seq (:eavt other)))))

(defn- store-identity
  "The store id a db prints: 0.6 `[backend scope path-or-id]`; 0.7 (a store
  with a UUID `:id`) the UUID itself (doc/store-id-refactoring.md)."
  [config]
  (let [{:keys [backend scope id path]} (:store config)]
    (cond
      (uuid? id) id
      (= :file backend) [:file scope path]
      :else [backend scope id])))

(defn- print-db [db ^java.io.Writer w]
  (.write w (str "#datahike/DB {:store-id [" (pr-str (store-identity (:config db))) " " (:branch (:config db)) "] "
                 ":commit-id " (pr-str (:datahike/commit-id (:meta db))) " "
                 ":max-tx " (:max-tx db) " :max-eid " (:max-eid db) "}")))

(defn- print-view [kind origin time-point ^java.io.Writer w]
  (.write w (str "#datahike/" kind " {:origin "))
  (binding [*out* w] (pr origin))
  (when (some? time-point)
    (.write w " :time-point ")
    (binding [*out* w] (pr time-point)))
  (.write w "}"))

(defmethod print-method DB [db w] (print-db db w))
(defmethod print-method HistoricalDB [^HistoricalDB db w] (print-view "HistoricalDB" (.-origin-db db) nil w))
(defmethod print-method AsOfDB [^AsOfDB db w] (print-view "AsOfDB" (.-origin-db db) (.-time-point db) w))

;; ---------------------------------------------------------------------------
;; components -> index ranges

(defn- resolve-attr [db a]
  (when (some? a) (dbu/attr-ref-or-ident db a)))

(defn- resolve-v [db a v]
  (if (and (some? v) (some? a) (dbu/ref? db a)) (dbu/entid-strict db v) v))

(defn- filter-v [db a v datoms]
  (if (nil? v)
    datoms
    (let [v (resolve-v db a v)]
      (filter (fn [^Datom d] (zero? (dd/safe-compare v (.-v d)))) datoms))))

(defn- filter-tx [tx datoms]
  (if (nil? tx) datoms (filter #(= (long tx) (long (dd/datom-tx %))) datoms)))

(defn- slice
  "Datoms of one index (current or temporal) matching components, index order."
  [db idx index-type [c0 c1 c2 c3]]
  (case index-type
    :eavt (let [e (dbu/entid-some db c0) a (resolve-attr db c1)]
            (cond->> (cond (nil? c0) (seq idx)
                           (nil? a) (di/slice-eavt idx e)
                           :else (di/slice-eavt idx e a))
              true (filter-v db a c2)
              true (filter-tx c3)))
    :aevt (let [a (resolve-attr db c0) e (dbu/entid-some db c1)]
            (cond->> (cond (nil? a) (seq idx)
                           (nil? e) (di/slice-aevt idx a)
                           :else (di/slice-aevt idx a e))
              true (filter-v db a c2)
              true (filter-tx c3)))
    :avet (let [a (resolve-attr db c0)]
            (cond->> (if (nil? a) (seq idx) (di/slice-avet idx a))
              true (filter-v db a c1)
              (some? c2) (filter #(= (dbu/entid-some db c2) (:e %)))
              true (filter-tx c3)))
    (dbu/raise "Unknown index type " index-type {:error :datoms/index :index index-type})))

(defn- index-for [db index-type temporal?]
  (let [k (keyword (str (when temporal? "temporal-") (name index-type)))]
    (or (dbu/index db k) (dbu/raise "Unknown index type " index-type {:error :datoms/index}))))

(defn current-datoms
  "Given a DB, an index type and components, return the current datoms."
  [db index-type components]
  (slice db (index-for db index-type false) index-type components))

(defn- merge-distinct-sorted
  "Lazily merge two sorted seqs into one distinct sorted seq (tools/merge-distinct-sorted-seqs)."
  [^java.util.Comparator cmp a b]
  (lazy-seq
   (cond
     (empty? a) b
     (empty? b) a
     :else (let [x (first a) y (first b) i (.compare cmp x y)]
             (cond
               (neg? i) (cons x (merge-distinct-sorted cmp (rest a) b))
               (zero? i) (cons x (merge-distinct-sorted cmp (rest a) (rest b)))
               :else (cons y (merge-distinct-sorted cmp a (rest b))))))))

(defn history-datoms
  "Given a DB, an index type and components, return the history datoms: the
  temporal index merged with the current datoms of card-many and noHistory
  attributes, distinct, in temporal index order."
  [db index-type components]
  (let [current (filter (fn [^Datom d]
                          (or (dbu/no-history? db (.-a d)) (dbu/multival? db (.-a d))))
                        (slice db (index-for db index-type false) index-type components))
        temporal (slice db (index-for db index-type true) index-type components)]
    (merge-distinct-sorted (.comparator ^clojure.lang.Sorted (index-for db index-type true))
                           current temporal)))

(defn- as-of-pred
  "Datahike's as-of predicate on a txInstant datom, including the time point
  (a tx id or a java.util.Date)."
  [time-point]
  (if (instance? java.util.Date time-point)
    (fn [^Datom d] (not (.before ^java.util.Date time-point ^java.util.Date (.-v d))))
    (fn [^Datom d] (<= (long (dd/datom-tx d)) (long time-point)))))

(defn- filter-tx-instant
  "The ids of the txs of `datoms` whose txInstant datom satisfies pred
  (datahike.db.utils/filter-txInstant)."
  [db datoms pred]
  (let [tx-attr (if (dbu/attribute-refs? db) (dbu/ref-for db :db/txInstant) :db/txInstant)]
    (into #{}
          (comp (map dd/datom-tx)
                (distinct)
                (mapcat (fn [tx] (history-datoms db :eavt [tx])))
                (keep (fn [^Datom d] (when (and (= tx-attr (.-a d)) (pred d)) (.-e d)))))
          datoms)))

(defn- group-by-step
  "datahike.tools/group-by-step: a transducible step grouping into a transient map."
  [f]
  (fn
    ([] (transient {}))
    ([dst] (persistent! dst))
    ([dst x] (let [k (f x)] (assoc! dst k (conj (get dst k []) x))))))

(defn- assemble-datoms-xform
  "Per [e a] group of history datoms, the datoms live at the end of the group:
  card-many replayed in tx order, card-one the assertion of the last tx."
  [db]
  (mapcat
   (fn [[[_ a] datoms]]
     (if (dbu/multival? db a)
       (->> datoms
            (sort-by dd/datom-tx)
            (reduce (fn [current ^Datom d]
                      (if (dd/datom-added d) (assoc current (.-v d) d) (dissoc current (.-v d))))
                    {})
            vals)
       (let [last-ea-tx (apply max (map dd/datom-tx datoms))
             current (first (filter #(and (dd/datom-added %) (= last-ea-tx (dd/datom-tx %))) datoms))]
         (if current [current] []))))))

(defn as-of-datoms
  "Datoms of the database as of `time-point` (tx id or Date), computed like
  Datahike 0.6's `post-process-datoms`: the history datoms whose tx has a
  txInstant satisfying the as-of predicate; for a history view those, in
  history order; otherwise grouped by [e a] (a transient map) and reduced to
  the live datoms - a vector in that map's order, NOT in index order."
  [db time-point historical? index-type components]
  (let [datoms (history-datoms db index-type components)
        tx-ids (filter-tx-instant db datoms (as-of-pred time-point))
        time-xform (filter (fn [d] (contains? tx-ids (dd/datom-tx d))))]
    (if historical?
      (into [] time-xform datoms)
      (->> (transduce time-xform (group-by-step (fn [^Datom d] [(.-e d) (.-a d)])) datoms)
           (into [] (assemble-datoms-xform db))))))

;; ---------------------------------------------------------------------------
;; empty databases

(def ^:private system-idents
  [:db/ident :db/valueType :db/cardinality :db/doc :db/index :db/unique :db/noHistory
   :db.install/attribute :db/txInstant :db.cardinality/many :db.cardinality/one
   :db.part/sys :db.part/tx :db.part/user :db.type/bigdec :db.type/bigint
   :db.type/boolean :db.type/double :db.type/cardinality :db.type/float :db.type/number
   :db.type/instant :db.type/keyword :db.type/long :db.type/ref :db.type/string
   :db.type/symbol :db.type/unique :db.type/uuid :db.type/valueType
   :db.type.install/attribute :db.unique/identity :db.unique/value :db/isComponent
   :db/tupleType :db/tupleTypes :db/tupleAttrs :db.type/tuple])

(def ^:private system-attributes
  "attribute id -> {attribute id value} of the system attributes 1..9."
  {1 {2 23 3 11 4 "An attribute's or specification's identifier" 6 33}
   2 {2 30 3 11 4 "An attribute's value type"}
   3 {2 19 3 11 4 "An attribute's cardinality"}
   4 {2 26 3 11 4 "An attribute's documentation"}
   5 {2 17 3 11 4 "An attribute's index selection"}
   6 {2 28 3 11 4 "An attribute's unique selection"}
   7 {2 17 3 11 4 "An attribute's history selection"}
   8 {2 31 3 11 4 "Only for interoperability with Datomic"}
   9 {2 22 3 11 4 "A transaction's time-point" 5 true 7 true}})

(def system-datoms
  "The 69 datoms an empty `:attribute-refs? true` database holds at tx0."
  (vec (concat
        (map-indexed (fn [i ident] (dd/datom (inc i) 1 ident dd/tx0 true)) system-idents)
        (for [[e attrs] system-attributes [a v] attrs] (dd/datom e a v dd/tx0 true))
        [(dd/datom dd/tx0 9 (java.util.Date. 0) dd/tx0 true)])))

(def ^:private ref-valued-system-attrs #{2 3 6})

(defn- system-schema []
  (let [id->ident (into {} (map-indexed (fn [i ident] [(inc i) ident]) system-idents))]
    (into {}
          (map-indexed
           (fn [i ident]
             (let [e (inc i)]
               [ident (reduce-kv (fn [m a v]
                                   (assoc m (id->ident a)
                                          (if (ref-valued-system-attrs a) (id->ident v) v)))
                                 {:db/id e}
                                 (get system-attributes e {}))]))
           system-idents))))

(defn- avet-datoms-of [db datoms]
  (filter (fn [^Datom d] (dbu/indexing? db (.-a d))) datoms))

(defn with-indexes
  "Given a DB whose schema, rschema and config are set, a seq of current datoms
  and a seq of temporal (history index) datoms, return it with its six indexes:
  EAVT and temporal EAVT built now, the AEVT and AVET ones as delays built on
  first use (`datahike.db.utils/index`)."
  [db current temporal]
  (let [keep-history? (:keep-history? (:config db))
        temporal (if keep-history? temporal [])]
    (assoc db
           :eavt (di/index-of :eavt false current)
           :aevt (delay (di/index-of :aevt false current))
           :avet (delay (di/index-of :avet false (avet-datoms-of db current)))
           :temporal-eavt (di/index-of :eavt true temporal)
           :temporal-aevt (delay (di/index-of :aevt true temporal))
           :temporal-avet (delay (di/index-of :avet true (avet-datoms-of db temporal)))
           :hash (reduce + 0 (map hash current)))))

(defn new-meta
  "Given a creation date, return a fresh `:meta` map (its `:datahike/version`
  is the imitated one, `datahike.standin/datahike-version`)."
  [^java.util.Date created-at]
  {:datahike/version (standin/datahike-version)
   :datahike/id (java.util.UUID/randomUUID)
   :datahike/created-at created-at})

(defn empty-db
  "Given a full config, return an empty DB: no datoms, max-eid 0, max-tx tx0;
  with `:attribute-refs? true` the 69 system datoms at tx0 (in the current and
  the temporal indexes, as 0.6.1613's empty-db does) and max-eid 38."
  [config]
  (let [attr-refs? (boolean (:attribute-refs? config))
        schema (if attr-refs? (system-schema) ds/implicit-schema)
        ident-ref (if attr-refs? (into {} (map (fn [[k v]] [k (:db/id v)])) schema) {})
        db (map->DB {:schema schema
                     :rschema (dbu/rschema schema)
                     :config config
                     :max-eid (if attr-refs? (count system-idents) 0)
                     :max-tx dd/tx0
                     :op-count 0
                     :system-entities (if attr-refs? (set (range 1 (inc (count system-idents)))) #{})
                     :ident-ref-map ident-ref
                     :ref-ident-map (into {} (map (fn [[k v]] [v k])) ident-ref)
                     :meta (new-meta (java.util.Date.))})
        datoms (if attr-refs? system-datoms [])]
    (with-indexes db datoms datoms)))

(defn- temporal-from-history
  "Given a db (schema set), the current datoms and the history datoms, both in
  EAVT order, return the datoms of the temporal index: the history minus what
  the current card-many/noHistory datoms contribute. A history assertion that is
  also current becomes the current object (as in the real db, where both
  indexes hold one datom). A linear merge walk."
  [db current history]
  (let [cmp dd/cmp-temporal-datoms-eavt-quick
        from-current? (fn [^Datom d] (or (dbu/no-history? db (.-a d)) (dbu/multival? db (.-a d))))]
    (loop [cs (seq current) hs (seq history) out (transient [])]
      (if-let [^Datom h (first hs)]
        (let [^Datom c (first cs)
              i (if c (cmp c h) 1)]
          (cond
            (neg? i) (recur (next cs) hs out)
            (zero? i) (recur (next cs) (next hs) (if (from-current? c) out (conj! out c)))
            :else (recur cs (next hs) (conj! out h))))
        (persistent! out)))))

(defn db-from-datoms
  "Given a full config, schema, max-eid, max-tx, the current datoms (EAVT order)
  and the history datoms (history view order, or nil when the db keeps no
  history; incomparable values of an e+a must be one object, see
  `datacamp.fixtures/intern-values`),
  return a DB that replays them: current indexes from `current`, temporal
  indexes from the history datoms that the current card-many/noHistory datoms
  do not already account for."
  [{:keys [config schema max-eid max-tx current history]}]
  (let [ident-ref (into {} (keep (fn [[k v]]
                                   (cond (number? k) [v k]
                                         (and (map? v) (:db/id v)) [k (:db/id v)])))
                        schema)
        db (map->DB {:schema schema
                     :rschema (dbu/rschema schema)
                     :config config
                     :max-eid max-eid
                     :max-tx max-tx
                     :op-count 0
                     :system-entities (if (:attribute-refs? config)
                                        (set (keep (fn [[_ v]] (when (map? v) (:db/id v))) schema))
                                        #{})
                     :ident-ref-map ident-ref
                     :ref-ident-map (into {} (map (fn [[k v]] [v k])) ident-ref)
                     :meta (new-meta (java.util.Date.))})]
    (with-indexes db current (temporal-from-history db current history))))

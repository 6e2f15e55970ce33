(ns datahike.db.utils
  "Test stand-in for Datahike 0.6.1613's `datahike.db.utils`: attribute
  predicates over the reverse schema, `rschema`, entity-id resolution and the
  searches over the current indexes that transactions use. Functions take the
  `datahike.db.DB` record (they read its fields by keyword)."
  (:require [datahike.datom :as dd]
            [datahike.index :as di])
  (:import [datahike.datom Datom]))

(set! *warn-on-reflection* true)

(defn raise
  "Throw an ex-info whose message is the fragments joined (strings as is, other
  values `pr-str`ed), like Datahike's `raise`."
  [& fragments]
  (let [msgs (butlast fragments)
        data (last fragments)]
    (throw (ex-info (apply str (map #(if (string? %) % (pr-str %)) msgs)) data))))

(defn attribute-refs?
  "True if the db stores attribute ids instead of attribute keywords."
  [db]
  (boolean (:attribute-refs? (:config db))))

(defn ident-for
  "Given a db and an attribute id, return its ident (ids pass through when the
  db has no attribute refs or the id is unknown)."
  [db a]
  (if (and (number? a) (attribute-refs? db))
    (get (:ref-ident-map db) a a)
    a))

(defn ref-for
  "Given a db and an attribute ident, return its attribute id (attribute-refs
  dbs) or nil."
  [db a-ident]
  (get (:ident-ref-map db) a-ident))

(defn attr-ref-or-ident
  "The attribute as stored in datoms: the id in attribute-refs dbs, else the ident."
  [db a]
  (if (and (attribute-refs? db) (not (number? a)) (some? a))
    (ref-for db a)
    a))

(defn is-attr?
  "Given a db, an attribute (ident or id) and an rschema property, return true if
  the attribute has the property."
  [db attr property]
  (let [a-ident (ident-for db attr)
        attrs (get (:rschema db) property)]
    (boolean (and attrs (contains? attrs a-ident)))))

(defn multival? "Cardinality many?" [db a] (is-attr? db a :db.cardinality/many))
(defn ref? "Ref valued?" [db a] (is-attr? db a :db.type/ref))
(defn component? "Component ref?" [db a] (is-attr? db a :db/isComponent))
(defn indexing? "In the AVET index?" [db a] (is-attr? db a :db/index))
(defn no-history? "Marked :db/noHistory?" [db a] (is-attr? db a :db/noHistory))
(defn tuple? "A :db.type/tuple attribute?" [db a] (is-attr? db a :db.type/tuple))
(defn tuple-source? "Part of a composite tuple?" [db a] (is-attr? db a :db/attrTuples))
(defn unique? "Has :db/unique?" [db a] (is-attr? db a :db/unique))

(defn reverse-ref?
  "True for a reverse attribute like `:ns/_name`."
  [ident]
  (cond
    (keyword? ident) (= \_ (nth (name ident) 0))
    (string? ident) (boolean (re-matches #"(?:([^/]+)/)?_([^/]+)" ident))
    (number? ident) false
    :else (raise "Bad attribute type: " ident ", expected keyword or string"
                 {:error :transact/syntax, :attribute ident})))

(defn reverse-ref
  "Toggle the reverse marker of an attribute ident."
  [ident]
  (if (reverse-ref? ident)
    (keyword (namespace ident) (subs (name ident) 1))
    (keyword (namespace ident) (str "_" (name ident)))))

(defn- attr->properties [k v]
  (case v
    :db.unique/identity [:db/unique :db.unique/identity :db/index]
    :db.unique/value [:db/unique :db.unique/value :db/index]
    :db.cardinality/many [:db.cardinality/many]
    :db.type/ref [:db.type/ref :db/index]
    :db.type/tuple [:db.type/tuple]
    (:db.type/valueType :db.type/cardinality :db.type/unique) [:db/systemAttribRef]
    (if (= k :db/ident)
      [:db/ident]
      (when (true? v)
        (case k
          :db/isComponent [:db/isComponent]
          :db/index [:db/index]
          :db/noHistory [:db/noHistory]
          [])))))

(defn- attr-tuples [schema rschema]
  (reduce
   (fn [m tuple-attr]
     (reduce (fn [m [idx attr]] (update m attr assoc tuple-attr idx))
             m
             (map-indexed vector (-> schema tuple-attr :db/tupleAttrs))))
   {}
   (:db.type/tuple rschema)))

(defn rschema
  "Given a schema map, return the reverse schema (property -> #{attrs}) exactly
  as Datahike derives it, including `:db/attrTuples`."
  [schema]
  (let [rs (reduce-kv
            (fn [m attr keys->values]
              (if (keyword? keys->values)
                m
                (reduce-kv
                 (fn [m key value]
                   (reduce (fn [m prop] (assoc m prop (conj (get m prop #{}) attr)))
                           m
                           (attr->properties key value)))
                 (update m :db/ident (fn [coll] (if coll (conj coll attr) #{attr})))
                 keys->values)))
            {}
            schema)]
    (assoc rs :db/attrTuples (attr-tuples schema rs))))

;; ---------------------------------------------------------------------------
;; index access (secondary indexes of a replayed db are built on first use)

(defn index
  "Given a db and an index key (:eavt :aevt :avet :temporal-eavt …), return the
  index, building it first if it is still a delay."
  [db k]
  (force (get db k)))

(defn update-index
  "Given a db, an index key, f and args, return the db with (apply f index args)."
  [db k f & args]
  (assoc db k (apply f (index db k) args)))

(defn derive-aevt
  "Given a db, return it with its AEVT indexes (current and temporal) as delays
  derived from the EAVT ones. AEVT holds the same datoms as EAVT and compares
  the same (e a v) pairs, so deriving it instead of maintaining it changes
  nothing but speed."
  [db]
  (let [eavt (index db :eavt)
        teavt (index db :temporal-eavt)]
    (assoc db
           :aevt (delay (di/index-of :aevt false eavt))
           :temporal-aevt (delay (di/index-of :aevt true teavt)))))

;; ---------------------------------------------------------------------------
;; searches over the current indexes

(defn search-e "Current datoms of e." [db e] (di/slice-eavt (index db :eavt) e))
(defn search-ea "Current datoms of e a." [db e a] (di/slice-eavt (index db :eavt) e a))

(defn search-eav
  "Current datoms of e a with a value that `safe-compare`s equal to v (the
  comparison Datahike's slices use)."
  [db e a v]
  (filter (fn [^Datom d] (zero? (dd/safe-compare v (.-v d)))) (search-ea db e a)))

(defn avet-datoms
  "AVET datoms of attribute a with value v, as Datahike's slice finds them: an
  ordered range lookup, falling back to a scan with `safe-compare` when the
  values of a are not mutually comparable."
  [db a v]
  (let [idx (index db :avet)]
    (try
      (doall (di/slice-avet idx a v))
      (catch ClassCastException _
        (filter (fn [^Datom d] (zero? (dd/safe-compare v (.-v d)))) (di/slice-avet idx a))))))

(defn search-av
  "Current datoms with attribute a and value v (AVET when indexed, else a scan)."
  [db a v]
  (if (indexing? db a)
    (avet-datoms db a v)
    (filter (fn [^Datom d] (= v (.-v d))) (di/slice-aevt (index db :aevt) a))))

;; ---------------------------------------------------------------------------
;; entity ids

(defn numeric-entid? "A positive number?" [x] (and (number? x) (pos? x)))

(defn entid
  "Given a db and an entity reference (id, lookup ref, ident keyword), return the
  entity id or nil; raises on malformed references like Datahike."
  ([db eid] (entid db eid nil))
  ([db eid error-code]
   (cond
     (numeric-entid? eid) eid
     (sequential? eid)
     (let [[attr value] eid]
       (cond
         (not= (count eid) 2)
         (or error-code (raise "Lookup ref should contain 2 elements: " eid
                               {:error :lookup-ref/syntax, :entity-id eid}))
         (not (is-attr? db attr :db/unique))
         (or error-code (raise "Lookup ref attribute should be marked as :db/unique: " eid
                               {:error :lookup-ref/unique, :entity-id eid}))
         (nil? value) nil
         :else (:e (first (avet-datoms db (attr-ref-or-ident db attr) value)))))
     (keyword? eid)
     (:e (first (avet-datoms db (attr-ref-or-ident db :db/ident) eid)))
     :else
     (or error-code (raise "Expected number or lookup ref for entity id, got " eid
                           {:error :entity-id/syntax, :entity-id eid})))))

(defn entid-strict
  "Like `entid` but raises when nothing is found."
  ([db eid] (entid-strict db eid nil))
  ([db eid error-code]
   (or (entid db eid error-code)
       error-code
       (raise "Nothing found for entity id " eid
              {:error :entity-id/missing :entity-id eid}))))

(defn entid-some
  "`entid-strict` for non-nil references, nil otherwise."
  [db eid]
  (when eid (entid-strict db eid)))

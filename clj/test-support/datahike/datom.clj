(ns datahike.datom
  "Test stand-in for Datahike 0.6.1613's `datahike.datom` (JVM only).

  Mirrors the real `Datom` deftype field for field (`^long e a v ^long tx`,
  a retraction stores a negative tx) and the interfaces it implements:
  `Seqable`, `IPersistentCollection`, `Indexed`, `IFn`, `ILookup`,
  `Associative`, `IHashEq`. It is neither `Iterable` nor a `java.util.Collection`
  nor `IReduceInit`, which is why `(vec datom)` throws exactly as the real one
  does (`RuntimeException: Unable to convert: class datahike.datom.Datom to
  Object[]`); `(vec (seq datom))` works.

  Contents:
  - `Datom`, `datom`, `datom?`, `datom-tx`, `datom-added`
  - index comparators as Datahike builds them: `cmp-datoms-eavt-quick` & co.
    (e, a, v, tx) and `cmp-temporal-datoms-*-quick` (… , added). Values are
    compared with `clojure.core/compare` and NO catch, so incomparable values
    (byte[], maps, sets, lists) throw `ClassCastException` unless identical.
  - `safe-compare`: the value comparison Datahike's index SLICES use: a failing
    `compare` falls back to comparing class names (so two distinct values of one
    incomparable class compare 0).
  - `min-bound` / `max-bound`: sentinels that sort before / after every
    attribute or value; used only for range bounds by the stand-in's indexes."
  (:import [clojure.lang Util]))

(set! *warn-on-reflection* true)

(def ^:const tx0
  "The first transaction id (2^29); the system transaction."
  536870912)

(defprotocol IDatom
  "Accessors for the sign-encoded tx of a datom."
  (datom-tx [this] "The (positive) transaction id of a datom.")
  (datom-added [this] "True for an assertion, false for a retraction."))

(declare hash-datom equiv-datom seq-datom nth-datom assoc-datom val-at-datom)

(deftype Datom [^long e a v ^long tx ^:unsynchronized-mutable ^int _hash]
  IDatom
  (datom-tx [_] (if (pos? tx) tx (- tx)))
  (datom-added [_] (pos? tx))

  Object
  (hashCode [d]
    (if (zero? _hash)
      (let [h (int (hash-datom d))]
        (set! _hash h)
        h)
      _hash))
  (toString [d] (pr-str d))

  clojure.lang.IHashEq
  (hasheq [d] (.hashCode d))

  clojure.lang.Seqable
  (seq [d] (seq-datom d))

  clojure.lang.IPersistentCollection
  (equiv [d o] (and (instance? Datom o) (equiv-datom d o)))
  (empty [_] (throw (UnsupportedOperationException. "empty is not supported on Datom")))
  (count [_] 5)
  (cons [d [k v]] (assoc-datom d k v))

  clojure.lang.Indexed
  (nth [this i] (nth-datom this i))
  (nth [this i not-found] (nth-datom this i not-found))

  clojure.lang.IFn
  (invoke [d k] (val-at-datom d k nil))
  (invoke [d k nf] (val-at-datom d k nf))

  clojure.lang.ILookup
  (valAt [d k] (val-at-datom d k nil))
  (valAt [d k nf] (val-at-datom d k nf))

  clojure.lang.Associative
  (entryAt [d k] (some->> (val-at-datom d k nil) (clojure.lang.MapEntry. k)))
  ;; verbatim from Datahike: returns a keyword/nil where Java expects a boolean,
  ;; so `(contains? datom k)` throws there too.
  (containsKey [_ k] (#{:e :a :v :tx :added} k))
  (assoc [d k v] (assoc-datom d k v)))

(defn datom
  "Given e a v (tx, added), return a `Datom`. tx defaults to `tx0`, added to
  true; a retraction is stored with a negative tx like Datahike does."
  (^Datom [e a v] (Datom. e a v tx0 0))
  (^Datom [e a v tx] (Datom. e a v tx 0))
  (^Datom [e a v tx added] (Datom. e a v (if added tx (- (long tx))) 0)))

(defn datom?
  "True if x is a `Datom`."
  [x]
  (instance? Datom x))

(defn- hash-datom [^Datom d]
  (-> (hash (.-e d))
      (Util/hashCombine (hash (.-a d)))
      (Util/hashCombine (hash (.-v d)))))

(defn- equiv-datom [^Datom d ^Datom o]
  (and (== (.-e d) (.-e o))
       (= (.-a d) (.-a o))
       (= (.-v d) (.-v o))))

(defn- seq-datom [^Datom d]
  (list (.-e d) (.-a d) (.-v d) (datom-tx d) (datom-added d)))

(defn- val-at-datom [^Datom d k not-found]
  (case k
    :e (.-e d) "e" (.-e d)
    :a (.-a d) "a" (.-a d)
    :v (.-v d) "v" (.-v d)
    :tx (datom-tx d) "tx" (datom-tx d)
    :added (datom-added d) "added" (datom-added d)
    not-found))

(defn- nth-datom
  ([^Datom d ^long i]
   (case i
     0 (.-e d)
     1 (.-a d)
     2 (.-v d)
     3 (datom-tx d)
     4 (datom-added d)
     (throw (IndexOutOfBoundsException.))))
  ([^Datom d ^long i not-found]
   (case i
     0 (.-e d)
     1 (.-a d)
     2 (.-v d)
     3 (datom-tx d)
     4 (datom-added d)
     not-found)))

(defn- assoc-datom ^Datom [^Datom d k v]
  (case k
    :e (datom v (.-a d) (.-v d) (datom-tx d) (datom-added d))
    :a (datom (.-e d) v (.-v d) (datom-tx d) (datom-added d))
    :v (datom (.-e d) (.-a d) v (datom-tx d) (datom-added d))
    :tx (datom (.-e d) (.-a d) (.-v d) v (datom-added d))
    :added (datom (.-e d) (.-a d) (.-v d) (datom-tx d) v)
    (throw (IllegalArgumentException. (str "invalid key for #datahike/Datom: " k)))))

(defmethod print-method Datom [^Datom d ^java.io.Writer w]
  (.write w "#datahike/Datom ")
  (binding [*out* w]
    (pr [(.-e d) (.-a d) (.-v d) (datom-tx d) (datom-added d)])))

;; ---------------------------------------------------------------------------
;; comparators

(def min-bound
  "Sentinel sorting before every attribute and value (range bounds only)."
  (Object.))

(def max-bound
  "Sentinel sorting after every attribute and value (range bounds only)."
  (Object.))

(defmacro ^:private bounded
  "Compare x and y with `expr` unless one of them is a range sentinel."
  [x y expr]
  `(cond
     (identical? ~x min-bound) (if (identical? ~y min-bound) 0 -1)
     (identical? ~x max-bound) (if (identical? ~y max-bound) 0 1)
     (identical? ~y min-bound) 1
     (identical? ~y max-bound) -1
     :else ~expr))

(defmacro ^:private combine-cmp
  "Return the first non-zero comparison of `comps`, else 0."
  [& comps]
  (reduce (fn [res c] `(let [c# (long ~c)] (if (zero? c#) ~res c#)))
          0
          (reverse comps)))

(defn cmp-attr
  "Compare two attributes like Datahike's `cmp-attr-quick` (`.compareTo`)."
  ^long [a1 a2]
  (bounded a1 a2 (.compareTo ^Comparable a1 a2)))

(defn cmp-value
  "Compare two values with `clojure.core/compare` (no catch), as Datahike's
  `*-quick` index comparators do."
  ^long [v1 v2]
  (bounded v1 v2 (compare v1 v2)))

(defn safe-compare
  "Compare two values like Datahike 0.6's slice comparator: `compare`, and if
  that throws, compare the class names (two incomparable values of the same
  class are therefore 0)."
  ^long [v1 v2]
  (try
    (compare v1 v2)
    (catch Exception _
      (compare (.getName (class v1)) (.getName (class v2))))))

(defn- added-cmp ^long [^Datom d1 ^Datom d2]
  (Boolean/compare (boolean (datom-added d1)) (boolean (datom-added d2))))

(defn- tx-cmp ^long [^Datom d1 ^Datom d2]
  (Long/compare (long (datom-tx d1)) (long (datom-tx d2))))

(defn cmp-datoms-eavt-quick
  "EAVT order of the current index: e, a, v, tx."
  ^long [^Datom d1 ^Datom d2]
  (combine-cmp (Long/compare (.-e d1) (.-e d2))
               (cmp-attr (.-a d1) (.-a d2))
               (cmp-value (.-v d1) (.-v d2))
               (tx-cmp d1 d2)))

(defn cmp-datoms-aevt-quick
  "AEVT order of the current index: a, e, v, tx."
  ^long [^Datom d1 ^Datom d2]
  (combine-cmp (cmp-attr (.-a d1) (.-a d2))
               (Long/compare (.-e d1) (.-e d2))
               (cmp-value (.-v d1) (.-v d2))
               (tx-cmp d1 d2)))

(defn cmp-datoms-avet-quick
  "AVET order of the current index: a, v, e, tx."
  ^long [^Datom d1 ^Datom d2]
  (combine-cmp (cmp-attr (.-a d1) (.-a d2))
               (cmp-value (.-v d1) (.-v d2))
               (Long/compare (.-e d1) (.-e d2))
               (tx-cmp d1 d2)))

(defn cmp-temporal-datoms-eavt-quick
  "EAVT order of the history (temporal) index: e, a, v, tx, added
  (false < true). This is the order of `(d/datoms (d/history db) :eavt)`."
  ^long [^Datom d1 ^Datom d2]
  (combine-cmp (cmp-datoms-eavt-quick d1 d2) (added-cmp d1 d2)))

(defn cmp-temporal-datoms-aevt-quick
  "AEVT order of the history index: a, e, v, tx, added."
  ^long [^Datom d1 ^Datom d2]
  (combine-cmp (cmp-datoms-aevt-quick d1 d2) (added-cmp d1 d2)))

(defn cmp-temporal-datoms-avet-quick
  "AVET order of the history index: a, v, e, tx, added."
  ^long [^Datom d1 ^Datom d2]
  (combine-cmp (cmp-datoms-avet-quick d1 d2) (added-cmp d1 d2)))

(defn index-type->cmp-quick
  "Given an index type (:eavt :aevt :avet) and whether it is a current
  (4-field) or temporal (5-field) index, return its comparator fn."
  ([index-type] (index-type->cmp-quick index-type true))
  ([index-type current?]
   (if current?
     (case index-type
       :aevt cmp-datoms-aevt-quick
       :avet cmp-datoms-avet-quick
       cmp-datoms-eavt-quick)
     (case index-type
       :aevt cmp-temporal-datoms-aevt-quick
       :avet cmp-temporal-datoms-avet-quick
       cmp-temporal-datoms-eavt-quick))))

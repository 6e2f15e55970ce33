(ns datahike.index
  "Test stand-in for Datahike's persistent-set indexes, on Clojure sorted sets.

  Each index is a `sorted-set-by` ordered by the real Datahike comparator for
  its type (see `datahike.datom`). The operations mirror
  `datahike.index.persistent-set` of 0.6.1613:
  - `insert`          current index: add unless an (e a v) datom exists
  - `temporal-insert` history index: add unless an (e a v tx) datom exists
  - `upsert`          current index: drop the old (e a) datom, add the new one
  - `temporal-upsert` history index: record the retraction of the old value and
                      the new assertion, unless the value is unchanged (`=`);
                      an old value of `false` counts as absent (`if old-val`)
  - `remove-datom`
  Range reads (`slice-*`) use sentinel bound datoms."
  (:require [datahike.datom :as dd])
  (:import [datahike.datom Datom]
           [java.util Comparator]))

(set! *warn-on-reflection* true)

(def ^:private max-long Long/MAX_VALUE)

(defn- comparator-of ^Comparator [f]
  (reify Comparator
    (compare [_ a b] (int (f a b)))))

(def ^:private comparators
  (into {}
        (for [t [:eavt :aevt :avet] current? [true false]]
          [[t current?] (comparator-of (dd/index-type->cmp-quick t current?))])))

(defn empty-index
  "Given an index type and whether it is a temporal (history) index, return an
  empty index sorted like Datahike's (temporal indexes also order by added)."
  [index-type temporal?]
  (sorted-set-by (comparators [index-type (not temporal?)])))

(defn index-of
  "Given an index type, temporal flag and datoms, return an index holding them."
  [index-type temporal? datoms]
  (into (empty-index index-type temporal?) datoms))

(defn- bound ^Datom [e a v ^long tx]
  (Datom. (long e) a v tx 0))

(defn- lo [e a v] (bound (or e 0) (if (nil? a) dd/min-bound a) (if (nil? v) dd/min-bound v) 0))
(defn- hi [e a v] (bound (or e max-long) (if (nil? a) dd/max-bound a) (if (nil? v) dd/max-bound v) max-long))

(defn slice-eavt
  "Datoms of an EAVT index matching the given e (a (v)) prefix, in order."
  ([idx e] (subseq idx >= (lo e nil nil) <= (hi e nil nil)))
  ([idx e a] (subseq idx >= (lo e a nil) <= (hi e a nil)))
  ([idx e a v] (subseq idx >= (lo e a v) <= (hi e a v))))

(defn slice-aevt
  "Datoms of an AEVT index matching the given a (e) prefix, in order."
  ([idx a] (subseq idx >= (lo nil a nil) <= (hi nil a nil)))
  ([idx a e] (subseq idx >= (lo e a nil) <= (hi e a nil))))

(defn slice-avet
  "Datoms of an AVET index matching the given a (v (e)) prefix, in order. The
  v comparison is `compare` (it may throw for incomparable values)."
  ([idx a] (subseq idx >= (lo nil a nil) <= (hi nil a nil)))
  ([idx a v] (subseq idx >= (lo nil a v) <= (hi nil a v)))
  ([idx a v e] (subseq idx >= (lo e a v) <= (hi e a v))))

(defn insert
  "Current-index insert: add `d` unless a datom with the same e a v exists."
  [idx ^Datom d]
  (let [e (.-e d) a (.-a d) v (.-v d)
        probe (subseq idx >= (bound e a v 0) <= (bound e a v max-long))]
    (if (seq probe) idx (conj idx d))))

(defn- contains-eavt-tx? [idx ^Datom d]
  (let [e (.-e d) a (.-a d) v (.-v d) tx (long (dd/datom-tx d))]
    (or (contains? idx (Datom. e a v tx 0))
        (contains? idx (Datom. e a v (- tx) 0)))))

(defn temporal-insert
  "History-index insert as Datahike's `-temporal-insert`: the duplicate check
  ignores added, so a datom with the same e a v tx is never added twice."
  [idx ^Datom d]
  (if (contains-eavt-tx? idx d) idx (conj idx d)))

(defn remove-datom
  "Remove exactly `d` (all five fields) from an index."
  [idx d]
  (disj idx d))

(defn upsert
  "Current-index upsert: remove `old` (if any), then add `d`."
  [idx d old]
  (let [idx (if old (remove-datom idx old) idx)]
    (if (contains-eavt-tx? idx d) idx (conj idx d))))

(defn temporal-upsert
  "History-index upsert with the value of the replaced current datom
  (`old-val`, nil when none), exactly as Datahike 0.6.1613's `temporal-upsert`."
  [idx ^Datom d old-val]
  (let [e (.-e d) a (.-a d) v (.-v d) tx (dd/datom-tx d)]
    (if (dd/datom-added d)
      (if old-val
        (if (= v old-val)
          idx
          (-> idx (conj (dd/datom e a old-val tx false)) (conj d)))
        (conj idx d))
      (if old-val
        (conj idx (dd/datom e a old-val tx false))
        idx))))

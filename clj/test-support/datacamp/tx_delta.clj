(ns datacamp.tx-delta
  "REFERENCE IMPLEMENTATION FOR TESTS ONLY - not part of Datacamp's library.

  The before/after delta of one transaction, computed from its TxReport by the
  rule in ../shared/DATAHIKE.md (\"Transaction reports and d/listen\"): for each
  [e a] that the report's `:tx-data` touches, compare the current values in
  `:db-before` with those in `:db-after`; a value that disappeared is a
  retraction `[e a v tx false]`, a value that appeared an assertion
  `[e a v tx true]` (tx = the transaction's id); plus the transaction entity's
  own datoms (txInstant, tx-meta). Unlike the raw `:tx-data` it holds the
  retraction of a replaced card-one value (also of a `:db/noHistory` one) and
  no re-assertion of an unchanged value. It equals the
  `:before-after-delta` that ../shared/fixtures/tx-reports.edn recorded on a
  REAL Datahike 0.6.1613 for every step (see datahike.listen-test), and it is
  what an incremental/continuous capture can replay: the replay then equals a
  full restore modulo \"phantom\" re-assertions (DATAHIKE.md).

  Order (the fixture's): the [e a] pairs in order of first appearance in
  `:tx-data` (the transaction entity's pairs not in `:tx-data` after them);
  within a pair the retractions in `:db-before` EAVT order, then the assertions
  in `:db-after` EAVT order.

  It only uses `datahike.api/datoms` on the report's dbs, so it runs against the
  stand-in and against a real Datahike alike. Values are compared with `=`
  (byte arrays by identity: a retraction carries the very object that was
  current, as Datahike itself requires)."
  (:require [datahike.api :as d]))

(set! *warn-on-reflection* true)

(defn tx-id
  "The transaction id of a TxReport: `(:db/current-tx (:tempids report))`, else
  the db-after's `:max-tx`."
  [report]
  (or (get-in report [:tempids :db/current-tx])
      (:max-tx (:db-after report))))

(defn- values [db e a]
  (mapv :v (d/datoms db :eavt e a)))

(defn- pair-delta [db-before db-after tx [e a]]
  (let [before (values db-before e a)
        after (values db-after e a)
        before-set (set before)
        after-set (set after)]
    (concat
     (for [v before :when (not (contains? after-set v))] [e a v tx false])
     (for [v after :when (not (contains? before-set v))] [e a v tx true]))))

(defn touched-pairs
  "The distinct [e a] pairs of a report's `:tx-data` in order of first
  appearance, followed by the transaction entity's own [tx a] pairs (from
  `:db-after`) that `:tx-data` does not mention."
  [report]
  (let [tx (tx-id report)
        from-tx-data (distinct (map (fn [datom] [(:e datom) (:a datom)]) (:tx-data report)))
        seen (set from-tx-data)
        tx-pairs (distinct (map (fn [datom] [(:e datom) (:a datom)]) (d/datoms (:db-after report) :eavt tx)))]
    (concat from-tx-data (remove seen tx-pairs))))

(defn before-after-delta
  "Given a TxReport (from `d/transact` or a `d/listen` listener), return the
  transaction's before/after delta as a vector of `[e a v tx added]` vectors
  (see the namespace doc for the rule and the order)."
  [report]
  (let [{:keys [db-before db-after]} report
        tx (tx-id report)]
    (into [] (mapcat #(pair-delta db-before db-after tx %)) (touched-pairs report))))

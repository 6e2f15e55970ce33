(ns datahike.db.transaction
  "Test stand-in for Datahike 0.6.1613's `datahike.db.transaction`.

  - `transact-entities-directly` (what `load-entities` runs) is a line-by-line
    port: id allocation in order of first appearance through the `:migration`
    map `{:tids {src-tx new-tx} :eids {src-e new-e}}` carried in the db, one
    extra tx id consumed at the end of each call, `:db.install/attribute`
    tuples skipped, meta attributes (`:db/txInstant`) mapped to the new tx.
  - `transact-tx-data` (what `transact` runs) is a port of the subset tests need:
    entity maps (tempids, nested ref maps, reverse refs, upsert on
    `:db.unique/identity`), `:db/add`, `:db/retract`, `:db/retractEntity`
    (`:db.fn/retractEntity`), `:db.fn/retractAttribute`, `:db/cas`
    (`:db.fn/cas`), lookup refs, tx-id refs (`:db/current-tx`, \"datomic.tx\"),
    `Datom` objects (e and tx kept), composite tuples, tx-meta, schema
    validation with `:schema-flexibility :write`.
    NOT supported (throws ex-info `:error :standin/unsupported`):
    `:db.fn/call`, transaction functions, `:db/purge` & `:db.purge/*`,
    `:db.history.purge/before`, `:db/ensure` / entity specs.

  Both write the same indexes the same way (`with-datom`, `with-datom-upsert`),
  so history, upsert quirks and `ClassCastException`s on incomparable values
  behave as in the real database. Values are normalised as Datahike's store
  round trip does: `-0.0` -> `0.0`, `java.math.BigInteger` -> `clojure.lang.BigInt`."
  (:require [datahike.datom :as dd]
            [datahike.index :as di]
            [datahike.schema :as ds]
            [datahike.db.utils :as dbu :refer [raise]])
  (:import [datahike.datom Datom]
           [clojure.lang ExceptionInfo]
           [java.util Date]))

(set! *warn-on-reflection* true)

(defn normalize-value
  "Given a value, return it as Datahike 0.6 persists it: -0.0 becomes 0.0 and a
  java.math.BigInteger a clojure.lang.BigInt; anything else unchanged."
  [v]
  (cond
    (and (instance? Double v) (zero? (double v))) 0.0
    (instance? java.math.BigInteger v) (bigint v)
    :else v))

(defn- unsupported [what data]
  (raise "The Datahike stand-in does not support " what {:error :standin/unsupported :data data}))

;; ---------------------------------------------------------------------------
;; schema maintenance

(defn- system-entity? [db x] (contains? (:system-entities db) x))

(defn update-schema
  "Given a db and an asserted schema datom, return the db with `:schema` (and
  the ident maps) updated like Datahike does."
  [db ^Datom datom]
  (let [schema (:schema db)
        attr-refs? (dbu/attribute-refs? db)
        e (.-e datom) a (.-a datom) v (.-v datom)
        a-ident (if attr-refs? (dbu/ident-for db a) a)
        v-ident (if (and attr-refs? (system-entity? db v)) (dbu/ident-for db v) v)]
    (when (and attr-refs? (system-entity? db e))
      (raise "System schema entity cannot be changed" {:error :transact/schema :entity-id e}))
    (if (= a-ident :db/ident)
      (if (schema v-ident)
        (raise (str "Schema with attribute " v-ident " already exists")
               {:error :transact/schema :attribute v-ident})
        (-> (assoc-in db [:schema v-ident] (merge (or (schema e) {}) (hash-map a-ident v-ident)))
            (assoc-in [:schema e] v-ident)
            (assoc-in [:ident-ref-map v-ident] e)
            (assoc-in [:ref-ident-map e] v-ident)))
      (if-let [schema-entry (schema e)]
        (if (schema schema-entry)
          (update-in db [:schema schema-entry a-ident]
                     (fn [old] (if (ds/entity-spec-attr? a-ident)
                                 (if old (conj old v-ident) [v-ident])
                                 v-ident)))
          (assoc-in db [:schema e a-ident] v-ident))
        (assoc-in db [:schema e] (hash-map a-ident v-ident))))))

(defn remove-schema
  "Given a db and a retracted schema datom, return the db with `:schema` updated;
  throws ex-info when the schema entry does not exist."
  [db ^Datom datom]
  (let [schema (:schema db)
        attr-refs? (dbu/attribute-refs? db)
        e (.-e datom) a (.-a datom) v (.-v datom)
        a-ident (if attr-refs? (dbu/ident-for db a) a)
        v-ident (if (and attr-refs? (system-entity? db v)) (dbu/ident-for db v) v)]
    (when (and attr-refs? (system-entity? db e))
      (raise "System schema entity cannot be changed" {:error :retract/schema :entity-id e}))
    (if (= a-ident :db/ident)
      (if-not (schema v-ident)
        (throw (ex-info (str "Schema with attribute " v-ident " does not exist")
                        {:error :retract/schema :attribute v-ident}))
        (-> (assoc-in db [:schema e] (dissoc (schema v-ident) a-ident))
            (update :schema dissoc v-ident)
            (update :ident-ref-map dissoc v-ident)
            (update :ref-ident-map dissoc e)))
      (if-let [schema-entry (schema e)]
        (if (schema schema-entry)
          (update-in db [:schema schema-entry] dissoc a-ident)
          (update-in db [:schema e] dissoc a-ident v-ident))
        (throw (ex-info (str "Schema with entity id " e " does not exist")
                        {:error :retract/schema :entity-id e :attribute a :value e}))))))

(defn- update-rschema [db]
  (assoc db :rschema (dbu/rschema (:schema db))))

;; ---------------------------------------------------------------------------
;; index maintenance (with-datom / with-datom-upsert)

(defn- advance-max-eid [db eid]
  (cond-> db
    (and (> (long eid) (long (:max-eid db))) (< (long eid) dd/tx0))
    (assoc :max-eid eid)))

(defn- validate-datom [db ^Datom datom]
  (when (and (dd/datom-added datom) (dbu/unique? db (.-a datom)))
    (when-let [found (seq (dbu/avet-datoms db (.-a datom) (.-v datom)))]
      (raise "Cannot add " datom " because of unique constraint: " found
             {:error :transact/unique :attribute (.-a datom) :datom datom}))))

(defn- validate-datom-upsert [db ^Datom datom]
  (when (dbu/unique? db (.-a datom))
    (when-let [^Datom old (first (dbu/avet-datoms db (.-a datom) (.-v datom)))]
      (when-not (= (.-e datom) (.-e old))
        (raise "Cannot add " datom " because of unique constraint: " old
               {:error :transact/unique :attribute (.-a datom) :datom datom})))))

(defn- keeps-history? [db a-ident]
  (and (:keep-history? (:config db)) (not (dbu/no-history? db a-ident))))

(defn- with-datom-added [db ^Datom datom a-ident]
  (cond-> db
    true (dbu/update-index :eavt di/insert datom)
    (dbu/indexing? db a-ident) (dbu/update-index :avet di/insert datom)
    true (advance-max-eid (.-e datom))
    true (update :hash + (hash datom))
    (or (ds/schema-attr? a-ident) (ds/entity-spec-attr? a-ident)) (-> (update-schema datom) update-rschema)
    true (update :op-count inc)))

(defn- with-datom-retracted [db ^Datom datom a-ident]
  (if-some [^Datom removing (first (dbu/search-eav db (.-e datom) (.-a datom) (.-v datom)))]
    (let [indexing? (dbu/indexing? db a-ident)
          keep-history? (keeps-history? db a-ident)
          record (fn [idx] (-> idx (di/temporal-insert removing) (di/temporal-insert datom)))]
      (cond-> db
        true (dbu/update-index :eavt di/remove-datom removing)
        indexing? (dbu/update-index :avet di/remove-datom removing)
        true (update :hash - (hash removing))
        (or (ds/schema-attr? a-ident) (ds/entity-spec-attr? a-ident)) (-> (remove-schema datom) update-rschema)
        keep-history? (dbu/update-index :temporal-eavt record)
        keep-history? (update :hash + (hash datom))
        (and keep-history? indexing?) (dbu/update-index :temporal-avet record)
        true (update :op-count + (if (or keep-history? indexing?) 2 1))))
    db))

(defn- with-datom
  "Apply a card-many assertion or any retraction to the db (Datahike's `with-datom`)."
  [db ^Datom datom]
  (validate-datom db datom)
  (let [a-ident (dbu/ident-for db (.-a datom))]
    (if (dd/datom-added datom)
      (with-datom-added db datom a-ident)
      (with-datom-retracted db datom a-ident))))

(defn- with-datom-upsert
  "Apply a card-one assertion (Datahike's `with-datom-upsert`): replace the
  current (e a) datom, record history unless the value is unchanged."
  [db ^Datom datom]
  (validate-datom-upsert db datom)
  (let [a-ident (dbu/ident-for db (.-a datom))
        indexing? (dbu/indexing? db (.-a datom))
        schema? (ds/schema-attr? a-ident)
        keep-history? (and (keeps-history? db a-ident) (not= :db/txInstant a-ident))
        ^Datom old-datom (first (dbu/search-ea db (.-e datom) (.-a datom)))
        old-val (when old-datom (.-v old-datom))]
    (cond-> db
      schema? (as-> db' (try (-> db' (remove-schema datom) update-rschema)
                             (catch ExceptionInfo _ db')))
      keep-history? (dbu/update-index :temporal-eavt di/temporal-upsert datom old-val)
      true (dbu/update-index :eavt di/upsert datom old-datom)
      (and keep-history? indexing?) (dbu/update-index :temporal-avet di/temporal-upsert datom old-val)
      indexing? (dbu/update-index :avet di/upsert datom old-datom)
      true (update :op-count inc)
      true (advance-max-eid (.-e datom))
      true (update :hash + (hash datom))
      schema? (-> (update-schema datom) update-rschema))))

;; ---------------------------------------------------------------------------
;; reports and composite tuples

(defn- queue-tuple [queue tuple idx db e v]
  (let [tuple-value (or (get queue tuple)
                        (:v (first (dbu/search-ea db e tuple)))
                        (vec (repeat (-> (:schema db) (get tuple) :db/tupleAttrs count) nil)))]
    (assoc queue tuple (assoc tuple-value idx v))))

(defn- queue-tuples [queue tuples db e v]
  (reduce-kv (fn [queue tuple idx] (queue-tuple queue tuple idx db e v)) queue tuples))

(defn- transact-report
  "Apply `datom` to the report's db-after and record it in `:tx-data`."
  ([report datom] (transact-report report datom false))
  ([report ^Datom datom upsert?]
   (let [db (:db-after report)
         a (.-a datom)
         report' (-> report
                     (update :db-after (if upsert? with-datom-upsert with-datom) datom)
                     (update :db-after dbu/derive-aevt)
                     (update :tx-data conj datom))]
     (if (dbu/tuple-source? db a)
       (let [e (.-e datom)
             v (when (dd/datom-added datom) (.-v datom))
             queue (or (-> report' ::queued-tuples (get e)) {})
             tuples (get (:db/attrTuples (:rschema db)) a)]
         (update report' ::queued-tuples assoc e (queue-tuples queue tuples db e v)))
       report'))))

(defn- flush-tuples
  "The :db/add / :db/retract ops that bring composite tuples up to date."
  [report]
  (let [db (:db-after report)]
    (reduce-kv
     (fn [entities eid tuples+values]
       (reduce-kv
        (fn [entities tuple value]
          (let [value (if (every? nil? value) nil value)
                current (:v (first (dbu/search-ea db eid tuple)))]
            (cond
              (= value current) entities
              (nil? value) (conj entities ^::internal [:db/retract eid tuple current])
              :else (conj entities ^::internal [:db/add eid tuple value]))))
        entities
        tuples+values))
     []
     (::queued-tuples report))))

;; ---------------------------------------------------------------------------
;; load-entities

(defn- next-eid [db] (inc (long (:max-eid db))))

(defn- allocate-eid
  ([report eid] (update report :db-after advance-max-eid eid))
  ([report e eid]
   (cond-> report
     (or (contains? #{:db/current-tx ":db/current-tx" "datomic.tx" "datahike.tx"} e)
         (and (number? e) (neg? (long e)))
         (string? e))
     (assoc-in [:tempids e] eid)
     true (update :db-after advance-max-eid eid))))

(defn- import-attr
  "The attribute as stored in the target db, and its ident."
  [db a entity]
  (let [attr-refs? (dbu/attribute-refs? db)
        a-ident (if (and (number? a) attr-refs?) (dbu/ident-for db a) a)]
    [(if attr-refs?
       (dbu/ref-for db a-ident)
       (if (number? a)
         (raise "Configuration mismatch: import data with attribute references can not be imported into a database with no attribute references."
                {:error :import/mismatch :data entity})
         a-ident))
     a-ident]))

(defn- finish-load [report migration-state]
  (-> report
      (update-in [:db-after :max-tx] inc)
      (update-in [:db-after :migration] #(if % (merge % migration-state) migration-state))))

(defn transact-entities-directly
  "Given a TxReport on the target db and `[e a v tx added]` tuples (vectors or
  datoms), load them like Datahike 0.6.1613's `load-entities` and return the
  report. Ids are allocated in order of first appearance and remembered in the
  db's `:migration`; the call consumes one extra tx id at its end."
  [initial-report initial-es]
  (loop [report initial-report
         es (seq initial-es)
         migration-state (or (get-in initial-report [:db-before :migration]) {})]
    (if (empty? es)
      (finish-load report migration-state)
      (let [[entity & entities] es
            db (:db-after report)
            [e _ v t op] entity
            [a a-ident] (import-attr db (nth entity 1) entity)
            max-eid (next-eid db)
            max-tid (inc (long (:max-tx db)))]
        (cond
          (= :db.install/attribute a-ident)
          (recur report entities migration-state)

          (ds/meta-attr? a-ident)
          (let [new-t (get-in migration-state [:tids t] max-tid)
                new-datom (dd/datom new-t a (normalize-value v) new-t op)]
            (recur (-> (transact-report report new-datom (not (dbu/multival? db a-ident)))
                       (assoc-in [:db-after :max-tx] max-tid))
                   entities
                   (-> migration-state
                       (assoc-in [:tids e] new-t)
                       (assoc-in [:eids e] new-t))))

          (nil? (get-in migration-state [:tids t]))
          (recur (update-in report [:db-after :max-tx] inc) es (assoc-in migration-state [:tids t] max-tid))

          (and (dbu/ref? db a) (nil? (get-in migration-state [:eids v])))
          (recur (allocate-eid report max-eid) es (assoc-in migration-state [:eids v] max-eid))

          :else
          (let [^Datom new-datom (dd/datom (or (get-in migration-state [:eids e]) max-eid)
                                           a
                                           (if (dbu/ref? db a)
                                             (get-in migration-state [:eids v])
                                             (normalize-value v))
                                           (get-in migration-state [:tids t])
                                           op)]
            (recur (transact-report report new-datom (and (not (dbu/multival? db a-ident)) op))
                   entities
                   (assoc-in migration-state [:eids e] (.-e new-datom)))))))))

;; ---------------------------------------------------------------------------
;; transact: validation

(defn- tx-id? [e]
  (contains? #{:db/current-tx ":db/current-tx" "datomic.tx" "datahike.tx"} e))

(defn- tempid? [x]
  (or (and (number? x) (neg? (long x))) (string? x)))

(defn- current-tx [report]
  (inc (long (get-in report [:db-before :max-tx]))))

(defn validate-attr-ident
  "Raise unless a-ident is a keyword/string known to a `:write` schema."
  [a-ident at db]
  (when-not (or (keyword? a-ident) (string? a-ident))
    (raise "Bad entity attribute " a-ident " at " at ", expected keyword or string"
           {:error :transact/syntax, :attribute a-ident, :context at}))
  (when (and (= :write (:schema-flexibility (:config db)))
             (not (or (ds/meta-attr? a-ident) (ds/schema-attr? a-ident) (ds/entity-spec-attr? a-ident))))
    (if-let [db-idents (:db/ident (:rschema db))]
      (let [attr (if (dbu/reverse-ref? a-ident) (dbu/reverse-ref a-ident) a-ident)]
        (when-not (db-idents attr)
          (raise "Bad entity attribute " a-ident " at " at ", not defined in current schema"
                 {:error :transact/schema :attribute a-ident :context at})))
      (raise "No schema found in db." {:error :transact/schema :attribute a-ident :context at}))))

(defn- validate-attr [attr at db]
  (if (dbu/attribute-refs? db)
    (do (when-not (number? attr)
          (raise "Bad entity attribute " attr " at " at ", expected reference number"
                 {:error :transact/syntax, :attribute attr, :context at}))
        (if-let [a-ident (get (:ref-ident-map db) attr)]
          (validate-attr-ident a-ident at db)
          (raise "Bad entity attribute " attr " at " at ", not defined in current schema"
                 {:error :transact/schema :attribute attr :context at})))
    (validate-attr-ident attr at db)))

(defn- normalize-and-validate-attr [attr at db]
  (let [attr (dbu/attr-ref-or-ident db attr)]
    (validate-attr attr at db)
    attr))

(defn- validate-val [v [_ _ a :as at] db]
  (when (nil? v)
    (raise "Cannot store nil as a value at " at {:error :transact/syntax, :value v, :context at}))
  (let [{:keys [attribute-refs? schema-flexibility]} (:config db)
        a-ident (if (and attribute-refs? (number? a)) (dbu/ident-for db a) a)
        v-ident (if (and attribute-refs? (system-entity? db a) (some? (get (:ref-ident-map db) v)))
                  (get (:ref-ident-map db) v)
                  v)]
    (when (and (= :write schema-flexibility)
               (not (ds/value-valid? a-ident v-ident (:schema db))))
      (raise "Bad entity value " v-ident " at " at ", value does not match schema definition. Must be conform to: "
             (get-in (if (or (ds/meta-attr? a-ident) (ds/schema-attr? a-ident)) ds/implicit-schema-spec (:schema db))
                     [a-ident :db/valueType])
             {:error :transact/schema :value v-ident :attribute a-ident :schema (get-in db [:schema a-ident])}))))

(defn- check-tuple [db [_ _ a v :as op-vec]]
  (let [attr-schema (get (:schema db) (dbu/ident-for db a))]
    (cond
      (:db/tupleType attr-schema)
      (let [pred (ds/type-predicates (:db/tupleType attr-schema))]
        (cond (> (count v) 8)
              (raise "Cannot store more than 8 values for homogeneous tuple: " op-vec
                     {:error :transact/syntax, :tx-data op-vec})
              (not (apply = (map type v)))
              (raise "Cannot store homogeneous tuple with values of different type: " op-vec
                     {:error :transact/syntax, :tx-data op-vec})
              (not (and pred (pred (first v))))
              (raise "Cannot store homogeneous tuple. Values are of wrong type: " op-vec
                     {:error :transact/syntax, :tx-data op-vec})))
      (:db/tupleTypes attr-schema)
      (let [types (:db/tupleTypes attr-schema)]
        (cond (not= (count v) (count types))
              (raise (str "Cannot store heterogeneous tuple: expecting " (count types) " values, got " (count v))
                     {:error :transact/syntax, :tx-data op-vec})
              (not (apply = (map (fn [t x] (boolean ((ds/type-predicates t (constantly false)) x))) types v)))
              (raise (str "Cannot store heterogeneous tuple: there is a mismatch between values " v " and their types " types)
                     {:error :transact/syntax, :tx-data op-vec})))
      (and (:db/tupleAttrs attr-schema) (not (::internal (meta op-vec))))
      (raise "Can’t modify tuple attrs directly: " op-vec {:error :transact/syntax, :tx-data op-vec}))))

(defn- check-schema-update [db entity new-eid]
  (when (ds/schema-entity? entity)
    (when (and (contains? entity :db/ident) (ds/is-system-keyword? (:db/ident entity)))
      (raise "Using namespace 'db' for attribute identifiers is not allowed"
             {:error :transact/schema :entity entity}))
    (if-let [attr-name (get-in db [:schema new-eid])]
      (when-let [invalid (ds/find-invalid-schema-updates entity (get-in db [:schema attr-name]))]
        (when (seq invalid)
          (raise "Update not supported for these schema attributes"
                 {:error :transact/schema :entity entity :invalid-updates invalid})))
      (when (and (= :write (get-in db [:config :schema-flexibility]))
                 (or (:db/cardinality entity) (:db/valueType entity))
                 (not (ds/schema? entity)))
        (raise "Incomplete schema transaction attributes, expected :db/ident, :db/valueType, :db/cardinality"
               {:error :transact/schema :entity entity})))))

;; ---------------------------------------------------------------------------
;; transact: datoms

(defn- transact-add [{:keys [db-after] :as report} [_ e a v tx :as ent]]
  (let [a (normalize-and-validate-attr a ent db-after)
        _ (validate-val v ent db-after)
        tx (or tx (current-tx report))
        db db-after
        e (dbu/entid-strict db e)
        v (if (dbu/ref? db a) (dbu/entid-strict db v) (normalize-value v))]
    (transact-report report (dd/datom e a v tx) (not (dbu/multival? db a)))))

(defn- transact-retract-datom
  ([report d] (transact-retract-datom report d false))
  ([report ^Datom d keep-tx-id]
   (let [txid (or (and keep-tx-id (dd/datom-tx d)) (current-tx report))]
     (transact-report report (dd/datom (.-e d) (.-a d) (.-v d) txid false)))))

(defn- retract-components [db datoms]
  (into #{} (comp (filter (fn [^Datom d] (dbu/component? db (.-a d))))
                  (map (fn [^Datom d] [:db.fn/retractEntity (.-v d)])))
        datoms))

(defn- retract-entity [db report [_ e]]
  (if-let [e (dbu/entid db e)]
    (let [e-datoms (vec (dbu/search-e db e))
          v-datoms (->> (get (:rschema db) :db.type/ref)
                        (mapcat (fn [a] (dbu/search-av db (dbu/attr-ref-or-ident db a) e)))
                        vec)]
      [(reduce transact-retract-datom report (concat e-datoms v-datoms))
       (retract-components db e-datoms)])
    [report []]))

(defn- compare-and-swap [db report [_ e a ov nv :as op-vec]]
  (let [e (dbu/entid-strict db e)
        a (normalize-and-validate-attr a op-vec db)
        nv (if (dbu/ref? db a) (dbu/entid-strict db nv) nv)
        datoms (dbu/search-ea db e a)
        multi? (dbu/multival? db a)]
    (if (nil? ov)
      (if (empty? datoms)
        [(transact-add report [:db/add e a nv]) []]
        (raise ":db.fn/cas failed on datom [" e " " a " " (if multi? (map :v datoms) (:v (first datoms))) "], expected nil"
               {:error :transact/cas, :old (if multi? datoms (first datoms)), :expected ov, :new nv}))
      (let [ov (if (dbu/ref? db a) (dbu/entid-strict db ov) ov)]
        (validate-val nv op-vec db)
        (if multi?
          (if (some (fn [^Datom d] (= (.-v d) ov)) datoms)
            [(transact-add report [:db/add e a nv]) []]
            (raise ":db.fn/cas failed on datom [" e " " a " " (map :v datoms) "], expected " ov
                   {:error :transact/cas, :old datoms, :expected ov, :new nv}))
          (let [v (:v (first datoms))]
            (if (= v ov)
              [(transact-add report [:db/add e a nv]) []]
              (raise ":db.fn/cas failed on datom [" e " " a " " v "], expected " ov
                     {:error :transact/cas, :old (first datoms), :expected ov, :new nv}))))))))

(defn- retract-op [db report [_ e a v :as op-vec]]
  (if-some [e (dbu/entid db e)]
    (let [a (normalize-and-validate-attr a op-vec db)
          datoms (if (nil? v)
                   (dbu/search-ea db e a)
                   (let [v (if (dbu/ref? db a) (dbu/entid-strict db v) (normalize-value v))]
                     (validate-val v op-vec db)
                     (dbu/search-eav db e a v)))]
      [(reduce transact-retract-datom report (vec datoms)) []])
    [report []]))

(defn- apply-db-op [db report [op e a :as op-vec]]
  (case op
    :db/add [(transact-add report op-vec) []]
    :db/retract (retract-op db report op-vec)
    :db.fn/retractAttribute (if-let [e (dbu/entid db e)]
                              (let [a (normalize-and-validate-attr a op-vec db)
                                    datoms (vec (dbu/search-ea db e a))]
                                [(reduce transact-retract-datom report datoms)
                                 (retract-components db datoms)])
                              [report []])
    (:db.fn/retractEntity :db/retractEntity) (retract-entity db report op-vec)
    (:db.fn/cas :db/cas) (compare-and-swap db report op-vec)
    (:db.fn/call :db/purge :db.purge/entity :db.purge/attribute :db.history.purge/before
                 :db.ensure/attrs :db.ensure/preds)
    (unsupported (str "the operation " op) op-vec)
    (if (keyword? op)
      (unsupported (str "transaction functions (" op ")") op-vec)
      (raise "Unknown operation at " op-vec ", expected :db/add, :db/retract, :db.fn/retractEntity …"
             {:error :transact/syntax, :operation op, :tx-data op-vec}))))

;; ---------------------------------------------------------------------------
;; transact: entity maps

(defn- check-upsert-conflict [entity acc]
  (let [[e a v] acc
        _e (:db/id entity)]
    (if (or (nil? _e) (tempid? _e) (nil? acc) (== _e e))
      acc
      (raise "Conflicting upsert: " [a v] " resolves to " e ", but entity already has :db/id " _e
             {:error :transact/upsert :entity entity :assertion acc}))))

(defn- upsert-eid [db entity tempids]
  (when-let [unique-idents (not-empty (get (:rschema db) :db.unique/identity))]
    (->> (reduce-kv
          (fn [acc a-ident v-original]
            (if-not (contains? unique-idents a-ident)
              acc
              (let [a (dbu/attr-ref-or-ident db a-ident)
                    v (if (and (dbu/ref? db a-ident) (tempid? v-original)) (tempids v-original) v-original)]
                (if-some [e (when v
                              (validate-val v [nil nil a v nil] db)
                              (:e (first (dbu/avet-datoms db a v))))]
                  (cond
                    (nil? acc) [e a v]
                    (= (get acc 0) e) acc
                    :else (let [[_e _a _v] acc]
                            (raise "Conflicting upserts: " [_a _v] " resolves to " _e ", but " [a v] " resolves to " e
                                   {:error :transact/upsert :entity entity :assertion [e a v] :conflict [_e _a _v]})))
                  acc))))
          nil
          entity)
         (check-upsert-conflict entity)
         first)))

(defn- object-array? [x]
  (instance? (Class/forName "[Ljava.lang.Object;") x))

(defn- maybe-wrap-multival [db a-ident vs]
  (cond
    (not (or (dbu/reverse-ref? a-ident) (dbu/multival? db a-ident))) [vs]
    (not (or (object-array? vs) (and (coll? vs) (not (map? vs))))) [vs]
    (and (= (count vs) 2)
         (keyword? (first vs))
         (dbu/is-attr? db (first vs) :db.unique/identity)
         (not (ds/entity-spec-attr? a-ident))) [vs]
    :else vs))

(defn- explode [db entity]
  (let [eid (:db/id entity)
        attr-refs? (dbu/attribute-refs? db)]
    (when (and attr-refs? (system-entity? db eid))
      (raise "Entity with ID " eid " is a system attribute " (dbu/ident-for db eid) " and cannot be changed"
             {:error :transact/syntax, :eid eid, :attribute (dbu/ident-for db eid) :context entity}))
    (when (:db/ensure entity)
      (unsupported ":db/ensure" entity))
    (for [[a-ident vs] entity
          :when (not (or (= a-ident :db/id) (= a-ident :db/ensure)))
          :let [_ (validate-attr-ident a-ident {:db/id eid, a-ident vs} db)
                reverse? (dbu/reverse-ref? a-ident)
                straight-a-ident (if reverse? (dbu/reverse-ref a-ident) a-ident)
                straight-a (if attr-refs? (dbu/ref-for db straight-a-ident) straight-a-ident)
                _ (when (and reverse? (not (dbu/ref? db straight-a-ident)))
                    (raise "Bad attribute " a-ident ": reverse attribute name requires {:db/valueType :db.type/ref} in schema"
                           {:error :transact/syntax, :attribute a-ident, :context {:db/id eid, a-ident vs}}))]
          v (maybe-wrap-multival db a-ident vs)]
      (if (and (dbu/ref? db straight-a-ident) (map? v))
        (assoc v (dbu/reverse-ref a-ident) eid)
        (if reverse?
          [:db/add v straight-a eid]
          [:db/add eid straight-a
           (if (and attr-refs?
                    (dbu/is-attr? db straight-a-ident :db/systemAttribRef)
                    (ds/is-system-keyword? v))
             (dbu/ref-for db v)
             v)])))))

(defn- entity-map->op-vec [db {:keys [tempids] :as report} entity]
  (let [old-eid (:db/id entity)
        tx? (tx-id? old-eid)
        resolved-eid (cond tx? (current-tx report)
                           (sequential? old-eid) (dbu/entid-strict db old-eid)
                           :else old-eid)
        updated-entity (assoc entity :db/id resolved-eid)
        updated-report (cond-> report tx? (allocate-eid old-eid resolved-eid))
        resolved-tempid (get tempids resolved-eid)
        upserted-eid (upsert-eid db updated-entity tempids)]
    (if (and (some? upserted-eid) resolved-tempid (not= upserted-eid resolved-tempid))
      {:retry? true :old-eid resolved-eid :upserted-eid upserted-eid}
      (let [new-eid (cond
                      (some? upserted-eid) upserted-eid
                      (nil? resolved-eid) (next-eid db)
                      (tempid? resolved-eid) (or resolved-tempid (next-eid db))
                      (number? resolved-eid) resolved-eid
                      :else (raise "Expected number, string or lookup ref for :db/id, got " old-eid
                                   {:error :entity-id/syntax, :entity updated-entity}))]
        (check-schema-update db updated-entity new-eid)
        {:new-report (allocate-eid updated-report resolved-eid new-eid)
         :new-entities (explode db (assoc updated-entity :db/id new-eid))}))))

(defn- flush-tx-meta [{:keys [tx-meta db-before] :as report}]
  (let [tid (current-tx report)]
    (reduce-kv
     (fn [entities attribute value]
       (let [straight-a (if (dbu/attribute-refs? db-before) (dbu/ref-for db-before attribute) attribute)]
         (if (some? straight-a)
           (conj entities [:db/add tid straight-a value tid])
           (raise "Bad transaction meta attribute " attribute " at " tx-meta ", not defined in system or current schema"
                  {:error :transact/schema :attribute attribute :context tx-meta}))))
     []
     tx-meta)))

(declare transact-tx-data)

(defn- retry-with-tempid [initial-report report es tempid upserted-eid]
  (if (contains? (:tempids initial-report) tempid)
    (raise "Conflicting upsert: " tempid " resolves both to " upserted-eid " and " (get-in initial-report [:tempids tempid])
           {:error :transact/upsert})
    (transact-tx-data (assoc initial-report :tempids (assoc (:tempids report) tempid upserted-eid)) es)))

(defn- sequential-op
  "One step of the transact loop for a vector op; returns [report entities]."
  [initial-report initial-es report [op e a v :as entity] entities es]
  (let [{:keys [tempids]} report
        db (:db-after report)]
    (when (dbu/tuple? db a) (check-tuple db entity))
    (cond
      (tx-id? e)
      [(allocate-eid report e (current-tx report)) (cons [op (current-tx report) a v] entities)]

      (and (dbu/ref? db a) (tx-id? v))
      [(allocate-eid report v (current-tx report)) (cons [op e a (current-tx report)] entities)]

      (tempid? e)
      (if (not= op :db/add)
        (raise "Can't use tempid in '" entity "'. Tempids are allowed in :db/add only"
               {:error :transact/syntax, :op entity})
        (let [upserted-eid (when (dbu/is-attr? db a :db.unique/identity)
                             (:e (first (dbu/avet-datoms db (dbu/attr-ref-or-ident db a) v))))
              allocated-eid (get tempids e)]
          (if (and upserted-eid allocated-eid (not= upserted-eid allocated-eid))
            [(retry-with-tempid initial-report report initial-es e upserted-eid) ::done]
            (let [eid (or upserted-eid allocated-eid (next-eid db))]
              [(allocate-eid report e eid) (cons [op eid a v] entities)]))))

      (and (dbu/ref? db a) (tempid? v))
      (if-let [vid (get tempids v)]
        [report (cons [op e a vid] entities)]
        [(allocate-eid report v (next-eid db)) es])

      :else
      (let [[new-report new-entities] (apply-db-op db report entity)]
        [new-report (concat new-entities entities)]))))

(defn transact-tx-data
  "Given a TxReport on a db and transaction data, apply it like Datahike's
  `transact-tx-data` and return the report."
  [initial-report initial-es]
  (when-not (or (nil? initial-es) (sequential? initial-es))
    (raise "Bad transaction data " initial-es ", expected sequential collection"
           {:error :transact/syntax, :tx-data initial-es}))
  (let [db-before (:db-before initial-report)
        has-tuples? (seq (get (:rschema (:db-after initial-report)) :db.type/tuple))
        initial-es' (if has-tuples? (interleave initial-es (repeat ::flush-tuples)) initial-es)
        initial-report (update initial-report :tx-meta #(merge {:db/txInstant (Date.)} %))
        meta-entities (flush-tx-meta initial-report)]
    (loop [report initial-report
           es (if (:keep-history? (:config db-before)) (concat meta-entities initial-es') initial-es')]
      (let [[entity & entities] es
            db (:db-after report)]
        (cond
          (empty? es)
          (-> report
              (assoc-in [:tempids :db/current-tx] (current-tx report))
              (update-in [:db-after :max-tx] inc))

          (nil? entity) (recur report entities)

          (= ::flush-tuples entity)
          (if (contains? report ::queued-tuples)
            (recur (dissoc report ::queued-tuples) (concat (flush-tuples report) entities))
            (recur report entities))

          (map? entity)
          (let [{:keys [new-report new-entities retry? old-eid upserted-eid]} (entity-map->op-vec db report entity)]
            (if retry?
              (retry-with-tempid initial-report report initial-es old-eid upserted-eid)
              (recur new-report (concat new-entities entities))))

          (sequential? entity)
          (let [[report' es'] (sequential-op initial-report initial-es report entity entities es)]
            (if (= ::done es') report' (recur report' es')))

          (dd/datom? entity)
          (let [[e a v tx added] entity]
            (if added
              (recur (transact-add report [:db/add e a v tx]) entities)
              (recur (transact-retract-datom report entity true) entities)))

          :else
          (raise "Bad entity type at " entity ", expected map or vector"
                 {:error :transact/syntax, :tx-data entity}))))))

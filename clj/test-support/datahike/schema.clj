(ns datahike.schema
  "Test stand-in for Datahike 0.6.1613's `datahike.schema`: value-type
  predicates (the real ones are clojure.spec specs; these are the same
  predicates), the implicit schema and the attribute classes."
  (:require [clojure.string :as str]))

(set! *warn-on-reflection* true)

(def ^:private value-types
  #{:db.type/bigdec :db.type/bigint :db.type/boolean :db.type/bytes :db.type/double
    :db.type/float :db.type/number :db.type/instant :db.type/keyword :db.type/long
    :db.type/ref :db.type/string :db.type/symbol :db.type/uuid :db.type/value
    :db.type/tuple :db.type/cardinality :db.type.install/attribute
    :db.type/valueType :db.type/unique})

(def type-predicates
  "Value type -> predicate, as the specs of `datahike.schema`. Note that
  `:db.type/ref` accepts anything (the real spec is
  `#(or (= (class %) Long) string?)`, whose second branch is a fn, hence truthy),
  `:db.type/float` accepts doubles (`float?`) and `:db.type/long` only
  `java.lang.Long`."
  {:db.type/bigdec decimal?
   :db.type/bigint integer?
   :db.type/boolean boolean?
   :db.type/bytes bytes?
   :db.type/double double?
   :db.type/float float?
   :db.type/number number?
   :db.type/instant #(= (class %) java.util.Date)
   :db.type/keyword keyword?
   :db.type/long #(= (class %) Long)
   :db.type/ref (constantly true)
   :db.type/id (constantly true)
   :db.type/string string?
   :db.type/symbol symbol?
   :db.type/uuid uuid?
   :db.type/tuple vector?
   :db.type/value value-types
   :db.type/cardinality #{:db.cardinality/one :db.cardinality/many}
   :db.type/unique #{:db.unique/identity :db.unique/value}
   :db.type.install/_attribute #{:db.part/tx :db.part/db :db.part/user}})

(def implicit-schema-spec
  "The schema Datahike validates schema/meta attributes against."
  {:db/ident {:db/valueType :db.type/keyword :db/unique :db.unique/identity :db/cardinality :db.cardinality/one}
   :db/valueType {:db/valueType :db.type/value :db/unique :db.unique/identity :db/cardinality :db.cardinality/one}
   :db/id {:db/valueType :db.type/id :db/unique :db.unique/identity :db/cardinality :db.cardinality/one}
   :db/cardinality {:db/valueType :db.type/cardinality :db/unique :db.unique/identity :db/cardinality :db.cardinality/one}
   :db/index {:db/valueType :db.type/boolean :db/unique :db.unique/identity :db/cardinality :db.cardinality/one}
   :db/unique {:db/valueType :db.type/unique :db/unique :db.unique/identity :db/cardinality :db.cardinality/one}
   :db/isComponent {:db/valueType :db.type/boolean :db/unique :db.unique/identity :db/cardinality :db.cardinality/one}
   :db/noHistory {:db/valueType :db.type/boolean :db/unique :db.unique/identity :db/cardinality :db.cardinality/one}
   :db/txInstant {:db/valueType :db.type/instant :db/unique :db.unique/identity :db/index true :db/cardinality :db.cardinality/one}
   :db/noCommit {:db/valueType :db.type/boolean :db/unique :db.unique/identity :db/cardinality :db.cardinality/one}
   :db/retracted {:db/valueType :db.type/long :db/unique :db.unique/identity :db/cardinality :db.cardinality/many}
   :db/ensure {:db/valueType :db.type/keyword :db/cardinality :db.cardinality/one}
   :db.entity/attrs {:db/valueType :db.type/keyword :db/cardinality :db.cardinality/many}
   :db.entity/preds {:db/valueType :db.type/symbol :db/cardinality :db.cardinality/many}
   :db/doc {:db/valueType :db.type/string :db/index true :db/cardinality :db.cardinality/one}
   :db.install/_attribute {:db/valueType :db.type.install/_attribute :db/unique :db.unique/identity :db/cardinality :db.cardinality/one}
   :db/tupleType {:db/valueType :db.type/value :db/cardinality :db.cardinality/one}
   :db/tupleTypes {:db/valueType :db.type/tuple :db/cardinality :db.cardinality/one}
   :db/tupleAttrs {:db/valueType :db.type/tuple :db/cardinality :db.cardinality/one}})

(def implicit-schema
  "The `:schema` of an empty `:attribute-refs? false` database."
  {:db/ident {:db/unique :db.unique/identity}
   :db.entity/attrs {:db/cardinality :db.cardinality/many}
   :db.entity/preds {:db/cardinality :db.cardinality/many}
   :db/txInstant {:db/noHistory true}})

(def schema-attributes
  "Attributes that describe schema (a datom with one updates `:schema`)."
  #{:db/id :db/ident :db/isComponent :db/noHistory :db/valueType :db/cardinality
    :db/unique :db/index :db.install/_attribute :db/doc :db/tupleAttrs :db/tupleType
    :db/tupleTypes})

(def schema-keys
  "Keys that make an entity map a schema entity."
  #{:db/ident :db/isComponent :db/noHistory :db/valueType :db/cardinality :db/unique
    :db/index :db.install/_attribute :db/doc :db/tupleType :db/tupleTypes :db/tupleAttrs})

(defn meta-attr?
  "True for transaction meta attributes (`:db/txInstant` …)."
  [a-ident]
  (contains? #{:db/txInstant :db/retracted :db/noCommit} a-ident))

(defn schema-attr?
  "True for schema attributes."
  [a-ident]
  (contains? schema-attributes a-ident))

(defn entity-spec-attr?
  "True for entity-spec attributes."
  [a-ident]
  (contains? #{:db/ensure :db.entity/attrs :db.entity/preds} a-ident))

(defn sys-ident?
  "True for Datahike's system idents (value types, cardinalities, partitions,
  uniqueness, `:db.install/attribute`, `:db`, `:db/txInstant`)."
  [a-ident]
  (or (contains? value-types a-ident)
      (contains? #{:db.cardinality/one :db.cardinality/many :db.part/tx :db.part/sys :db.part/user
                   :db.install/attribute :db :db/txInstant :db.unique/identity :db.unique/value}
                 a-ident)))

(defn schema-entity?
  "True if an entity map carries any schema key."
  [entity]
  (boolean (some #(contains? entity %) schema-keys)))

(defn schema?
  "True if an entity map is a complete attribute definition."
  [entity]
  (every? #(contains? entity %) [:db/ident :db/valueType :db/cardinality]))

(defn value-valid?
  "Given an attribute ident, a value and the db schema, return true if the value
  matches the attribute's `:db/valueType` (a missing type is invalid, like
  `(s/valid? nil v)`)."
  [a-ident v schema]
  (let [schema (if (or (meta-attr? a-ident) (schema-attr? a-ident) (entity-spec-attr? a-ident))
                 implicit-schema-spec
                 schema)
        pred (type-predicates (get-in schema [a-ident :db/valueType]))]
    (boolean (and pred (pred v)))))

(defn is-system-keyword?
  "True for keywords/strings in a `db` or `db.*` namespace."
  [value]
  (and (or (keyword? value) (string? value))
       (if-let [ns (namespace (keyword value))]
         (= "db" (first (str/split ns #"\.")))
         false)))

(defn find-invalid-schema-updates
  "Given a schema entity map and the current attribute schema, return the
  changes Datahike refuses (map of key -> [old new]). Verbatim port: an
  unchanged or allowed key resets the accumulator to nil, as in 0.6.1613."
  [entity attr-schema]
  (reduce-kv
   (fn [m attr-def new-value]
     (let [old-value (get attr-schema attr-def)]
       (when (not= old-value new-value)
         (case attr-def
           :db/cardinality (when (and (= new-value :db.cardinality/many)
                                      (#{:db.unique/value :db.unique/identity} (:db/unique attr-schema)))
                             (assoc m attr-def [old-value new-value]))
           :db/unique (when (or (not (:db/unique attr-schema))
                                (not= :db.cardinality/one (:db/cardinality attr-schema)))
                        (assoc m attr-def [old-value new-value]))
           (:db/doc :db/noHistory :db/isComponent) nil
           (assoc m attr-def [old-value new-value])))))
   {}
   (dissoc entity :db/id)))

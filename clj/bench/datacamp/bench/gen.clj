(ns datacamp.bench.gen
  "Deterministic synthetic Datahike history databases for the benchmarks, generated lazily:
  nothing is kept in the heap, so a 5M-datom database walks under -Xmx192m.

  The database (keep-history, schema on write, no attribute refs):
  - tx `tx0 + 1` installs the schema: one entity per attribute (ids 1..K) with
    :db/cardinality, :db/ident, :db/unique (ids only), :db/valueType.
  - Entities are created 1,000 per transaction, in id order: entity i (id K+1+i) is
    created in tx `tx0 + 2 + i/1000`. 3 in 5 are persons, 2 in 5 orders (by i mod 5).
    Persons: uuid id, name, email, age, score (double), born (instant), active (boolean),
    status (keyword), 0-4 tags (keyword, card-many), 0-5 friends (ref, card-many; half of
    them new in the same tx, often with larger ids), a bio on 30% (40-2,000 chars, 0.5%
    5-20k chars). Orders: uuid id, customer (ref), placed (instant), total (double),
    quantity (long), status (keyword), paid (boolean), 1-5 skus (long, card-many), a note
    on 30% (10-300 chars).
  - After the creation txs come update-only txs (half as many, at least 10). Every value
    but the uuid ids is, with probability 0.15, retracted in a random later tx: a card-one
    value is replaced in that tx (retraction + new assertion), a card-many value just
    retracted. 10% of entities also get one card-many value added in a later tx (a friend,
    a tag or a sku). So the retractions of one tx are scattered over the whole EAVT range
    and the restore order has real sorting to do.
  - Every tx has its `[tx :db/txInstant inst tx true]` datom; tx ids are > tx0 =
    536870912 so they come last in EAVT order.

  `datoms` returns the history in EAVT order (each entity's datoms sorted by attribute,
  value, tx) as vectors `[e a v tx added]`. Every entity draws from its own seeded
  java.util.Random, so the sequence depends only on the spec."
  (:import [java.util ArrayList Comparator Date Random UUID]
           [clojure.lang Keyword Util]))

(set! *warn-on-reflection* true)

(def ^:const tx0 536870912)
(def ^:const schema-tx (inc tx0))
(def ^:const per-tx 1000)
(def ^:const retract-p 0.18)

(def ^:private attr-defs
  "[ident valueType cardinality unique]"
  [[:order/customer :db.type/ref :one nil]
   [:order/id :db.type/uuid :one :db.unique/identity]
   [:order/note :db.type/string :one nil]
   [:order/paid :db.type/boolean :one nil]
   [:order/placed :db.type/instant :one nil]
   [:order/quantity :db.type/long :one nil]
   [:order/skus :db.type/long :many nil]
   [:order/status :db.type/keyword :one nil]
   [:order/total :db.type/double :one nil]
   [:person/active :db.type/boolean :one nil]
   [:person/age :db.type/long :one nil]
   [:person/bio :db.type/string :one nil]
   [:person/born :db.type/instant :one nil]
   [:person/email :db.type/string :one :db.unique/identity]
   [:person/friends :db.type/ref :many nil]
   [:person/id :db.type/uuid :one :db.unique/identity]
   [:person/name :db.type/string :one nil]
   [:person/score :db.type/double :one nil]
   [:person/status :db.type/keyword :one nil]
   [:person/tags :db.type/keyword :many nil]])

(def ref-attrs
  "The ref attributes of the synthetic schema."
  (vec (for [[ident t] attr-defs :when (= t :db.type/ref)] ident)))

(def ^:private attr-count (count attr-defs))

(def ^:private person-statuses [:person.status/active :person.status/inactive
                                :person.status/pending :person.status/banned])
(def ^:private order-statuses [:order.status/placed :order.status/paid :order.status/shipped
                               :order.status/delivered :order.status/cancelled
                               :order.status/returned])
(def ^:private tags (mapv #(keyword "tag" (str "t" %)) (range 24)))

(def ^:private ^"[Ljava.lang.String;" vocab
  "4,096 pseudo-words of 2-4 syllables."
  (let [r (Random. 7)
        syl ["ka" "lo" "mi" "ne" "ra" "tu" "si" "po" "va" "de" "shi" "an" "el" "or" "un"
             "bri" "sta" "qu" "ex" "zo" "ly" "ma" "ter" "ion" "ge" "ho" "ji" "wu" "ce" "fa"]]
    (into-array String
                (repeatedly 4096 (fn [] (apply str (repeatedly (+ 2 (.nextInt r 3))
                                                                #(nth syl (.nextInt r (count syl))))))))))

(defn- capitalize ^String [^String s]
  (str (Character/toUpperCase (.charAt s 0)) (subs s 1)))

(def ^:private ^"[Ljava.lang.String;" first-names
  (into-array String (map #(capitalize (aget vocab %)) (range 0 600))))
(def ^:private ^"[Ljava.lang.String;" last-names
  (into-array String (map #(capitalize (aget vocab %)) (range 600 2100))))
(def ^:private ^"[Ljava.lang.String;" domains
  (into-array String ["example.com" "mail.test" "corp.example" "post.example.org"]))

;; ------------------------------------------------------------------ spec

(def ^:private avg-datoms-per-entity
  "Measured average history datoms per entity (used to size a database by datom count)."
  15.03)

(defn spec
  "Given an approximate number of datoms and a seed, return the database spec:
  `{:entities n :seed s :max-tx … :max-eid …}`."
  ([target-datoms] (spec target-datoms 42))
  ([target-datoms seed]
   (let [n (max 1 (long (Math/round (/ (double target-datoms) avg-datoms-per-entity))))
         creation-txs (quot (+ n (dec per-tx)) per-tx)
         update-txs (max 10 (quot (inc creation-txs) 2))]
     {:entities n
      :seed (long seed)
      :creation-txs creation-txs
      :max-tx (+ schema-tx creation-txs update-txs)
      :max-eid (+ attr-count n)})))

(defn facts
  "What `datacamp.datahike/describe` would return for the database of `spec`."
  [spec]
  {:max-eid (:max-eid spec)
   :max-tx (:max-tx spec)
   :datahike-version "synthetic"
   :keep-history? true
   :attribute-refs? false
   :db-config {:keep-history? true :schema-flexibility :write :attribute-refs? false
               :index :datahike.index/persistent-set :store {:backend :mem}}
   :ref-attrs ref-attrs
   :tx-instant-attr :db/txInstant})

;; ------------------------------------------------------------------ datoms

(def ^:private ^Comparator eavt-within-entity
  "Orders the datoms of one entity: attribute, value, tx."
  (reify Comparator
    (compare [_ x y]
      (let [a (.compareTo ^Keyword (nth x 1) (nth y 1))]
        (if (zero? a)
          (let [v (Util/compare (nth x 2) (nth y 2))]
            (if (zero? v)
              (Long/compare (long (nth x 3)) (long (nth y 3)))
              v))
          a)))))

(defn- schema-datoms []
  (vec (mapcat (fn [i [ident t card unique]]
                 (let [e (long (inc i))]
                   (cond-> [[e :db/cardinality (keyword "db.cardinality" (name card)) schema-tx true]
                            [e :db/ident ident schema-tx true]]
                     unique (conj [e :db/unique unique schema-tx true])
                     true (conj [e :db/valueType t schema-tx true]))))
               (range) attr-defs)))

(defn- entity-rng ^Random [^long seed ^long i]
  (Random. (bit-xor (unchecked-multiply (inc i) -7046029254386353131) seed)))

(defn- pick [^Random r v] (nth v (.nextInt r (count v))))

(defn- uuid [^Random r] (UUID. (.nextLong r) (.nextLong r)))

(defn- text
  "Words from the vocabulary up to about `len` characters."
  ^String [^Random r ^long len]
  (let [sb (StringBuilder. (+ len 16))]
    (loop []
      (when (< (.length sb) len)
        (when (pos? (.length sb))
          (.append sb (if (zero? (.nextInt r 12)) ". " " ")))
        (.append sb (aget vocab (.nextInt r 4096)))
        (recur)))
    (.toString sb)))

(defn- log-uniform ^long [^Random r ^long lo ^long hi]
  (long (Math/exp (+ (Math/log lo) (* (.nextDouble r) (- (Math/log hi) (Math/log lo)))))))

(defn- bio [^Random r]
  (text r (if (< (.nextInt r 200) 1) (log-uniform r 5000 20000) (log-uniform r 40 2000))))

(defn- person-index
  "A person's entity index below `limit` (> 0)."
  ^long [^Random r ^long limit]
  (let [k (.nextInt r (int limit))
        m (rem k 5)]
    (+ (- k m) (rem m 3))))

(defn- eid ^long [^long i] (+ attr-count 1 i))

(defn- created-below
  "Entity indexes below this exist at tx `tx`."
  ^long [spec ^long tx]
  (min (long (:entities spec)) (* per-tx (- tx schema-tx))))

(defn- later-tx ^long [^Random r ^long ctx ^long max-tx]
  (+ ctx 1 (.nextInt r (int (- max-tx ctx)))))

(defn- gen-entity
  "Return [[attr value card] …] of entity i at creation, and a fn of the rng producing a
  replacement value per attr."
  [spec ^Random r ^long i]
  (let [n (long (:entities spec))
        batch-start (* per-tx (quot i per-tx))
        batch-end (min n (+ batch-start per-tx))
        ref-in-batch (fn ^long [^Random r]
                       (if (.nextBoolean r)
                         (person-index r batch-end)
                         (let [k (+ batch-start (.nextInt r (int (- batch-end batch-start))))
                               m (rem k 5)]
                           (+ (- k m) (rem m 3)))))]
    (if (< (rem i 5) 3)
      (let [^String fst (aget first-names (.nextInt r (alength first-names)))
            ^String lst (aget last-names (.nextInt r (alength last-names)))
            vals (cond-> [[:person/id (uuid r) :one]
                          [:person/name (str fst " " lst) :one]
                          [:person/email (str (.toLowerCase fst) "." (.toLowerCase lst) (.nextInt r 10000)
                                              "@" (aget domains (.nextInt r 4))) :one]
                          [:person/age (long (+ 18 (.nextInt r 70))) :one]
                          [:person/score (/ (double (.nextInt r 1000000)) 100.0) :one]
                          [:person/born (Date. (+ -946771200000 (* 86400000 (long (.nextInt r 25000))))) :one]
                          [:person/active (.nextBoolean r) :one]
                          [:person/status (pick r person-statuses) :one]]
                   (< (.nextInt r 10) 3) (conj [:person/bio (bio r) :one]))
            vals (into vals (map (fn [t] [:person/tags t :many]))
                       (distinct (repeatedly (.nextInt r 5) #(pick r tags))))
            vals (into vals (comp (map (fn [_] (eid (ref-in-batch r))))
                                  (remove #(= % (eid i)))
                                  (distinct)
                                  (map (fn [f] [:person/friends f :many])))
                       (range (.nextInt r 6)))]
        vals)
      (let [vals (cond-> [[:order/id (uuid r) :one]
                          [:order/customer (eid (if (< (.nextInt r 10) 3) (ref-in-batch r) (person-index r batch-end))) :one]
                          [:order/placed (Date. (+ 1577836800000 (long (.nextInt r 126230400)) (* 1000 (long (.nextInt r 1000))))) :one]
                          [:order/total (/ (double (.nextInt r 5000000)) 100.0) :one]
                          [:order/quantity (long (inc (.nextInt r 20))) :one]
                          [:order/status (pick r order-statuses) :one]
                          [:order/paid (.nextBoolean r) :one]]
                   (< (.nextInt r 10) 3) (conj [:order/note (text r (+ 10 (.nextInt r 290))) :one]))]
        (into vals (map (fn [s] [:order/skus s :many]))
              (distinct (repeatedly (inc (.nextInt r 5)) #(long (+ 100000 (.nextInt r 900000))))))))))

(defn- replacement
  "A new value for card-one attribute `a` (different from `v`)."
  [^Random r a v]
  (case a
    :person/name (str (aget first-names (.nextInt r (alength first-names))) " "
                      (aget last-names (.nextInt r (alength last-names))))
    :person/email (str "new" (.nextInt r 1000000) "." v)
    :person/age (inc (long v))
    :person/score (/ (double (.nextInt r 1000000)) 100.0)
    :person/born (Date. (+ (.getTime ^Date v) 86400000))
    :person/active (not v)
    :person/status (let [s (pick r person-statuses)] (if (= s v) :person.status/active s))
    :person/bio (bio r)
    :order/placed (Date. (+ (.getTime ^Date v) 1000))
    :order/total (+ (double v) 1.0)
    :order/quantity (inc (long v))
    :order/status (let [s (pick r order-statuses)] (if (= s v) :order.status/returned s))
    :order/paid (not v)
    :order/note (text r (+ 10 (.nextInt r 290)))))

(defn entity-datoms
  "The history datoms of entity i of `spec`, in EAVT order."
  [spec ^long i]
  (let [^Random r (entity-rng (:seed spec) i)
        e (eid i)
        ctx (+ schema-tx 1 (quot i per-tx))
        max-tx (long (:max-tx spec))
        out (ArrayList. 24)]
    (doseq [[a v card] (gen-entity spec r i)]
      (.add out [e a v ctx true])
      (when (and (not (#{:person/id :order/id} a)) (< (.nextDouble r) retract-p))
        (let [u (later-tx r ctx max-tx)]
          (.add out [e a v u false])
          (when (= card :one)
            (let [v' (if (= a :order/customer)
                       (let [c (eid (person-index r (created-below spec u)))]
                         (if (= c v) (eid (person-index r (created-below spec u))) c))
                       (replacement r a v))]
              (when-not (= v' v)
                (.add out [e a v' u true])))))))
    (when (< (.nextInt r 10) 1)
      (let [u (later-tx r ctx max-tx)
            [a v] (if (< (rem i 5) 3)
                    (if (.nextBoolean r)
                      [:person/friends (eid (person-index r (created-below spec u)))]
                      [:person/tags (pick r tags)])
                    [:order/skus (long (+ 100000 (.nextInt r 900000)))])]
        (when-not (or (= v e) (some #(and (= a (nth % 1)) (= v (nth % 2))) out))
          (.add out [e a v u true]))))
    (.sort out eavt-within-entity)
    (vec (.toArray out))))

(defn- tx-datom [^long tx]
  [tx :db/txInstant (Date. (+ 1704067200000 (* 61000 (- tx tx0)) (rem (* tx 7919) 997))) tx true])

(defn datoms
  "The history of the database of `spec` as a lazy seq of `[e a v tx added]` in EAVT order."
  [spec]
  (concat (schema-datoms)
          (mapcat #(entity-datoms spec %) (range (:entities spec)))
          (map tx-datom (range schema-tx (inc (long (:max-tx spec)))))))

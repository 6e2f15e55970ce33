(ns datacamp.continuous-test
  "Continuous backup: the capture's deltas against those a real Datahike recorded
  (tx-reports.edn), the segments a running capture writes, and the capture's life cycle
  (locks, stop/start, status)."
  (:require [clojure.edn :as edn]
            [clojure.java.io :as io]
            [clojure.string :as str]
            [clojure.test :refer [deftest is testing]]
            [datacamp.backends :as b :refer [defbackend-test]]
            [datacamp.continuous :as cont]
            [datacamp.core :as dc]
            [datacamp.native :as native]
            [datahike.api :as d])
  (:import [java.util Base64 UUID]))

(set! *warn-on-reflection* true)

(def ^:private tx0 536870912)

;; ---------------------------------------------------------------- the recorded workload

(def ^:private fixture
  (delay (edn/read-string {:readers {'fixture/bytes #(.decode (Base64/getDecoder) ^String %)}}
                          (slurp (io/resource "datahike/tx-reports.edn")))))

(defn- norm-v [v] (if (bytes? v) [:bytes (vec v)] [(class v) v]))

(defn- norm-row
  "[e a v tx added] with the value comparable (bytes by content, with its class) and
  txInstant values (which differ from the real run) replaced by ::inst."
  [[e a v tx added]]
  [e a (if (= :db/txInstant a) ::inst (norm-v v)) tx added])

(defn fresh-conn
  "A new empty stand-in database with `cfg` merged in."
  ([] (fresh-conn {}))
  ([cfg]
   (let [c (merge {:store {:backend :mem :id (str "cont-" (UUID/randomUUID))}} cfg)]
     (d/create-database c)
     (d/connect c))))

(deftest deltas-match-the-recorded-ones
  (let [conn (fresh-conn (:config @fixture))
        datoms (resolve 'datahike.api/datoms)]
    (doseq [step (:steps @fixture)]
      (let [report (d/transact conn (:input step))]
        (testing (str "step " (:step step) " (" (:label step) ")")
          (is (= (mapv norm-row (:before-after-delta step))
                 (mapv norm-row (cont/tx-delta @datoms report)))))))
    (d/release conn)))

(deftest restore-order-within-a-transaction
  (let [tx (+ tx0 5)
        delta [[7 :p/friend 12 tx true]      ; key 12 (new ref)
               [12 :p/name "twelve" tx true] ; key 12
               [3 :p/name "old" tx false]    ; retraction
               [tx :db/txInstant :inst tx true]
               [11 :p/name "eleven" tx true] ; key 11
               [7 :p/name "seven" tx true]   ; key -1 (7 not new)
               [tx :tx/note "meta" tx true]  ; key -1 (tx ids never count)
               [11 :p/friend 3 tx true]]     ; key 11 (3 not new)
        ordered (cont/restore-order delta tx :db/txInstant #{:p/friend} 10 12)]
    (is (= [[tx :db/txInstant :inst tx true]
            [3 :p/name "old" tx false]
            [7 :p/name "seven" tx true]
            [tx :tx/note "meta" tx true]
            [11 :p/name "eleven" tx true]
            [11 :p/friend 3 tx true]
            [7 :p/friend 12 tx true]
            [12 :p/name "twelve" tx true]]
           ordered))))

;; ---------------------------------------------------------------- reading what a capture wrote

(defn logs
  "The logs of `db-id` in target `t` (backend `bk`), each `{:id :head :segments [{:key
  :name}]}`, oldest first."
  [bk t db-id]
  (let [heads (filter #(str/ends-with? % "/log.edn") (b/keys-under bk t (str db-id "/")))]
    (->> heads
         (map (fn [k]
                (let [id (second (str/split k #"/"))
                      head (edn/read-string (b/read-string-at bk t k))
                      segs (->> (b/keys-under bk t (str db-id "/" id "/segments/"))
                                (map (fn [sk] {:key sk :name (last (str/split sk #"/"))})))]
                  {:id id :head head :segments segs
                   :closed (let [ck (str db-id "/" id "/closed.edn")]
                             (when (some #{ck} (b/keys-under bk t ck))
                               (edn/read-string (b/read-string-at bk t ck))))})))
         (sort-by #(:backup/created-at (:head %)))
         vec)))

(defn segment-datoms
  "The datoms of one segment, decoded natively (exact value types)."
  [bk t seg]
  (:datoms (native/decode-chunk (b/read-bytes bk t (:key seg)))))

(defn log-datoms
  "Every datom of a log's segments, in order."
  [bk t log]
  (vec (mapcat #(segment-datoms bk t %) (:segments log))))

(defn- by-tx [rows] (group-by #(nth % 3) rows))

(defn check-tx-order
  "Assert that each transaction's datoms in `rows` are in restore order: its txInstant
  datom, the retractions, then the assertions."
  [rows]
  (doseq [[tx ds] (by-tx rows)]
    (let [class (fn [[e a _ _ added]] (cond (not added) 1 (and (= e tx) (= a :db/txInstant)) 0 :else 2))]
      (is (apply <= (map class ds)) (str "restore order within tx " tx)))))

(defbackend-test a-capture-writes-the-recorded-deltas [bk]
  (let [t (b/fresh-target bk)
        conn (fresh-conn (:config @fixture))
        h (dc/start-continuous-backup conn t :database-id "rec" :flush-interval-ms 50)]
    (doseq [step (:steps @fixture)]
      (d/transact conn (:input step)))
    (let [final (dc/stop-continuous-backup h)
          [log :as ls] (logs bk t "rec")
          rows (log-datoms bk t log)]
      (is (= 1 (count ls)))
      (is (= (+ tx0 (count (:steps @fixture))) (:last-durable-tx final) (:captured-through final)))
      (is (false? (:running? final)))
      (is (= (:log-id final) (:id log)))
      (is (= (:last-durable-tx final) (:log/through (:closed log))))
      (testing "every transaction's datoms are the recorded delta"
        (let [got (by-tx rows)]
          (doseq [step (:steps @fixture)]
            (is (= (frequencies (map norm-row (:before-after-delta step)))
                   (frequencies (map norm-row (get got (:tx step)))))
                (str "step " (:step step) " (" (:label step) ")")))))
      (check-tx-order rows)
      (testing "the base backup of the new chain (an empty database) completed"
        (let [base (get-in final [:base-backup])]
          (is (= :complete (:state base)))
          (is (= (:backup/parent (:head log)) (str (:backup-id base))))
          (is (= tx0 (first (:backup/tx-range (:head log))))))))
    (d/release conn)))

(ns datacamp.continuous-test
  "Continuous backup: the capture's deltas against those a real Datahike recorded
  (tx-reports.edn), the segments a running capture writes, and the capture's life cycle
  (locks, stop/start, status)."
  (:require [clojure.edn :as edn]
            [clojure.java.io :as io]
            [clojure.string :as str]
            [clojure.test :refer [deftest is testing]]
            [datacamp.backends :as b :refer [defbackend-test]]
            [datacamp.capture-load :as load]
            [datacamp.continuous :as cont]
            [datacamp.core :as dc]
            [datacamp.native :as native]
            [datacamp.s3-server :as s3]
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
          ;; the same datoms; within an [e a] of a new entity the values in :tx-data order
          (is (= (frequencies (map norm-row (:before-after-delta step)))
                 (frequencies (map norm-row (cont/tx-delta @datoms report :db/txInstant)))))
          (is (= (distinct (map (comp pop pop pop norm-row) (:before-after-delta step)))
                 (distinct (map (comp pop pop pop norm-row) (cont/tx-delta @datoms report :db/txInstant))))
              "[e a] pairs in the same order"))))
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

;; ---------------------------------------------------------------- restoring what a capture wrote

(defn- empty-conn []
  (fresh-conn {:keep-history? true :schema-flexibility :write}))

(defn restore-latest
  "A new empty database restored from the newest chain of `db-id` (`opts` passed on)."
  [bk t db-id & opts]
  (let [conn (empty-conn)
        r (apply b/restore bk conn t nil :database-id db-id :latest? true opts)]
    [conn r]))

(defn- as-of-eav [db t]
  (set (map (fn [d] [(nth d 0) (nth d 1) (let [v (nth d 2)] (if (bytes? v) (vec v) v))])
            (d/datoms (d/as-of db t) :eavt))))

(defn- cur-eav [db]
  (set (map (fn [d] [(nth d 0) (nth d 1) (let [v (nth d 2)] (if (bytes? v) (vec v) v))])
            (d/datoms db :eavt))))

(defn- no-nick [eavs] (set (remove #(= :p/nick (nth % 1)) eavs)))

(defn check-restores
  "Restore the newest state of `db-id` and a few earlier points; each must equal the
  source (modulo phantom re-assertions)."
  [bk t db-id source points]
  (let [[conn r] (restore-latest bk t db-id)]
    (is (= {} (load/compare-dbs source @conn (conj (set points) (:max-tx source))))
        "latest: restore = source")
    (is (= (:max-tx source) (:restored-to-tx r)))
    (d/release conn))
  (doseq [p points]
    (let [conn (empty-conn)
          r (b/restore bk conn t nil :database-id db-id :latest? true :as-of-tx p)]
      (is (= p (:restored-to-tx r)) (str "as of " p))
      (is (= (inc p) (:max-tx @conn)) "the load-entities call takes one transaction")
      ;; the source's as-of view cannot show :db/noHistory values removed later
      (is (= (no-nick (as-of-eav source p)) (no-nick (cur-eav @conn))) (str "as of " p ": the as-of view"))
      (d/release conn))))

(defn- writer!
  "Transact workload transactions `from`..`to` on a thread, sleeping `pause-ms` between
  them; return a future of the alive persons after them."
  [conn seed from to alive pause-ms]
  (future
    (reduce (fn [alive i]
              (let [[_ a] (load/transact-one! conn seed i alive)]
                (when (pos? (long pause-ms)) (Thread/sleep (long pause-ms)))
                a))
            alive (range from (inc (long to))))))

(defbackend-test a-writer-thread-while-the-capture-runs [bk]
  (let [t (b/fresh-target bk)
        conn (load/fresh-conn (str "writer-" (UUID/randomUUID)))
        alive (load/replay! conn 11 1 40 [])
        h (dc/start-continuous-backup conn t :database-id "w" :flush-interval-ms 50)
        _ @(writer! conn 11 41 260 alive 2)
        final (dc/stop-continuous-backup h)
        source @conn]
    (is (= (:max-tx source) (:last-durable-tx final)))
    (is (false? (:running? final)))
    (is (nil? (:last-error final)) (str (:last-error final)))
    (is (pos? (long (:segments-written final))))
    (testing "the chain: the new chain's full backup, then the log"
      (let [listed (dc/list-backups t "w")
            log (first (filter #(= :log (:type %)) listed))]
        (is (= 2 (count listed)) (pr-str listed))
        (is (= (:max-tx source) (:max-tx log)))
        (is (:success (dc/verify-backup t (:backup-id log) :database-id "w" :deep? true)))))
    (check-restores bk t "w" source [(+ tx0 10) (+ tx0 41) (+ tx0 100) (+ tx0 200)])
    (d/release conn)))

(defbackend-test stop-start-cycles-continue-the-chain [bk]
  (let [t (b/fresh-target bk)
        conn (load/fresh-conn (str "cycles-" (UUID/randomUUID)))
        start #(dc/start-continuous-backup conn t :database-id "c" :flush-interval-ms 30)
        a (load/replay! conn 5 1 10 [])
        h1 (start)
        a (load/replay! conn 5 11 30 a)
        s1 (dc/stop-continuous-backup h1)
        ;; written while no capture runs: the next start catches them up
        a (load/replay! conn 5 31 45 a)
        h2 (start)
        a (load/replay! conn 5 46 60 a)
        s2 (dc/stop-continuous-backup h2)
        ;; nothing in between: no catch-up
        h3 (start)
        s3 (dc/stop-continuous-backup h3)
        a (load/replay! conn 5 61 70 a)
        h4 (with-open [^java.io.Closeable h (start)] (load/replay! conn 5 71 80 a) h)
        s4 (dc/continuous-status h4)
        source @conn]
    (is (= :new-chain (:kind (:started-as s1))))
    (is (= [:continue :continue :continue] (map (comp :kind :started-as) [s2 s3 s4])))
    (is (= 1 (count (:catch-ups s2))) "the transactions written while stopped were caught up")
    (is (= [(+ tx0 31) (+ tx0 46)] ((juxt :after :through) (first (:catch-ups s2))))
        "workload transaction i is tx0 + 1 + i (the schema is the first)")
    (is (empty? (:catch-ups s3)))
    (is (false? (:running? s4)) "with-open stopped it")
    (is (= (:max-tx source) (:last-durable-tx s4)))
    (let [ls (logs bk t "c")]
      (is (= 4 (count ls)))
      (testing "each log continues the previous one"
        (doseq [[prev next] (partition 2 1 ls)]
          (is (= (:id prev) (:backup/parent (:head next))))
          (is (= (:log/through (:closed prev)) (first (:backup/tx-range (:head next))))))))
    (check-restores bk t "c" source [(+ tx0 20) (+ tx0 40) (+ tx0 65)])
    (d/release conn)))

(deftest a-database-with-encrypted-backups-is-not-captured-in-plain
  (let [t (b/fresh-target b/dir)
        conn (load/fresh-conn (str "enc-" (UUID/randomUUID)))
        _ (load/replay! conn 7 1 10 [])
        full (dc/backup-to-directory conn t :database-id "e" :encryption {:key (byte-array 32 (byte 9))})
        before (set (map :backup-id (dc/list-backups t "e")))
        refused (try (dc/start-continuous-backup conn t :database-id "e") nil
                     (catch clojure.lang.ExceptionInfo e (ex-data e)))]
    (is (= #{(:backup-id full)} before))
    (is (= :datacamp/invalid-argument (:datacamp/error refused)) (pr-str refused))
    (is (str/includes? (str (:datacamp/hint refused)) "not supported yet"))
    (is (= before (set (map :backup-id (dc/list-backups t "e")))) "nothing was written")
    (testing "and :encryption is not an option of the capture"
      (let [e (try (dc/start-continuous-backup conn t :database-id "e2" :encryption {:key (byte-array 32)}) nil
                   (catch clojure.lang.ExceptionInfo e (ex-data e)))]
        (is (= :datacamp/invalid-argument (:datacamp/error e)))))
    (d/release conn)))

(deftest two-captures-of-one-database-refuse-each-other
  (let [t (b/fresh-target b/dir)
        conn (load/fresh-conn (str "lock-" (UUID/randomUUID)))
        other (load/fresh-conn (str "lock-other-" (UUID/randomUUID)))
        h (dc/start-continuous-backup conn t :database-id "l" :flush-interval-ms 50)
        refused (try (dc/start-continuous-backup other t :database-id "l") nil
                     (catch clojure.lang.ExceptionInfo e (ex-data e)))]
    (is (= :datacamp/conflict (:datacamp/error refused)))
    (is (str/includes? (str (:datacamp/hint refused) (:datacamp/op refused)) "start continuous backup"))
    (testing "a child JVM capturing the same database id is refused too, until it stops"
      (let [code (pr-str `(do (require 'datacamp.core 'datacamp.capture-load)
                              (let [conn# ((resolve 'datacamp.capture-load/fresh-conn) "lock-child")
                                    r# (try (apply (resolve 'datacamp.core/start-continuous-backup)
                                                   conn# ~t [:database-id "l"])
                                            :started
                                            (catch clojure.lang.ExceptionInfo e#
                                              (:datacamp/error (ex-data e#))))]
                                (println "RESULT" r#)
                                (System/exit 0))))
            p (.start (doto (ProcessBuilder. ^"[Ljava.lang.String;"
                                             (into-array String [(str (System/getProperty "java.home") "/bin/java")
                                                                 "-cp" (System/getProperty "java.class.path")
                                                                 "clojure.main" "-e" code]))
                        (.redirectErrorStream true)))
            out (slurp (.getInputStream p))]
        (.waitFor p)
        (is (str/includes? out "RESULT :datacamp/conflict") out)))
    (dc/stop-continuous-backup h)
    (testing "after a stop the lock is free"
      (let [h2 (dc/start-continuous-backup other t :database-id "l" :lock-wait-ms 5000)]
        (is (:running? (dc/continuous-status h2)))
        (dc/stop-continuous-backup h2)))
    (d/release conn)
    (d/release other)))

;; ---------------------------------------------------------------- the target goes away

(defn- sample-status
  "Sample the capture's status every 100 ms on a thread until `stop` is delivered; return a
  future of the samples."
  [h stop]
  (future
    (loop [acc []]
      (if (realized? stop)
        acc
        (do (Thread/sleep 100)
            (recur (conj acc (assoc (dc/continuous-status h) :at (System/currentTimeMillis)))))))))

(deftest an-s3-outage-of-ten-seconds-loses-nothing
  (s3/start!)
  (let [proxy (s3/start-fault-proxy! [])
        bucket (str "outage-" (System/nanoTime))
        _ (s3/create-bucket! bucket)
        t (assoc (s3/target bucket) :endpoint (:endpoint proxy))
        errors (atom [])
        conn (load/fresh-conn (str "outage-" (UUID/randomUUID)))
        alive (load/replay! conn 3 1 20 [])
        h (dc/start-continuous-backup conn t :database-id "o" :flush-interval-ms 200
                                      :on-error #(swap! errors conj %))
        stop (promise)
        samples (sample-status h stop)
        writing (writer! conn 3 21 620 alive 30)]
    (try
      (Thread/sleep 2000)
      (let [down-at (System/currentTimeMillis)]
        (s3/refuse-connections! proxy)
        (Thread/sleep 10000)
        (s3/accept-connections! proxy)
        @writing
        (let [flushed (cont/flush! h 60000)
              _ (deliver stop true)
              ss @samples
              during (filter #(< down-at (:at %) (+ down-at 10000)) ss)
              after (filter #(> (:at %) (+ down-at 14000)) ss)
              final (dc/stop-continuous-backup h)]
          (testing "the status showed the outage"
            (is (some #(false? (:target-reachable? %)) during))
            (is (some :outage-since during))
            (is (some #(= :datacamp/transient (get-in % [:last-error :datacamp/error])) during))
            (is (< 7000 (apply max (map :lag-ms during))) "the lag grew while the target was down")
            (is (some #(= :datacamp/transient (:datacamp/error (ex-data %))) @errors) ":on-error heard of it"))
          (testing "the lag recovered"
            (is (seq after) (pr-str (map (fn [x] [(- (:at x) down-at) (:lag-ms x)]) ss)))
            (is (every? #(< (long (:lag-ms %)) 2000) after) (pr-str (map :lag-ms after)))
            (is (zero? (long (:lag-ms flushed)))))
          (is (= (:max-tx @conn) (:last-durable-tx final)))
          (is (true? (:target-reachable? final)))
          (check-restores b/s3 t "o" @conn [(+ tx0 100) (+ tx0 300)])))
      (finally
        (deliver stop true)
        (s3/stop-fault-proxy! proxy)
        (d/release conn)))))

(deftest past-max-spool-bytes-the-capture-pauses-and-catches-up
  (s3/start!)
  (let [proxy (s3/start-fault-proxy! [])
        bucket (str "spool-" (System/nanoTime))
        _ (s3/create-bucket! bucket)
        t (assoc (s3/target bucket) :endpoint (:endpoint proxy))
        errors (atom [])
        conn (load/fresh-conn (str "spool-" (UUID/randomUUID)))
        alive (load/replay! conn 4 1 20 [])
        h (dc/start-continuous-backup conn t :database-id "s" :flush-interval-ms 50
                                      :max-spool-bytes 4096
                                      :on-error #(swap! errors conj %))
        _ (cont/flush! h 30000)
        _ (s3/refuse-connections! proxy)
        ;; the application goes on writing (every transaction returns normally) until the
        ;; spool is full, and 30 transactions more
        [n alive] (loop [i 21 a alive]
                    (if (or (:spool-full? (dc/continuous-status h)) (> i 3000))
                      [i a]
                      (let [[_ a] (load/transact-one! conn 4 i a)]
                        (Thread/sleep 5)
                        (recur (inc i) a))))
        alive (load/replay! conn 4 n (+ n 30) alive)
        ;; the capture thread reports the pause on its own turn: wait for it (bounded)
        deadline (+ (System/currentTimeMillis) 10000)
        paused (loop []
                 (let [s (dc/continuous-status h)]
                   (if (or (and (= :gap (:mode s))
                                (some #(str/includes? (ex-message %) "the spool is full") @errors))
                           (> (System/currentTimeMillis) deadline))
                     s
                     (do (Thread/sleep 10) (recur)))))]
    (try
      (testing "the status and :on-error report the full spool"
        (is (true? (:spool-full? paused)) (pr-str paused))
        (is (= :gap (:mode paused)))
        (is (str/includes? (str (:gap-reason paused)) "spool is full"))
        (is (<= (long (:pending-bytes paused)) 4096))
        (is (some #(str/includes? (ex-message %) "the spool is full") @errors)))
      (s3/accept-connections! proxy)
      (load/replay! conn 4 (+ n 31) (+ n 50) alive)
      (let [flushed (cont/flush! h 60000)
            final (dc/stop-continuous-backup h)]
        (testing "the capture recovered by catching up from the database"
          (is (= :live (:mode flushed)))
          (is (false? (:spool-full? flushed)))
          (is (seq (:catch-ups final)))
          (is (= (:max-tx @conn) (:last-durable-tx final))))
        (check-restores b/s3 t "s" @conn [(+ tx0 30) (- (:max-tx @conn) 3)]))
      (finally
        (s3/stop-fault-proxy! proxy)
        (d/release conn)))))

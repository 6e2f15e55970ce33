(ns ^:no-doc datacamp.continuous
  "Continuous backup: the engine under `datacamp.core/start-continuous-backup`.

  Contents: the delta of one transaction report (`tx-delta`, `restore-order`); the
  capture (`start`, `stop`, `status`, `flush!`).

  How a capture runs (README, \"Continuous backup\"):
  - the listener (`d/listen`, registered FIRST) only offers the report to a bounded queue
    and returns; it never blocks and never throws. A full queue drops the report and marks
    a gap;
  - one capture thread takes the reports in order, turns each into its transaction's exact
    delta (from `:db-before`/`:db-after`, not `:tx-data`), in restore order, and pushes
    column batches with one mark per transaction into the native session, which seals and
    stores segments and advances the durable point;
  - every report's `:db-before :max-tx` must be the log's end: reports the log already
    holds (caught up) are skipped; a report after a gap (a dropped report, a
    `load-entities`, a full spool) makes the thread catch up first — the history walked as a
    backup walks it — or, for a database without history, start a new chain;
  - a new chain (no chain yet, no history, `:snapshot-every`) is a full backup taken on
    another thread while the capture goes on (segments go to the old and the new log until
    it completes).
  Errors never reach the application: they show in the status (`:last-error`) and go to
  `:on-error`."
  (:require [datacamp.datahike :as dh]
            [datacamp.native :as native])
  (:import [datacamp.jni DatacampException DatomBatch NativeHandle]
           [java.util ArrayList HashMap LinkedHashMap LinkedHashSet]
           [java.util.concurrent ArrayBlockingQueue TimeUnit]
           [java.util.concurrent.atomic AtomicBoolean]))

(set! *warn-on-reflection* true)

;; ------------------------------------------------------------------ the delta of a report

(defn tx-id
  "The transaction id of a TxReport: `(:db/current-tx (:tempids report))`, else the
  db-after's `:max-tx`."
  [report]
  (or (get-in report [:tempids :db/current-tx])
      (:max-tx (:db-after report))))

(defn- ea [d] [(nth d 0) (nth d 1)])

(def ^:private tx0-id
  "The first transaction id (2^29): ids from here on are transaction ids."
  536870912)

(defn- fresh-entity?
  "Whether entity `e` can have no datom in the report's `:db-before`: it was allocated by
  this transaction (above `:db-before`'s `:max-eid`, below the tx ids) or is the
  transaction itself."
  [e tx before-max-eid]
  (let [e (long e)]
    (or (= e (long tx))
        (and (< (long before-max-eid) e) (< e (long tx0-id))))))

(defn tx-delta
  "Given `datoms` (`datahike.api/datoms`) and a TxReport, return the transaction's history
  delta as `[e a v tx added]` vectors: for each [e a] its `:tx-data` touches (and each of
  the transaction entity's own [tx a] in `:db-after`), the current values of `:db-before`
  that `:db-after` lacks (retractions) and those `:db-after` has and `:db-before` lacks
  (assertions). Unlike `:tx-data` it has the implicit retraction of a replaced card-one
  value (a `:db/noHistory` one too) and no re-assertion of an unchanged value
  (DATAHIKE.md, \"Transaction reports and d/listen\"). Order: [e a] pairs by first
  appearance in `:tx-data`, retractions before assertions within a pair.

  Lookups: an entity the transaction created (and the transaction entity) has no value in
  `:db-before`; when `:tx-data` only asserts values of such an [e a] — one value of a
  card-one attribute, any of a card-many one — those values are its current ones, taken
  from `:tx-data` without a lookup (in `:tx-data` order). Any other [e a] is looked up in
  both dbs (values in EAVT order). The transaction entity's datoms are looked up only when
  `:tx-data` lacks its `:db/txInstant`."
  [datoms report tx-instant-attr]
  (let [{:keys [db-before db-after tx-data]} report
        tx (tx-id report)
        before-max-eid (:max-eid db-before)
        schema (:schema db-after)
        pairs (LinkedHashMap.)
        out (ArrayList.)
        add-datom (fn [d] (let [k (ea d)
                                ^ArrayList l (or (.get pairs k) (let [l (ArrayList.)] (.put pairs k l) l))]
                            (.add l d)))]
    (doseq [d tx-data] (add-datom d))
    (when-not (.containsKey pairs [tx tx-instant-attr])
      (doseq [d (datoms db-after :eavt tx)]
        (when-not (.containsKey pairs (ea d)) (add-datom d))))
    (doseq [[[e a] ^ArrayList ds] pairs]
      (let [simple? (and (fresh-entity? e tx before-max-eid)
                         (every? #(nth % 4) ds)
                         (or (= 1 (.size ds))
                             (= :db.cardinality/many (:db/cardinality (get schema a)))))]
        (if simple?
          (doseq [v (distinct (map #(nth % 2) ds))] (.add out [e a v tx true]))
          (let [before (if (fresh-entity? e tx before-max-eid)
                         []
                         (mapv #(nth % 2) (datoms db-before :eavt e a)))
                after (mapv #(nth % 2) (datoms db-after :eavt e a))]
            (when-not (= before after)
              (let [b (set before) f (set after)]
                (doseq [v before :when (not (contains? f v))] (.add out [e a v tx false]))
                (doseq [v after :when (not (contains? b v))] (.add out [e a v tx true]))))))))
    (vec out)))

(defn restore-order
  "Given a transaction's delta (`tx-delta`), its tx id, the `:db/txInstant` attribute, a
  predicate of ref attributes and the `:max-eid` before and after it, return the delta in
  restore order: the transaction's own txInstant datom, the retractions, then the
  assertions by the largest id NEW in the transaction among those the datom mentions (its
  e, and its v for a ref attribute), stable otherwise. New means allocated by this
  transaction: above `:db-before`'s `:max-eid` (ids are allocated upwards) and at most
  `:db-after`'s. (A full backup calls an id new in the transaction of its first appearance
  in the history; the two differ only for ids that history shows later than they were
  allocated, e.g. an entity whose first values were of `:db/noHistory` attributes and are
  gone: in the log they are where they were allocated, which is what `load-entities`
  replaying the chain sees.)"
  [delta tx tx-instant-attr ref? before-max-eid after-max-eid]
  (let [before-max-eid (long before-max-eid)
        after-max-eid (long after-max-eid)
        new? (fn [id] (and (integer? id) (< before-max-eid (long id)) (<= (long id) after-max-eid)))
        class (fn [[e a _ _ added]]
                (cond (not added) 1
                      (and (= e tx) (= a tx-instant-attr)) 0
                      :else 2))
        k (fn [[e a v]]
            (max (if (new? e) (long e) -1)
                 (if (and (ref? a) (new? v)) (long v) -1)))
        ;; one long per datom: class, then key + 1 (ids of entities stay below 2^32)
        sort-key (fn [d] (let [c (long (class d))]
                           (+ (bit-shift-left c 33) (if (= 2 c) (inc (long (k d))) 0))))]
    (map second (sort-by first (map (fn [d] [(sort-key d) d]) delta)))))

;; ------------------------------------------------------------------ options

(def ^:private defaults
  {:flush-interval-ms 1000
   :queue-size 10000
   :batch-size 8192
   :stop-timeout-ms 60000
   :shutdown-timeout-ms 5000
   :poll-ms 20})

(defn- check-options!
  "Refuse option values of the wrong type (nothing has started yet)."
  [opts]
  (let [bad (fn [k what]
              (throw (ex-info (str k " must be " what ", got " (pr-str (get opts k)))
                              {:datacamp/error :datacamp/invalid-argument k (get opts k)})))]
    (doseq [k [:flush-interval-ms :max-segment-bytes :max-spool-bytes :queue-size :batch-size
               :lock-lease-ms :stop-timeout-ms :shutdown-timeout-ms]]
      (when-let [v (get opts k)]
        (when-not (and (integer? v) (pos? v)) (bad k "a positive integer"))))
    (when-let [v (:lock-wait-ms opts)]
      (when-not (and (integer? v) (not (neg? v))) (bad :lock-wait-ms "a non-negative integer")))
    (when-let [f (:on-error opts)]
      (when-not (ifn? f) (bad :on-error "a function")))
    (when-let [s (:snapshot-every opts)]
      (when-not (and (map? s) (seq (select-keys s [:bytes :hours]))
                     (every? #(and (number? %) (pos? %)) (vals (select-keys s [:bytes :hours]))))
        (bad :snapshot-every "a map {:bytes n :hours h} with positive numbers")))))

(defn- order-facts
  "What the restore order needs of `db`'s schema."
  [db]
  {:ref-attrs (dh/ref-attrs db)
   :tx-instant-attr (dh/tx-instant-attr db)
   :skip-tx0? (boolean (get-in db [:config :attribute-refs?]))})

(defn- native-options
  "The options map the native session takes."
  [opts db-id db]
  (let [facts (dh/describe db)]
    (cond-> (merge (order-facts db)
                   {:database-id db-id
                    :max-tx (:max-tx facts)
                    :max-eid (:max-eid facts)
                    :history? (:keep-history? facts)
                    :datahike-id (:datahike-id facts)
                    :datahike-version (:datahike-version facts)
                    :db-config (:db-config facts)
                    ;; :db/txInstant is :db/noHistory in the implicit schema, but never retracted
                    :no-history-attrs (vec (remove (set [:db/txInstant (dh/tx-instant-attr db)])
                                                   (dh/no-history-attrs db)))
                    :flush-interval-ms (long (:flush-interval-ms opts))})
      (:max-segment-bytes opts) (assoc :max-segment-bytes (long (:max-segment-bytes opts)))
      (:max-spool-bytes opts) (assoc :max-spool-bytes (long (:max-spool-bytes opts)))
      (:spool-dir opts) (assoc :spool-dir (str (:spool-dir opts)))
      (:compression-level opts) (assoc :compression-level (long (:compression-level opts)))
      (:lock-lease-ms opts) (assoc :lock-lease-ms (long (:lock-lease-ms opts)))
      (:lock-wait-ms opts) (assoc :lock-wait-ms (long (:lock-wait-ms opts)))
      (:break-lock? opts) (assoc :break-lock? true)
      (:tmp-dir opts) (assoc :tmp-dir (str (:tmp-dir opts)))
      (:sort-buffer-bytes opts) (assoc :sort-buffer-bytes (long (:sort-buffer-bytes opts))))))

;; ------------------------------------------------------------------ the capture

(declare stop)

(defrecord Capture [conn db-id opts ^NativeHandle handle ^ArrayBlockingQueue queue
                    ^AtomicBoolean dropped ^AtomicBoolean stopping listener-key
                    st ^DatomBatch batch hooks datoms info threads]
  java.io.Closeable
  (close [this] (stop this)))

(defn- now [] (System/currentTimeMillis))

(defn- error-map
  "An error as the status shows it."
  [^Throwable t]
  (let [d (ex-data t)]
    (cond-> {:datacamp/error (or (:datacamp/error d)
                                 (when (instance? DatacampException t)
                                   (keyword "datacamp" (.getKind ^DatacampException t)))
                                 :datacamp/internal)
             :message (or (ex-message t) (str t))
             :at (java.util.Date.)}
      (:datacamp/op d) (assoc :op (:datacamp/op d))
      (:datacamp/hint d) (assoc :hint (:datacamp/hint d)))))

(defn- notify!
  "Record `t` as the last error and hand it to `:on-error` (whose own failures are
  ignored)."
  [^Capture c ^Throwable t]
  (let [t (if (instance? DatacampException t) (native/native-ex t {:database-id (:db-id c)}) t)]
    (swap! (:st c) assoc :last-error (error-map t))
    (when-let [f (:on-error (:opts c))]
      (try (f t) (catch Throwable _ nil)))))

(defn- notify-native-errors!
  "Hand each error the native side recorded since the last look to `:on-error`, oldest
  first (the native side keeps its recent ones, so an error followed at once by another
  is not missed)."
  [^Capture c status]
  (let [seen (long (:native-error-seq @(:st c) 0))
        fresh (filter #(> (long (:seq %)) seen) (:recent-errors status))]
    (when (seq fresh)
      (swap! (:st c) assoc :native-error-seq (:seq (last fresh)))
      (when-let [f (:on-error (:opts c))]
        (doseq [e fresh]
          (try (f (ex-info (:message e) (cond-> {:datacamp/error (:datacamp/error e)
                                                   :datacamp/op (:op e)
                                                   :database-id (:db-id c)}
                                            (:key e) (assoc :datacamp/key (:key e))
                                            (:hint e) (assoc :datacamp/hint (:hint e)))))
               (catch Throwable _ nil)))))))

(defn- enter-gap!
  "Stop capturing live: drop what is not pushed yet; the capture catches up later."
  [^Capture c reason]
  (.clear ^DatomBatch (:batch c))
  (swap! (:st c) (fn [s] (cond-> (assoc s :marks [])
                           (= :live (:mode s)) (-> (assoc :mode :gap :gap-reason reason :gap-since (now))
                                                   (update :gaps (fnil inc 0)))))))

(defn- push-marks!
  "Push the batch with the marks of the transactions completed in it; a refusal (spool
  full) starts a gap."
  [^Capture c]
  (let [^DatomBatch b (:batch c)
        marks (:marks @(:st c))]
    (when (or (seq marks) (pos? (.count b)))
      (let [arr (long-array (* 6 (count marks)))]
        (doseq [[i [before after n committed instant]] (map-indexed vector marks)]
          (let [o (* 6 (long i))]
            (aset arr o (long before))
            (aset arr (+ o 1) (long after))
            (aset arr (+ o 2) (long n))
            (aset arr (+ o 3) (long committed))
            (aset arr (+ o 4) (long (if instant (.getTime ^java.util.Date instant) Long/MIN_VALUE)))
            (aset arr (+ o 5) 0)))
        (swap! (:st c) assoc :marks [])
        (when-not (native/log-push (:handle c) b (count marks) arr)
          (enter-gap! c "the spool is full"))))))

(defn- ref-pred
  "The ref-attribute predicate of `db`'s schema (cached by schema identity)."
  [^Capture c db]
  (let [schema (:schema db)
        [cached pred] (:ref-cache @(:st c))]
    (if (identical? cached schema)
      pred
      (let [p (set (dh/ref-attrs db))]
        (swap! (:st c) assoc :ref-cache [schema p])
        p))))

(defn- add-tx!
  "Compute the report's delta and add it to the batch (pushing full batches, a transaction
  may span two)."
  [^Capture c report committed]
  (let [{:keys [db-before db-after tx-meta]} report
        tx (tx-id report)
        tx-instant (dh/tx-instant-attr db-after)
        delta (restore-order ((:datoms c) report tx-instant) tx tx-instant (ref-pred c db-after)
                             (:max-eid db-before) (:max-eid db-after))
        ^DatomBatch b (:batch c)]
    (doseq [[e a v t added] delta]
      (when (.add b (long e) a v (long t) (boolean added))
        (push-marks! c)))
    (swap! (:st c) (fn [s] (-> s
                               (update :marks conj [(:max-tx db-before) (:max-tx db-after) (count delta)
                                                    committed (:db/txInstant tx-meta)])
                               (assoc :expected (:max-tx db-after) :last-db db-after)
                               (update :txs (fnil inc 0)))))))

(declare new-chain!)

(defn- catch-up!
  "Append the transactions the log lacks up to `db` (a history walk of `db`); a database
  without history starts a new chain instead. Returns true when the log then ends at
  `db`."
  [^Capture c db reason]
  (let [h (:handle c)
        through (long (:max-tx db))]
    (if-not (get-in db [:config :keep-history?])
      (do (new-chain! c db false (str reason "; the database keeps no history, so the"
                                      " transactions in between cannot be caught up"))
          true)
      (let [after (long (native/log-catch-up-begin h through (order-facts db)))
            started (now)]
        (if (= after through)
          (do (native/log-catch-up-abort h)
              (swap! (:st c) assoc :expected through :last-db db :mode :live)
              true)
          (do (native/log-catch-up-walk h (dh/datoms db true) (:batch-size (:opts c)))
              (let [r (native/log-catch-up-finish h)
                    entry (assoc r :after after :through through :reason reason
                                 :duration-ms (- (now) started))]
                (swap! (:st c) update :catch-ups (fnil conj []) entry)
                (if (:refused? r)
                  (do (enter-gap! c "the spool is full") false)
                  (do (swap! (:st c) assoc :expected through :last-db db :mode :live) true)))))))))

(defn- start-base!
  "Take the full backup `backup-id` of `db` on its own thread (the base of a new chain)."
  [^Capture c db backup-id dual? old-log]
  (let [result (promise)
        t (Thread. ^Runnable (fn []
                               (deliver result
                                        (try {:ok ((:full-backup (:hooks c)) db backup-id)}
                                             (catch Throwable e {:error e}))))
                   (str "datacamp-capture-base-" (:db-id c)))]
    (.setDaemon t true)
    (swap! (:st c) assoc :base {:backup-id backup-id :state :running :dual? dual? :old-log old-log
                                :basis (:max-tx db) :started (java.util.Date.)
                                :thread t :result result})
    (.start t)))

(defn- new-chain!
  "Start a new chain at `db`: its full backup runs on another thread; with `dual?` (`db`
  is at the log's end) the current log keeps taking segments until it completes, without
  it the current logs end where they are and the capture moves on to `db`."
  [^Capture c db dual? reason]
  (when dual? (push-marks! c))
  (let [old (get-in @(:st c) [:chain :log-id])
        {:keys [log-id backup-id]} (native/log-new-chain (:handle c) nil (:max-tx db) dual? reason)]
    (swap! (:st c) assoc :expected (:max-tx db) :last-db db :mode :live
           :chain {:log-id log-id :base backup-id :reason reason :since (java.util.Date.)
                   :bytes-at-start (:bytes-written (native/log-status (:handle c)) 0)})
    (swap! (:st c) update :new-chains (fnil conj []) {:backup-id backup-id :log-id log-id
                                                      :reason reason :at (java.util.Date.)})
    (start-base! c db backup-id dual? (when dual? old))))

(defn- check-base!
  "When the running base backup ended: retire the old log (success), or give up the new
  chain and retry later (failure)."
  [^Capture c]
  (let [{:keys [state result dual? old-log backup-id retry-at]} (:base @(:st c))]
    (cond
      (and (= :running state) (realized? result))
      (let [{:keys [ok error]} @result]
        (if ok
          (do (when old-log
                (native/log-retire (:handle c) old-log (str "a new chain starts at full backup " backup-id)))
              (swap! (:st c) update :base merge {:state :complete :completed (java.util.Date.)
                                                 :thread nil :result nil
                                                 :datom-count (:datom-count ok)}))
          (do (swap! (:st c) update :base merge {:state :failed :thread nil :result nil
                                                 :error (error-map error)
                                                 :retry-at (+ (now) 30000)})
              (notify! c error)
              (when dual?
                (native/log-retire (:handle c) (get-in @(:st c) [:chain :log-id])
                                   (str "its base backup " backup-id " failed"))
                (swap! (:st c) assoc-in [:chain :log-id] old-log)))))

      (and (= :failed state) (not dual?) retry-at (< (long retry-at) (now))
           (= :live (:mode @(:st c))))
      (do (push-marks! c)
          (new-chain! c (:last-db @(:st c)) false (str "retry: the base backup " backup-id " failed"))))))

(defn- maybe-snapshot!
  "Start a new chain when `:snapshot-every` says so."
  [^Capture c status]
  (when-let [{:keys [bytes hours]} (:snapshot-every (:opts c))]
    (let [s @(:st c)
          chain (:chain s)
          since (.getTime ^java.util.Date (:since chain))]
      (when (and (= :live (:mode s)) (not= :running (get-in s [:base :state])) (:last-db s)
                 (or (and bytes (>= (- (long (:bytes-written status 0)) (long (:bytes-at-start chain 0)))
                                    (long bytes)))
                     (and hours (>= (- (now) since) (* (double hours) 3600000)))))
        (new-chain! c (:last-db s) true "snapshot (:snapshot-every)")))))

(defn- process!
  "Process reports `rs` (each `[report committed-ms]`) in order."
  [^Capture c rs]
  (doseq [[r committed] rs]
    (let [before (long (:max-tx (:db-before r)))
          after (long (:max-tx (:db-after r)))
          {:keys [expected mode]} @(:st c)]
      (cond
        (<= after (long expected)) nil
        (not= :live mode) nil
        (= before (long expected)) (add-tx! c r committed)
        :else
        (do (push-marks! c)
            (when (catch-up! c (:db-before r)
                             (str "transactions " (inc (long expected)) ".." before
                                  " were not reported (a load-entities or a dropped report)"))
              (when (= before (long (:expected @(:st c))))
                (add-tx! c r committed)))))))
  (push-marks! c))

(defn- drain
  "The reports waiting in the queue (at most n), after `first`."
  [^ArrayBlockingQueue q first n]
  (let [out (ArrayList.)]
    (.add out first)
    (.drainTo q out (int (dec (long n))))
    out))

(defn- step!
  "One turn of the capture thread."
  [^Capture c]
  (let [^ArrayBlockingQueue q (:queue c)
        first (.poll q (long (:poll-ms (:opts c))) TimeUnit/MILLISECONDS)]
    (when first
      (process! c (drain q first 512)))
    (when (.getAndSet ^AtomicBoolean (:dropped c) false)
      (enter-gap! c "the capture queue was full: transaction reports were dropped"))
    (native/log-tick (:handle c))
    (when (or (= :gap (:mode @(:st c)))
              (>= (- (now) (long (:status-at @(:st c) 0))) 100))
      (let [status (native/log-status (:handle c))
            {:keys [mode expected marks]} @(:st c)]
        (swap! (:st c) assoc :status-at (now))
        ;; the writer dropped what it could not keep (its spool is full): catch up later
        (when (and (= :live mode) (empty? marks)
                   (or (:spool-full? status) (< (long (:captured-through status)) (long expected))))
          (enter-gap! c "the spool is full"))
        (when (and (= :gap (:mode @(:st c))) (not (:spool-full? status))
                   (not (.get ^AtomicBoolean (:stopping c))))
          (when (catch-up! c (dh/current-db (:conn c)) (:gap-reason @(:st c)))
            (swap! (:st c) dissoc :gap-reason :gap-since)))
        (check-base! c)
        (maybe-snapshot! c status)
        (notify-native-errors! c status)))
    (swap! (:st c) update :turns (fnil inc 0))))

(defn- run-capture
  "The capture thread: the first catch-up or base backup, then reports until stopped."
  [^Capture c db0]
  (let [plan (:plan (:info c))]
    (try
      (if (= :new-chain (:kind plan))
        (start-base! c db0 (:backup-id plan) false nil)
        (when (< (long (:after plan)) (long (:max-tx db0)))
          (catch-up! c db0 (str "catching up from tx " (:after plan) " (" (:parent plan) ")"))))
      (catch Throwable t
        (notify! c t)
        (enter-gap! c (str "the first catch-up failed: " (ex-message t))))))
  (loop []
    (let [stopping? (.get ^AtomicBoolean (:stopping c))]
      (when-not (and stopping? (.isEmpty ^ArrayBlockingQueue (:queue c)))
        (try
          (step! c)
          (catch InterruptedException _ nil)
          (catch Throwable t
            (notify! c t)
            (try (enter-gap! c (str "capture failed: " (ex-message t))) (catch Throwable _ nil))
            (try (Thread/sleep 1000) (catch InterruptedException _ nil))))
        (when-not (.isInterrupted (Thread/currentThread))
          (recur))))))

(defn status
  "The capture's status: the native side's (durable point, lag, segments, errors…) with
  what the JVM side knows (running, queued reports, catch-ups, chains)."
  [^Capture c]
  (let [s @(:st c)
        native (or (:final s)
                   (try (native/log-status (:handle c)) (catch Throwable _ nil)))
        jvm-error (:last-error s)
        native-error (some-> (:last-error native)
                             (select-keys [:datacamp/error :op :message :key :hint :at]))
        newer (fn [a b] (if (and a b)
                          (if (pos? (compare (:at a) (:at b))) a b)
                          (or a b)))]
    (merge (dissoc native :last-error :recent-errors)
           {:running? (and (not (:final s)) (not (.get ^AtomicBoolean (:stopping c))))
            :database-id (:db-id c)
            :queued-txs (.size ^ArrayBlockingQueue (:queue c))
            :mode (:mode s)
            :gap-reason (:gap-reason s)
            :gaps (:gaps s 0)
            :catch-ups (:catch-ups s [])
            :txs-seen (:txs s 0)
            :chain (:chain s)
            :new-chains (:new-chains s [])
            :base-backup (some-> (:base s) (dissoc :thread :result))
            :started-as (:plan (:info c))
            :last-error (newer jvm-error native-error)})))

(defn flush!
  "Wait (at most `timeout-ms`) until the capture thread processed every report seen so far
  (two full turns after the queue was empty), caught up any gap, and everything pushed is
  durable; return the status."
  [^Capture c timeout-ms]
  (let [deadline (+ (now) (long timeout-ms))
        turns #(long (:turns @(:st c) 0))
        settle (fn []
                 (while (and (pos? (.size ^ArrayBlockingQueue (:queue c))) (< (now) deadline))
                   (Thread/sleep 2))
                 (let [t0 (turns)]
                   (while (and (< (turns) (+ t0 2)) (< (now) deadline))
                     (Thread/sleep 2))))]
    (loop []
      (settle)
      (if (and (= :gap (:mode @(:st c))) (< (now) deadline))
        (do (Thread/sleep 10) (recur))
        (let [st (native/log-flush (:handle c) (max 0 (- deadline (now))))]
          (when (and (or (:spool-full? st) (= :gap (:mode @(:st c)))) (< (now) deadline))
            (recur)))))
    (status c)))

(defn stop
  "Stop the capture: stop listening, push what was seen, flush and close the log (at most
  `:stop-timeout-ms`), release the lock; return the final status."
  ([c] (stop c (:stop-timeout-ms (:opts c))))
  ([^Capture c timeout-ms]
   (let [^AtomicBoolean stopping (:stopping c)]
     (if-not (.compareAndSet stopping false true)
       (do (loop [] (when-not (:final @(:st c)) (Thread/sleep 10) (recur)))
           (status c))
       (let [deadline (+ (now) (long timeout-ms))
             left #(max 0 (- deadline (now)))
             ^Thread t (:capture @(:threads c))]
         (try (dh/unlisten! (:conn c) (:listener-key c)) (catch Throwable _ nil))
         (.join t (max 1 (long (left))))
         (when (.isAlive t)
           (.interrupt t)
           (.join t 1000))
         (when-let [^Thread base (get-in @(:st c) [:base :thread])]
           (.join base (max 1 (long (left))))
           (if (.isAlive base)
             (do (.interrupt base)
                 (.join base 1000)
                 (swap! (:st c) update :base assoc :state :interrupted))
             ;; its outcome: retire the old log (a new chain's base completed)
             (try (check-base! c) (catch Throwable e (notify! c e)))))
         (let [final (try (native/log-close (:handle c) (left) "stopped")
                          (catch Throwable e (notify! c e) (native/log-status (:handle c))))]
           (when-let [^Thread hook (:hook @(:threads c))]
             (try (.removeShutdownHook (Runtime/getRuntime) hook)
                  (catch IllegalStateException _ nil)))
           (.close ^NativeHandle (:handle c))
           (swap! (:st c) assoc :final final)
           (status c)))))))

(defn start
  "Start capturing `conn` into `target` (see `datacamp.core/start-continuous-backup`).
  `hooks`: `{:full-backup (fn [db backup-id] …)}`, which takes a full backup of `db` under
  `backup-id` (the base of a new chain)."
  [conn target db-id opts hooks]
  (check-options! opts)
  (native/ensure-loaded!)
  (let [opts (merge defaults opts)
        queue (ArrayBlockingQueue. (int (:queue-size opts)))
        dropped (AtomicBoolean. false)
        listener-key (keyword "datacamp.continuous" (str (random-uuid)))
        listener (fn [report]
                   (try
                     (when-not (.offer queue [report (now)])
                       (.set dropped true))
                     (catch Throwable _ (.set dropped true))))
        datoms-fn (dh/api-fn 'datoms)]
    ;; FIRST listen, then read the db: every transaction after it is reported.
    (dh/listen! conn listener-key listener)
    (try
      (let [db0 (dh/current-db conn)
            handle (native/with-native-errors {:database-id db-id}
                     (native/log-open target (native-options opts db-id db0)))
            info (native/log-info handle)
            plan (:plan info)
            expected (if (= :continue (:kind plan)) (:after plan) (:max-tx db0))
            st (atom {:mode :live :expected expected :last-db (when (= expected (:max-tx db0)) db0)
                      :marks [] :gaps 0
                      :chain {:log-id (:log-id info)
                              :base (or (:base plan) (:backup-id plan))
                              :reason (or (:reason plan) (str "continues " (:parent plan)))
                              :since (java.util.Date.) :bytes-at-start 0}})
            threads (atom {})
            c (->Capture conn db-id opts handle queue dropped (AtomicBoolean. false) listener-key
                         st (DatomBatch. (int (:batch-size opts))) hooks
                         (fn [report tx-instant] (tx-delta datoms-fn report tx-instant)) info threads)
            capture-thread (Thread. ^Runnable (fn [] (run-capture c db0))
                                    (str "datacamp-capture-" db-id))
            hook (Thread. ^Runnable (fn [] (try (stop c (:shutdown-timeout-ms opts))
                                                (catch Throwable _ nil)))
                          (str "datacamp-capture-shutdown-" db-id))]
        (reset! threads {:capture capture-thread :hook hook})
        (.setDaemon capture-thread true)
        (.addShutdownHook (Runtime/getRuntime) hook)
        (.start capture-thread)
        c)
      (catch Throwable t
        (try (dh/unlisten! conn listener-key) (catch Throwable _ nil))
        (throw t)))))

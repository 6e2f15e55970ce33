(ns datahike.connector
  "Test stand-in for Datahike 0.6.1613's connections, in-memory stores and the
  connection's writer.

  Stores live in this JVM only, keyed by store identity (`[:mem id]`,
  `[:memory id]`, `[:file path]`): a `:file` database is NOT written to disk,
  but two connects of the same config see the same database. `connect` returns
  the cached `Connection` for a store (a reference count per connect); `release`
  drops one reference and, at zero, marks the connection released. Unlike the
  real one (a released connection's `transact` hangs forever), every use of a
  released connection - deref, transact, load-entities, listen - throws an
  ex-info with `:error :standin/connection-released`, so such bugs show up in
  tests.

  The writer (`dispatch!`), as Datahike 0.6.1613's `datahike.writer` does it:
  - each connection has ONE writer thread (\"datahike-standin-writer-N\") that
    applies `transact`/`load-entities` calls one after another in call order
    and commits each (the connection's db and its store);
  - a commit stamps a commit id: `(:meta db-after)` gains
    `:datahike/commit-id`, `:datahike/parents` and `:datahike/updated-at`, and
    the report's `:tx-meta` gains `:db/commitId` (writer.cljc's commit loop
    `(assoc-in [:tx-meta :db/commitId] commit-id)` - also for load-entities,
    whose `:tx-meta` is therefore `{:db/commitId …}`);
  - the listeners (`d/listen`) are called after the commit, only for
    `transact`, with the committed report, on a pool thread
    (\"datahike-standin-async-dispatch-N\", standing for core.async's dispatch
    threads), BEFORE the caller's deref-able is delivered: `transact` returns
    only after every listener returned (writer.cljc `transact!`: the go block
    runs `(doseq [[_ callback] …] (callback tx-report))` and only then
    `(deliver p tx-report)`). The reports of one connection reach the listeners
    one after another in commit order; a slow listener therefore slows every
    `transact` caller. `load-entities` calls no listener (writer.cljc
    `load-entities` delivers without them; DATAHIKE.md measured the same);
  - a listener that throws: the exception escapes (real: out of the go block
    into the dispatch thread's uncaught-exception handler, which prints it to
    stderr; no timbre log), the remaining listeners of that report are skipped
    and the caller's deref-able is NEVER delivered, so the real `transact`
    hangs forever (see `await!` for the stand-in's bound). The commit has
    happened; later transactions work and are reported normally;
  - a failed transaction (e.g. schema violation) is delivered as its exception
    (deref rethrows it) and calls no listener;
  - `kill-writer!` / `kill-writer-after!` make the writer die like the real one
    does when the file store runs out of descriptors (DATAHIKE.md, \"The file
    store holds file descriptors\"): nothing is committed any more and every
    pending and later deref-able is never delivered.

  Deref-ables (`writer-promise`) imitate Datahike 0.6's `throwable-promise`
  (datahike/tools.cljc, CompletableFuture-based since 0.6.158x, PR #700): a
  blocking deref waits forever; a timed deref `(deref p ms v)` of a promise
  that is not delivered in time THROWS - an ExceptionInfo with message
  \"java.util.concurrent.TimeoutException\", ex-data `{}` and that
  `TimeoutException` as cause (tools.cljc: `(if-let [v (try (.get cf ms …)
  (catch Throwable t t))] (throw-if-exception- v) timeout-val)` - the caught
  TimeoutException is truthy and superv.async's `throw-if-exception-` wraps and
  throws it; `timeout-val` is only returned for a delivered nil). Deviation
  kept on purpose: a delivered exception is rethrown AS IS, whereas by the
  source the real deref wraps it (ExceptionInfo(message of the
  ExecutionException, ex-data {}) -> ExecutionException -> the exception); the
  existing tests (and DATAHIKE.md's \"load-entities throws
  ClassCastException\") expect the exception itself, and no measurement tells
  which one 0.6.1613 shows.

  Other stand-in choices (where the real writer differs or is silent):
  - listener calls of ONE connection are strictly sequential in commit order,
    also for concurrent `transact!` calls; in the real writer each
    transaction's listeners run in that transaction's own go block, so
    pipelined `transact!`s may see their listeners run concurrently;
  - a listener that itself transacts on the same connection gets its report
    as soon as that transaction is committed, before that transaction's
    listeners ran (they run after the current ones); the real writer needs no
    such exception (one go block per transaction) - without it the
    sequential chain would deadlock;
  - by the source, the real `:db-before` of a report is the writer loop's
    uncommitted previous db-after, whose `:meta` keeps the
    `:datahike/commit-id` the connection had when its writer started; the
    stand-in's is the previous committed db. Datoms, `:max-tx` and `:max-eid`
    are the same;
  - where the real `transact` blocks forever, `await!` gives up after
    `*hang-ms*`."
  (:require [datahike.db :as db])
  (:import [java.security MessageDigest]
           [java.util UUID]
           [java.util.concurrent CompletableFuture Executor ExecutorService Executors
            RejectedExecutionException ThreadFactory TimeUnit TimeoutException]
           [java.util.concurrent.atomic AtomicLong]))

(set! *warn-on-reflection* true)

;; ---------------------------------------------------------------------------
;; deref-ables

(deftype WriterPromise [^CompletableFuture cf]
  clojure.lang.IDeref
  (deref [_]
    (let [v (.get cf)]
      (if (instance? Throwable v) (throw ^Throwable v) v)))
  clojure.lang.IBlockingDeref
  (deref [_ timeout-ms timeout-val]
    (let [v (try (.get cf (long timeout-ms) TimeUnit/MILLISECONDS)
                 (catch TimeoutException e
                   (throw (ex-info (or (.getMessage e) (str e)) {} e))))]
      (cond
        (instance? Throwable v) (throw ^Throwable v)
        (nil? v) timeout-val
        :else v)))
  clojure.lang.IPending
  (isRealized [_] (.isDone cf))
  clojure.lang.IFn
  (invoke [this x]
    (.complete cf x)
    this))

(defn writer-promise
  "A new, undelivered deref-able with the semantics of Datahike 0.6's
  `throwable-promise` described in the namespace doc (deliver with `deliver`;
  a delivered Throwable is rethrown by deref; a timed deref that runs out
  throws)."
  ^WriterPromise []
  (WriterPromise. (CompletableFuture.)))

(defn delivered
  "A writer-promise already delivered with x (a value or a Throwable)."
  [x]
  (deliver (writer-promise) x))

(def ^:dynamic *hang-ms*
  "How long `await!` (used by the stand-in's `datahike.api/transact`) waits for
  a report that the real Datahike would never deliver (dead writer, a listener
  that threw) before it throws ex-info `:error :standin/hung`. The real
  `transact` derefs without a bound and hangs forever; the stand-in bounds it
  so a test suite cannot hang. Default: the system property
  `datahike.standin.hang-ms`, else 300000 (5 minutes)."
  (Long/parseLong (System/getProperty "datahike.standin.hang-ms" "300000")))

(defn await!
  "Given a writer-promise, wait for it at most `*hang-ms*` and return its value
  (rethrowing a delivered exception); when it is not delivered by then, throw
  ex-info `{:error :standin/hung}` (the real Datahike would block forever)."
  [^WriterPromise p]
  (let [v (try (.get ^CompletableFuture (.-cf p) (long *hang-ms*) TimeUnit/MILLISECONDS)
               (catch TimeoutException e
                 (throw (ex-info (str "Datahike stand-in: no result after " *hang-ms* " ms; the real "
                                      "Datahike would wait forever here (its writer died, or a "
                                      "listener threw). See datahike.connector/*hang-ms*.")
                                 {:error :standin/hung :hang-ms *hang-ms*}
                                 e))))]
    (if (instance? Throwable v) (throw ^Throwable v) v)))

;; ---------------------------------------------------------------------------
;; threads

(defn- thread-factory ^ThreadFactory [prefix]
  (let [n (AtomicLong.)]
    (reify ThreadFactory
      (newThread [_ r]
        (doto (Thread. ^Runnable r (str prefix (.incrementAndGet n)))
          (.setDaemon true))))))

(defonce ^:private writer-threads (thread-factory "datahike-standin-writer-"))

(defonce ^:private dispatch-pool
  ;; core.async's dispatch pool has 8 threads by default.
  (delay (Executors/newFixedThreadPool 8 (thread-factory "datahike-standin-async-dispatch-"))))

(defn- uncaught!
  "Hand t to the current thread's uncaught-exception handler (by default the
  thread group's, which prints `Exception in thread \"…\"` and the stack trace
  to stderr), as happens to an exception escaping a core.async go block."
  [^Throwable t]
  (let [th (Thread/currentThread)]
    (.uncaughtException (.getUncaughtExceptionHandler th) th t)))

;; ---------------------------------------------------------------------------
;; connections

(deftype Connection [state]
  clojure.lang.IDeref
  (deref [this]
    (let [{:keys [released? db conn-id]} @state]
      (when released?
        (throw (ex-info "Connection has been released (real Datahike would hang or fail here)."
                        {:error :standin/connection-released :conn-id conn-id})))
      db)))

(defmethod print-method Connection [^Connection c ^java.io.Writer w]
  (.write w (str "#datahike/Connection " (pr-str (:conn-id @(.-state c))))))

(defonce ^{:doc "store identity -> the database value 'persisted' in that store."}
  stores (atom {}))

(defonce ^{:doc "store identity -> {:conn Connection :count n} of open connections."}
  connections (atom {}))

(defn store-identity
  "Given a full config, return the identity of its store: `[:mem id]` (0.6),
  `[:memory id]` (0.7) or `[:file path]`."
  [{:keys [store]}]
  (case (:backend store)
    :mem [:mem (:id store)]
    :memory [:memory (:id store)]
    :file [:file (:path store)]
    (throw (ex-info (str "The Datahike stand-in supports the :mem, :memory and :file backends, not " (:backend store))
                    {:error :standin/unsupported :store store}))))

(defn state
  "The state map of a connection:
  {:db :conn-id :config :released? :listeners :writer}."
  [^Connection conn]
  @(.-state conn))

(defn- released-ex [conn-id]
  (ex-info "Connection has been released; the real Datahike's transact would hang forever."
           {:error :standin/connection-released :conn-id conn-id}))

(defn check-open!
  "Throw unless the connection is open."
  [^Connection conn]
  (let [{:keys [released? conn-id]} (state conn)]
    (when released?
      (throw (released-ex conn-id)))))

;; ---------------------------------------------------------------------------
;; the writer

(defn- new-writer
  "A writer: its (single) thread's executor, its control state (`:dead` holds
  the exception it died of, `:budget` the datoms it may still write before it
  dies, with `:budget-ex`) and the tail of its listener-notification chain."
  []
  {:executor (Executors/newSingleThreadExecutor writer-threads)
   :control (atom {:dead nil :budget nil :budget-ex nil})
   :tail (atom (CompletableFuture/completedFuture nil))})

(defn- writer
  "The writer of a connection (created on first use)."
  [^Connection conn]
  (force (:writer (state conn))))

(defn- shutdown-writer!
  "Stop accepting work on the connection's writer thread (queued jobs still run)."
  [^Connection conn]
  (let [w (:writer (state conn))]
    (when (and w (realized? w))
      (.shutdown ^ExecutorService (:executor @w)))))

(defn writer-error
  "The exception the connection's writer died of (see `kill-writer!`), or nil
  while it lives."
  [^Connection conn]
  (:dead @(:control (writer conn))))

(defn- die!
  "Kill the writer with ex: mark it dead (nothing is committed or delivered any
  more), make its thread die of ex (printed to stderr by the uncaught-exception
  handler, as a dying writer thread is) and stop accepting work."
  [w ^Throwable ex]
  (let [ex (or ex (java.nio.file.FileSystemException. "datahike-standin-store" nil "Too many open files"))
        ^ExecutorService executor (:executor w)]
    (swap! (:control w) assoc :dead ex)
    (try
      (.execute executor ^Runnable (fn [] (throw ex)))
      (catch RejectedExecutionException _ nil))
    (.shutdown executor)
    ex))

(defn kill-writer!
  "Test hook: make the connection's writer die of `ex` (e.g.
  `(java.nio.file.FileSystemException. \"/db/x\" nil \"Too many open files\")`;
  when nil such an exception) the way Datahike 0.6.1613's writer does when the file store
  runs out of descriptors (DATAHIKE.md): the writer thread dies (ex is printed
  to stderr by its uncaught-exception handler), nothing more is committed
  (`@conn` stays at the last commit), no listener is called, and the deref-able
  of every `transact!`/`load-entities` still pending or made later is NEVER
  delivered: a blocking deref hangs, a timed deref throws (see the namespace
  doc), `datahike.api/transact` throws `:standin/hung` after `*hang-ms*`.
  A job being applied when the kill happens is not committed either. Returns ex."
  [^Connection conn ex]
  (die! (writer conn) ex))

(defn kill-writer-after!
  "Test hook: let the connection's writer write `n` more datoms, then die of `ex`
  like `kill-writer!`. Datoms are counted per write: the tuples handed to a
  `load-entities` call, the `:tx-data` datoms of a `transact`. The write that
  would pass `n` is the one the writer dies in: it is not committed and its
  deref-able (and every later one) is never delivered; writes up to exactly `n`
  datoms complete normally. So a restore loading in batches fails halfway: the
  first batches commit, the batch crossing `n` hangs. Returns nil."
  [^Connection conn n ex]
  (swap! (:control (writer conn)) assoc :budget (long n) :budget-ex ex)
  nil)

(defn- commit-id
  "A commit id like Datahike's (a name-based, version-5 UUID of the db's hash,
  max-tx, max-eid and meta; the real one is hasch's `(uuid [hash max-tx max-eid
  meta])`, so the values differ)."
  [db]
  (let [^MessageDigest md (MessageDigest/getInstance "SHA-1")
        bs (.digest md (.getBytes (pr-str [(:hash db) (:max-tx db) (:max-eid db) (:meta db)]) "UTF-8"))
        long-of (fn [^long off]
                  (reduce (fn [^long acc ^long i] (bit-or (bit-shift-left acc 8) (bit-and (long (aget bs (+ off i))) 0xff)))
                          0 (range 8)))
        msb (-> (long (long-of 0)) (bit-and (bit-not 0xf000)) (bit-or 0x5000))
        lsb (-> (long (long-of 8)) (bit-and 0x3fffffffffffffff) (bit-or Long/MIN_VALUE))]
    (UUID. msb lsb)))

(defn- commit
  "The report with its db-after committed: meta stamped like writing.cljc's
  `complete-db-update` (`:datahike/updated-at`) and `commit!`
  (`:datahike/commit-id`, `:datahike/parents`), `:db/commitId` in `:tx-meta`."
  [report db-before]
  (let [db-after (:db-after report)
        db (assoc db-after :meta (assoc (:meta db-after) :datahike/updated-at (get-in report [:tx-meta :db/txInstant])))
        prev (get-in db-before [:meta :datahike/commit-id])
        cid (commit-id db)
        db (update db :meta assoc :datahike/commit-id cid :datahike/parents (if prev #{prev} #{}))]
    (-> report
        (assoc :db-after db)
        (assoc-in [:tx-meta :db/commitId] cid))))

(def ^:private ^:dynamic *notifying*
  "The connection whose listeners the current thread is running, if any."
  nil)

(defn- notify!
  "Append the report to the connection's listener chain: on a dispatch-pool
  thread, after the previous report's listeners, call every listener registered
  at that time, then deliver p (when given). A listener that throws stops the
  rest and leaves p undelivered (see the namespace doc)."
  [^Connection conn w report p]
  (let [task (fn []
               (binding [*notifying* conn]
                 (try
                   (doseq [[_ f] (:listeners (state conn))]
                     (f report))
                   (when p (deliver p report))
                   (catch Throwable t
                     (uncaught! t)))))
        ^CompletableFuture tail @(:tail w)]
    (reset! (:tail w) (.thenRunAsync tail ^Runnable task ^Executor @dispatch-pool))))

(defn- over-budget?
  "When the writer has a datom budget (`kill-writer-after!`): consume the
  `(count-fn)` datoms of this write and return false, or return true (the
  writer must die) when they exceed what is left."
  [w count-fn]
  (let [{:keys [budget]} @(:control w)]
    (when budget
      (let [n (long (count-fn))]
        (if (> n (long budget))
          true
          (do (swap! (:control w) update :budget - n) false))))))

(defn- run-job
  "Apply one job on the writer thread (see `dispatch!`)."
  [^Connection conn w {:keys [op f count-fn p from-listener?]}]
  (when-not (:dead @(:control w))
    (let [outcome
          (locking conn
            (let [{:keys [db released? conn-id]} (state conn)]
              (if released?
                [:error (released-ex conn-id)]
                (let [report (try (f db) (catch Throwable t t))]
                  (cond
                    (instance? Throwable report) [:error report]
                    (:dead @(:control w)) [:dead]
                    (over-budget? w #(count-fn report)) [:die]
                    :else (let [report (commit report db)]
                            (swap! (.-state conn) assoc :db (:db-after report))
                            (swap! stores assoc conn-id (:db-after report))
                            [:ok report]))))))
          [kind x] outcome]
      (case kind
        :error (deliver p x)
        :dead nil
        :die (let [ex (:budget-ex @(:control w))]
               (die! w ex))
        :ok (case op
              :transact (if from-listener?
                          ;; a listener's own transact on this connection: its listeners run
                          ;; after the current ones (the chain is sequential), so deliver now
                          ;; instead of deadlocking (real: one go block per transaction).
                          (do (deliver p x) (notify! conn w x nil))
                          (notify! conn w x p))
              :load-entities (deliver p x))))))

(defn dispatch!
  "Hand a write to the connection's writer and return its deref-able (a
  `writer-promise`) at once. `op` is :transact (listeners are called) or
  :load-entities (they are not); `f` is applied on the writer thread to the
  current db and returns the TxReport; `count-fn` gives the number of datoms the
  write counts for `kill-writer-after!` (called with the report). On a released
  connection the deref-able is delivered with the :standin/connection-released
  ex-info; on a dead writer it is never delivered."
  [^Connection conn op f count-fn]
  (let [p (writer-promise)
        {:keys [released? conn-id]} (state conn)]
    (if released?
      (deliver p (released-ex conn-id))
      (let [w (writer conn)
            job {:op op :f f :count-fn count-fn :p p
                 :from-listener? (identical? *notifying* conn)}]
        (when-not (:dead @(:control w))
          (try
            (.execute ^ExecutorService (:executor w) ^Runnable (fn [] (run-job conn w job)))
            (catch RejectedExecutionException _
              ;; released meanwhile (writer shut down) or dead: like the real one, no answer
              (when (:released? (state conn)) (deliver p (released-ex conn-id))))))))
    p))

(defn update-db!
  "Test hook, bypassing the writer: given an open connection and a fn of the
  current db returning a TxReport, commit the report's db-after (also to the
  store) synchronously on the calling thread and return the report. No commit
  id, no listeners. Prefer `datahike.api/transact`."
  [^Connection conn f]
  (locking conn
    (check-open! conn)
    (let [{:keys [db conn-id]} (state conn)
          report (f db)]
      (swap! (.-state conn) assoc :db (:db-after report))
      (swap! stores assoc conn-id (:db-after report))
      report)))

(defn add-listener!
  "Register f under key to be called with each TxReport of a `transact` on the
  open connection (see the namespace doc for when and where)."
  [^Connection conn key f]
  (check-open! conn)
  (swap! (.-state conn) assoc-in [:listeners key] f)
  key)

(defn remove-listener!
  "Remove the listener registered under key; return the remaining listeners
  (key -> fn), as datahike.core's `unlisten!` returns its `swap!`."
  [^Connection conn key]
  (:listeners (swap! (.-state conn) update :listeners dissoc key)))

(defn reset-db!
  "Test hook: replace the open connection's current db value (and its store's).
  The real 0.6 `Connection` implements `IAtom` (`swap!`/`reset!` act on its
  internal value); the stand-in offers only this explicit hook, see the
  namespace doc of `datahike.api`."
  [^Connection conn db-value]
  (locking conn
    (check-open! conn)
    (swap! (.-state conn) assoc :db db-value)
    (swap! stores assoc (:conn-id (state conn)) db-value)
    db-value))

(defn connect!
  "Given a full config of an existing store, return its (cached) connection,
  counting one more reference."
  [config]
  (let [id (store-identity config)]
    (locking connections
      (if-let [{:keys [conn]} (get @connections id)]
        (do (swap! connections update-in [id :count] inc) conn)
        (let [stored (or (get @stores id)
                         (throw (ex-info "Database does not exist."
                                         {:type :db-does-not-exist :config config})))
              conn (Connection. (atom {:db (dissoc stored :migration)
                                       :conn-id id
                                       :config (:config stored)
                                       :released? false
                                       :listeners {}
                                       :writer (delay (new-writer))}))]
          (swap! connections assoc id {:conn conn :count 1})
          conn)))))

(defn- mark-released! [^Connection conn]
  (swap! (.-state conn) assoc :released? true)
  (shutdown-writer! conn))

(defn release!
  "Drop one reference to the connection; at zero it is released (and its writer
  thread stopped). Releasing a connection that is no longer open is a no-op, as
  in Datahike."
  [^Connection conn]
  (let [id (:conn-id (state conn))]
    (locking connections
      (when-let [{n :count cached :conn :as entry} (get @connections id)]
        (when (identical? cached conn)
          (if (<= (long n) 1)
            (do (swap! connections dissoc id) (mark-released! conn))
            (swap! connections assoc id (update entry :count dec))))))
    nil))

(defn create-store!
  "Given a full config, store an empty database for it; throws if it exists."
  [config]
  (let [id (store-identity config)]
    (locking connections
      (when (contains? @stores id)
        (throw (ex-info "Database already exists." {:type :db-already-exists :config (:store config)})))
      (swap! stores assoc id (db/empty-db config))
      config)))

(defn put-store!
  "Given a full config and a database value, store the value (used to replay fixtures)."
  [config db-value]
  (swap! stores assoc (store-identity config) db-value)
  config)

(defn delete-store!
  "Delete the store of a config, releasing its open connection if any."
  [config]
  (let [id (store-identity config)]
    (locking connections
      (when-let [{:keys [conn]} (get @connections id)]
        (swap! connections dissoc id)
        (mark-released! conn))
      (swap! stores dissoc id)
      nil)))

(defn store-exists?
  "True if a database exists for the config's store."
  [config]
  (contains? @stores (store-identity config)))

(ns ^:no-doc datacamp.native
  "Interop with the Rust core (datacamp.jni.Native): argument encoding, result decoding,
  and the one place where native exceptions become `ex-info` with `:datacamp/error`."
  (:require [clojure.edn :as edn])
  (:import [datacamp.jni DatacampException DatomBatch DatomWalker Native NativeHandle NativeLoader ValueDecoder]
           [java.util.function LongConsumer]))

(set! *warn-on-reflection* true)

(defn edn-str
  "Given Clojure data, return it as an EDN string the Rust core reads."
  ^String [x]
  (binding [*print-namespace-maps* false
            *print-length* nil
            *print-level* nil
            *print-meta* false]
    (pr-str x)))

(defn read-edn
  "Given an EDN string returned by the Rust core, return the data."
  [^String s]
  (edn/read-string s))

(defn native-ex
  "Given a DatacampException and extra context, return the `ex-info` users see."
  [^DatacampException e extra]
  (ex-info (.getMessage e)
           (merge {:datacamp/error (keyword "datacamp" (.getKind e))
                   :datacamp/op (.getOp e)}
                  (when-let [k (.getKey e)] {:datacamp/key k})
                  (when-let [h (.getHint e)] {:datacamp/hint h})
                  extra)
           e))

(defn ensure-loaded!
  "Load the native library (once); throw `ex-info` (`:datacamp/native-library`) saying
  every place that was tried when it cannot be loaded."
  []
  (try
    (NativeLoader/load)
    (catch UnsatisfiedLinkError e
      (throw (ex-info (str "the Datacamp native library could not be loaded: " (.getMessage e))
                      {:datacamp/error :datacamp/native-library
                       :datacamp/hint "build it with `make native`, or set -Ddatacamp.native.path=/path/to/libdatacamp.so"}
                      e)))))

(defmacro with-native-errors
  "Load the native library if needed, then evaluate `body`; a DatacampException thrown
  inside becomes `ex-info` carrying `:datacamp/error` plus the map `extra`."
  [extra & body]
  `(do
     (ensure-loaded!)
     (try
       ~@body
       (catch DatacampException e#
         (throw (native-ex e# ~extra))))))

(defn handle
  "Given a native handle and the native function that frees it, return an AutoCloseable
  NativeHandle (freed exactly once, by `.close` or by a Cleaner as a safety net)."
  ^NativeHandle [^long h free-fn]
  (NativeHandle. h (reify LongConsumer (accept [_ x] (free-fn x)))))

(defn backup-open
  "Open a backup session; return its NativeHandle."
  ^NativeHandle [target opts]
  (handle (Native/backupOpen (edn-str target) (edn-str opts))
          (fn [^long h] (Native/backupFree h))))

(defn backup-finish
  "Commit the backup behind `h`; return the result map."
  [^NativeHandle h]
  (read-edn (Native/backupFinish (.get h))))

(defn backup-progress
  "The progress counters of backup session `h` (readable while another thread finishes it):
  `{:stage … :datoms-received … :chunks-stored … :datoms-stored … :bytes-stored …}`."
  [^NativeHandle h]
  (read-edn (Native/backupProgress (.get h))))

(defn check-options
  "Check the keys of the options map `opts` against those operation `op` accepts (only the
  keys are sent: values are checked where they are used)."
  [^String op opts]
  (Native/checkOptions op (edn-str (zipmap (keys opts) (repeat nil)))))

(defn read-metadata
  "Read and parse one EDN metadata file of `target` (size-limited): file `name`
  (\"manifest.edn\", …) of a backup, or, with nil ids, the key `name` relative to the
  target's root."
  [target ^String database-id ^String backup-id ^String name]
  (read-edn (Native/readMetadata (edn-str target) database-id backup-id name)))

(defn list-backups
  "Return the backups of `database-id` under `target`."
  [target database-id]
  (read-edn (Native/listBackups (edn-str target) database-id)))

(defn backup-status
  "Return the state of one backup: `{:state :complete|:incomplete|:missing :config …}`."
  [target database-id backup-id]
  (read-edn (Native/backupStatus (edn-str target) database-id backup-id)))

(defn verify-backup
  "Return the verification report of one backup (`opts`: `{:encryption …}` or nil)."
  [target database-id backup-id deep? opts]
  (read-edn (Native/verifyBackup (edn-str target) database-id backup-id (boolean deep?) (edn-str opts))))

(defn cleanup-incomplete
  "Remove incomplete backups older than `older-than-ms`; return what was removed."
  [target database-id older-than-ms]
  (read-edn (Native/cleanupIncomplete (edn-str target) database-id (long older-than-ms))))

(defn repair-manifest
  "Rebuild the damaged manifest of finished backup `backup-id`; return the report."
  [target database-id backup-id]
  (read-edn (Native/repairManifest (edn-str target) database-id backup-id)))

(defn rewrap-backup-keys
  "Re-wrap the data keys of the encrypted backups of `database-id`; return the report."
  [target database-id opts]
  (read-edn (Native/rewrapBackupKeys (edn-str target) database-id (edn-str opts))))

(defn prune-backups
  "Apply the retention options to the backups of `database-id`; return the report."
  [target database-id opts]
  (read-edn (Native/pruneBackups (edn-str target) database-id (edn-str opts))))

(defn- decode-columns
  "Load the columns the core returned (`Object[]{id e a tx added vtag vnum vbytes newAttrs}`)
  into `decoder`; return `{:id … :datoms [[e a v tx added] …]}`."
  [^ValueDecoder decoder ^objects cols]
  (let [^bytes vbytes (aget cols 7)
        ^bytes new-attrs (aget cols 8)
        ^longs e (aget cols 1)]
    (.setBatch decoder (alength e) e ^ints (aget cols 2) ^longs (aget cols 3)
               ^booleans (aget cols 4) ^bytes (aget cols 5) ^longs (aget cols 6)
               vbytes (alength vbytes) new-attrs (alength new-attrs))
    {:id (aget cols 0)
     :datoms (.datoms decoder)}))

(defn decode-chunk
  "Given the stored (gzip) bytes of a chunk, decode them natively and return
  `{:chunk/id n :datoms [[e a v tx added] …]}` with exact value types (vectors vs lists,
  Double vs Float, BigDecimal scale, byte arrays)."
  [^bytes stored]
  (let [{:keys [id datoms]} (decode-columns (ValueDecoder.) (Native/decodeChunk stored))]
    {:chunk/id id :datoms datoms}))

(defn restore-open
  "Open a restore session; return its NativeHandle."
  ^NativeHandle [target opts]
  (handle (Native/restoreOpen (edn-str target) (edn-str opts))
          (fn [^long h] (Native/restoreFree h))))

(defn restore-info
  "What the backup behind restore session `h` says about itself."
  [^NativeHandle h]
  (read-edn (Native/restoreInfo (.get h))))

(defn restore-next
  "The next batch of restore session `h` as `{:chunk-id n :datoms [[e a v tx added] …]}`,
  decoded by `decoder` (a ValueDecoder kept for the whole session), or nil at the end."
  [^NativeHandle h ^ValueDecoder decoder]
  (when-let [cols (Native/restoreNext (.get h))]
    (let [{:keys [id datoms]} (decode-columns decoder cols)]
      {:chunk-id id :datoms datoms})))

;; ------------------------------------------------------------------ continuous capture

(defn log-open
  "Open a continuous capture session; return its NativeHandle."
  ^NativeHandle [target opts]
  (handle (Native/logOpen (edn-str target) (edn-str opts))
          (fn [^long h] (Native/logFree h))))

(defn- call
  "Call `f` with the raw handle of `h`, keeping `h` reachable during the call."
  [^NativeHandle h f]
  (.apply h (reify java.util.function.LongFunction
              (apply [_ x] (f x)))))

(defn log-info
  "How capture session `h` started: `{:log-id … :plan {…} :recovered-segments n}`."
  [^NativeHandle h]
  (read-edn (call h #(Native/logInfo %))))

(defn log-status
  "The native status of capture session `h`."
  [^NativeHandle h]
  (read-edn (call h #(Native/logStatus %))))

(defn log-tick
  "Seal the open segment of `h` when its flush interval passed."
  [^NativeHandle h]
  (call h #(Native/logTick %)))

(defn log-catch-up-begin
  "Begin a catch-up of `h` up to tx `through`; `order` holds the walked db's
  `{:ref-attrs :tx-instant-attr :skip-tx0?}`. Returns the tx it starts after."
  [^NativeHandle h through order]
  (call h #(Native/logCatchUpBegin % (long through) (edn-str order))))

(defn log-push
  "Push `batch` (live transactions) into capture session `h` with `mark-count` marks
  (6 longs each, see Native/logPush); true when taken, false when refused (spool full)."
  [^NativeHandle h ^DatomBatch batch mark-count ^longs marks]
  (zero? (long (call h #(.pushToLog batch (long %) (int mark-count) marks)))))

(defn log-catch-up-walk
  "Push the history walk `datoms` into the catch-up running in `h`; return the count."
  [^NativeHandle h datoms batch-size]
  ;; In a holder, not closed over: no frame keeps the head of the walk (see DatomWalker).
  (let [holder (doto (object-array 1) (aset 0 datoms))]
    (call h #(DatomWalker/pushAll holder (long %) (int batch-size) true))))

(defn log-catch-up-finish
  "Append the caught-up transactions; return `{:txs :datoms :datoms-read :refused?}`."
  [^NativeHandle h]
  (read-edn (call h #(Native/logCatchUpFinish %))))

(defn log-catch-up-abort
  "Drop a catch-up in progress."
  [^NativeHandle h]
  (call h #(Native/logCatchUpAbort %)))

(defn log-new-chain
  "Start a new chain's log in `h` (base full backup `backup-id`, segments after `after`);
  return `{:log-id … :backup-id …}`."
  [^NativeHandle h backup-id after dual? reason]
  (read-edn (call h #(Native/logNewChain % backup-id (long after) (boolean dual?) reason))))

(defn log-retire
  "Stop sending segments to `log-id`; it is closed once it holds everything captured."
  [^NativeHandle h log-id reason]
  (call h #(Native/logRetire % log-id reason)))

(defn log-flush
  "Seal and wait at most `timeout-ms` until everything captured is durable; return the status."
  [^NativeHandle h timeout-ms]
  (read-edn (call h #(Native/logFlush % (long timeout-ms)))))

(defn log-close
  "Flush (at most `timeout-ms`), close the logs, release the lock; return the final status."
  [^NativeHandle h timeout-ms reason]
  (read-edn (call h #(Native/logClose % (long timeout-ms) reason))))

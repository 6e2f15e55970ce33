(ns datacamp.core
  "Backup and restore for Datahike databases, done by a native (Rust) core.

  Backups:    `backup-to-directory`, `backup-to-s3`, `resume-backup`
  Restore:    `restore-from-directory`, `restore-from-s3`
  Catalog:    `list-backups`, `verify-backup`, `cleanup-incomplete`

  A target is a map: `{:path \"/backups\"}` for a local directory, `{:bucket …}` for S3.
  Every failure throws `ex-info` whose data carries `:datacamp/error` (e.g. `:datacamp/invalid-argument`,
  `:datacamp/io`, `:datacamp/not-found`, `:datacamp/corrupt`) and a message a person can
  act on. Options are documented in the README."
  (:require [clojure.string :as str]
            [datacamp.datahike :as dh]
            [datacamp.native :as native]
            ;; Loaded with the API, as the original's Quick Start calls it unrequired.
            [datacamp.utils])
  (:import [datacamp.jni DatomWalker NativeHandle ValueDecoder]))

(set! *warn-on-reflection* true)

(def ^:private default-batch-size
  "Datoms per JNI call."
  8192)

(defn- invalid!
  "Throw an `:datacamp/invalid-argument` ex-info."
  [msg data]
  (throw (ex-info msg (merge {:datacamp/error :datacamp/invalid-argument} data))))

(def ^:private s3-keys
  "The keys of an S3 target map passed to the core (see the README)."
  [:bucket :region :prefix :endpoint :path-style-access? :access-key-id :secret-access-key
   :session-token :storage-class :sse :kms-key-id :multipart-threshold :part-size
   :upload-concurrency :max-retries :retry-base-ms :retry-max-ms :connect-timeout-ms :timeout-ms])

(defn ^:no-doc canonical-target
  "Given a target map — a directory `{:path …}` or S3 `{:bucket …}` — validate it and
  return what is sent to the core."
  [target]
  (when-not (map? target)
    (invalid! "the target must be a map: {:path \"/backups\"} or {:bucket \"…\" :region \"…\"}" {:target target}))
  (cond
    (contains? target :bucket)
    (do (when-not (and (string? (:bucket target)) (not (str/blank? (:bucket target))))
          (invalid! ":bucket must be a non-blank string" {:bucket (:bucket target)}))
        (into {} (remove (comp nil? val)) (select-keys target s3-keys)))

    (and (string? (:path target)) (not (str/blank? (:path target))))
    {:path (:path target)}

    :else
    (invalid! "the target needs :path (a directory) or :bucket (S3)" {:target (dissoc target :secret-access-key :session-token)})))

(defn- dir-target
  "Given a directory target map, return the canonical target sent to the core."
  [target]
  (when (and (map? target) (contains? target :bucket))
    (invalid! "this function takes a directory target {:path …}; use the -s3 variant for S3" {}))
  (canonical-target target))

(defn- s3-target
  "Given an S3 target map, return the canonical target sent to the core."
  [target]
  (when-not (and (map? target) (contains? target :bucket))
    (invalid! "an S3 target needs :bucket" {}))
  (canonical-target target))

(def ^:private default-database-id
  "The database id when neither `:database-id` nor the store's `:id` gives one (as the
  original datacamp documents it)."
  "default-db")

(defn- database-id
  "The database id from the options, else the store's :id, else \"default-db\". Only its
  type is checked here; the core checks the name itself (one wording for a bad id)."
  [opts db]
  (let [id (if (some? (:database-id opts))
             (:database-id opts)
             (or (some-> db :config :store :id str) default-database-id))]
    (when-not (string? id)
      (invalid! (str ":database-id must be a string, got " (pr-str id)) {:database-id id}))
    id))

(defn- database-id-arg
  "A database id passed as an argument: a string (the core checks the name)."
  [id]
  (when-not (string? id)
    (invalid! (if (nil? id)
                "the database id is nil: pass the name of the database's backups"
                (str "the database id must be a string, got " (pr-str id)))
              {:database-id id}))
  id)

(defn- backup-id-arg
  "A backup id passed as an argument (a UUID or the original's string), as the core's
  string; nil is reported as missing, not as a blank name."
  [id]
  (when (nil? id)
    (invalid! "the backup id is nil: pass the id of a backup (see list-backups)" {:backup-id nil}))
  (str id))

(defn- check-options!
  "Fail (`:datacamp/invalid-argument`) on an option key operation `op` does not know,
  naming the closest known one: the core knows each operation's keys; this layer only
  removes its own (`own`) first."
  [op opts own]
  (native/with-native-errors {}
    (native/check-options op (apply dissoc opts own))))

(defn- positive-long!
  [k v]
  (when (and (some? v) (not (and (integer? v) (pos? v))))
    (invalid! (str k " must be a positive integer, got " (pr-str v)) {k v})))

(defn- parse-id
  "Our backup ids are UUIDs; the original implementation's are strings."
  [id]
  (or (and (string? id) (parse-uuid id)) id))

(defn- with-ids
  [m]
  (cond-> m (:backup-id m) (update :backup-id parse-id)))

(defn ^:no-doc backup-options
  "The options map sent to the core."
  [opts db-id facts]
  (let [history? (and (get opts :history? true) (:keep-history? facts))]
    (doseq [k [:chunk-size :parallel :sort-buffer-bytes]]
      (positive-long! k (get opts k)))
    (when-let [c (:compression opts)]
      (when-not (= :gzip c)
        (invalid! (str ":compression " (pr-str c) " is not supported; use :gzip") {:compression c})))
    (cond-> {:database-id db-id
             :history? (boolean history?)
             :ref-attrs (:ref-attrs facts)
             :tx-instant-attr (:tx-instant-attr facts)
             :skip-tx0? (:attribute-refs? facts)
             :max-eid (:max-eid facts)
             :max-tx (:max-tx facts)
             :datahike-version (:datahike-version facts)
             :datahike-id (:datahike-id facts)
             :db-config (:db-config facts)}
      (:chunk-size opts) (assoc :chunk-size (long (:chunk-size opts)))
      (:parallel opts) (assoc :parallel (long (:parallel opts)))
      (:sort-buffer-bytes opts) (assoc :sort-buffer-bytes (long (:sort-buffer-bytes opts)))
      (:compression-level opts) (assoc :compression-level (long (:compression-level opts)))
      (:tmp-dir opts) (assoc :tmp-dir (str (:tmp-dir opts))))))

(def ^:private backup-own-keys
  "The backup options this layer handles itself (not sent to the core)."
  [:batch-size :progress-fn])

(def ^:private progress-interval-ms
  "How often a backup's `:progress-fn` is called (when something changed)."
  500)

(defn- progress-event
  "The map `:progress-fn` receives, from the core's counters."
  [{:keys [stage datoms-received chunks-stored datoms-stored bytes-stored]}]
  (if (= :reading stage)
    {:stage :reading :datoms-done datoms-received :bytes-done 0 :chunks-done 0}
    {:stage stage :datoms-done datoms-stored :datoms-total datoms-received
     :bytes-done bytes-stored :chunks-done chunks-stored}))

(defn- run-reporting
  "Run `work` (a fn of no arguments) on another thread and call `report` on this one every
  `progress-interval-ms` until it is done; return its value or rethrow its exception. When
  `report` throws (or this thread is interrupted), `work` is interrupted and waited for,
  then the exception is rethrown."
  [work report]
  (let [done (promise)
        fut (future (try (work) (finally (deliver done true))))
        outcome (try
                  (loop []
                    (let [v (deref fut progress-interval-ms ::running)]
                      (if (identical? v ::running)
                        (do (report) (recur))
                        [:ok v])))
                  (catch java.util.concurrent.ExecutionException e [:failed (or (.getCause e) e)])
                  (catch Throwable t [:stopped t]))]
    (case (first outcome)
      :ok (second outcome)
      :failed (throw ^Throwable (second outcome))
      :stopped (do (future-cancel fut)
                   @done
                   (throw ^Throwable (second outcome))))))

(defn ^:no-doc backup-datoms
  "Given a canonical target, the native options and a seqable of datoms in EAVT order,
  run one backup and return its result map (the engine under `backup-to-directory`;
  benchmarks call it with generated datoms). With `:progress-fn` in `opts`, the datoms are
  pushed and the backup finished on another thread while this one calls it with
  `{:stage :reading|:sorting|:writing|:committing|:done :datoms-done … :datoms-total …
  :bytes-done … :chunks-done …}` every half second when something changed, and once at
  the end (`:done`)."
  [target native-opts datoms opts]
  (let [batch-size (int (or (:batch-size opts) default-batch-size))
        progress-fn (:progress-fn opts)]
    (when (and (some? progress-fn) (not (ifn? progress-fn)))
      (invalid! (str ":progress-fn must be a function, got " (pr-str progress-fn)) {}))
    (native/with-native-errors {:database-id (:database-id native-opts)}
      (with-open [h (native/backup-open target native-opts)]
        ;; ^:once: the closure lets go of the seq's head as it walks it (no database in memory).
        (let [work (^:once fn* []
                    (DatomWalker/pushAll datoms (.get ^NativeHandle h) batch-size)
                    (with-ids (native/backup-finish h)))]
          (if-not progress-fn
            (work)
            (let [last-event (volatile! nil)
                  report (fn []
                           (let [e (progress-event (native/backup-progress h))]
                             (when (not= e @last-event)
                               (vreset! last-event e)
                               (progress-fn e))))
                  r (run-reporting work report)]
              (progress-fn {:stage :done :datoms-done (:datom-count r) :datoms-total (:datom-count r)
                            :bytes-done (:total-size-bytes r) :chunks-done (:chunk-count r)})
              r)))))))

(defn- backup!
  "A full backup of `conn` to a canonical target."
  [conn target opts]
  (check-options! "backup" opts backup-own-keys)
  (let [db (dh/current-db conn)
        db-id (database-id opts db)
        facts (dh/describe db)
        native-opts (backup-options opts db-id facts)]
    (backup-datoms target native-opts (dh/datoms db (:history? native-opts)) opts)))

(defn backup-to-directory
  "Given a Datahike connection and a directory target `{:path \"/backups\"}`, write a full
  backup of the connection's current db (with its history when the db keeps history) and
  return `{:success true :backup-id #uuid … :database-id … :path … :datom-count …
  :chunk-count … :total-size-bytes … :max-eid … :max-tx … :duration-ms …}`.

  Options: `:database-id` (default: the store config's `:id`, else \"default-db\"),
  `:chunk-size` (bytes of encoded Fressian per chunk, default 8 MiB), `:compression`
  (`:gzip`), `:compression-level` (0-9, default 6), `:parallel` (chunks compressed and
  written at once, default 2), `:history?` (default true when the db keeps history),
  `:sort-buffer-bytes` (default 64 MiB), `:tmp-dir` (where sorted runs spill),
  `:progress-fn` (called with `{:stage … :datoms-done … :datoms-total … :bytes-done …
  :chunks-done …}` about every half second, and with `:stage :done` at the end). An
  unknown option key fails (`:datacamp/invalid-argument`) naming the closest known one."
  [conn target & {:as opts}]
  (backup! conn (dir-target target) opts))

(defn backup-to-s3
  "Given a Datahike connection and an S3 target `{:bucket \"my-backups\" :region
  \"us-east-1\" :prefix \"production/\" :endpoint \"localhost:9000\" :path-style-access? true}`
  (see the README for every key), write a full backup exactly as `backup-to-directory`
  does (same options) and return its result map with `:s3-path` (`s3://bucket/prefix…`)."
  [conn s3-config & {:as opts}]
  (let [r (backup! conn (s3-target s3-config) opts)]
    (assoc r :s3-path (:path r))))

(defn resume-backup
  "Given a connection, a target and the id of an interrupted backup (and `:database-id`),
  finish that backup: it reads the same snapshot the backup started from (recorded in its
  `config.edn`), reuses every chunk already stored intact (its checksum re-checked), writes
  the rest and commits the manifest; the chunks are byte-identical to those of an
  uninterrupted backup (`:database-id` defaults to \"default-db\"; `:progress-fn` as for
  `backup-to-directory`). Returns the backup result map with `:resumed? true`, or
  `{:success true :already-complete? true …}` for a complete backup. Refuses
  (`:datacamp/conflict`) other options (e.g. a different `:chunk-size`), another database,
  or a backup another process is resuming (a lock with a lease, `:lock-lease-ms`, default
  60 s, renewed while it runs; `:break-lock? true` takes over a live one)."
  [conn target backup-id & {:as opts}]
  (check-options! "resume" opts backup-own-keys)
  (let [target (canonical-target target)
        id (backup-id-arg backup-id)
        database-id (database-id-arg (get opts :database-id default-database-id))]
    (let [status (native/with-native-errors {:database-id database-id :backup-id backup-id}
                   (native/backup-status target database-id id))]
      (case (:state status)
        :missing
        (throw (ex-info (str "no backup " id " of database " database-id " to resume")
                        {:datacamp/error :datacamp/not-found :backup-id backup-id :database-id database-id}))
        :complete
        {:success true :already-complete? true :backup-id (parse-id id) :database-id database-id
         :datom-count (:datom-count status) :chunk-count (:chunk-count status)}
        :incomplete
        (let [cfg (:config status)
              basis (:stats/max-tx cfg)
              db (dh/current-db conn)
              facts (assoc (dh/describe db) :max-tx basis :max-eid (:stats/max-eid cfg))
              recorded {:chunk-size (:backup/chunk-size cfg)
                        :compression-level (:backup/compression-level cfg)
                        :history? (:backup/history? cfg)}
              native-opts (cond-> (-> (backup-options (merge recorded (dissoc opts :database-id)) database-id facts)
                                      (assoc :backup-id id :resume? true))
                            (:break-lock? opts) (assoc :break-lock? true)
                            (:lock-lease-ms opts) (assoc :lock-lease-ms (long (:lock-lease-ms opts))))]
          (when-not (integer? basis)
            (throw (ex-info (str "backup " id " has no readable config.edn: it cannot be resumed")
                            {:datacamp/error :datacamp/corrupt :backup-id backup-id})))
          (try
            (assoc (backup-datoms target native-opts
                                  (dh/snapshot-datoms db (:history? native-opts) basis) opts)
                   :resumed? true)
            (catch clojure.lang.ExceptionInfo e
              ;; Another resumer finished it between our status check and the native open.
              (if (= :datacamp/already-complete (:datacamp/error (ex-data e)))
                {:success true :already-complete? true :backup-id (parse-id id) :database-id database-id}
                (throw e)))))))))

(defn list-backups
  "Given a target and a database id, return its backups as a vector of maps
  `{:backup-id :type :created-at :completed? :datom-count :size-bytes :chunk-count …}`,
  newest first; incomplete backups are included with `:completed? false` and `:progress`."
  [target database-id]
  (let [target (canonical-target target)]
    (native/with-native-errors {:database-id database-id}
      (mapv with-ids (native/list-backups target (database-id-arg database-id))))))

(defn verify-backup
  "Given a target and a backup id (and `:database-id`, default \"default-db\"), check that every chunk is present
  with the right size and SHA-256; with `:deep? true` also decode every chunk and check the
  datom counts. Returns `{:success … :backup-id … :chunk-count … :all-chunks-present …
  :checksums-valid … :problems […]}`; an incomplete backup never verifies."
  [target backup-id & {:as opts}]
  (check-options! "verify" opts [])
  (let [target (canonical-target target)
        id (backup-id-arg backup-id)
        database-id (database-id-arg (get opts :database-id default-database-id))
        deep? (:deep? opts)]
    (when-not (or (nil? deep?) (boolean? deep?))
      (invalid! (str ":deep? must be true or false, got " (pr-str deep?)) {:deep? deep?}))
    (native/with-native-errors {:database-id database-id :backup-id backup-id}
      (with-ids (native/verify-backup target database-id id deep?)))))

(defn cleanup-incomplete
  "Given a target and a database id, remove incomplete backups whose last activity is older
  than `:older-than-hours` (default 24); complete backups are never touched. Returns
  `{:removed [ids] :kept-incomplete [ids] :objects-deleted n}`."
  [target database-id & {:keys [older-than-hours] :or {older-than-hours 24} :as opts}]
  (check-options! "cleanup" opts [])
  (let [target (canonical-target target)
        database-id (database-id-arg database-id)]
    (when-not (and (number? older-than-hours) (not (neg? older-than-hours)))
      (invalid! ":older-than-hours must be a non-negative number" {:older-than-hours older-than-hours}))
    (native/with-native-errors {:database-id database-id}
      (-> (native/cleanup-incomplete target database-id (long (* older-than-hours 3600 1000)))
          (update :removed #(mapv parse-id %))
          (update :kept-incomplete #(mapv parse-id %))))))

(def ^:private default-load-batch
  "Datoms per `load-entities` call when restoring: one call restores tx ids exactly."
  1000000)

(defn- empty-db?
  "True when `db` holds no data: no transaction beyond tx0 (the system datoms of
  `:attribute-refs? true` databases live at tx0)."
  [db]
  (and (= dh/tx0 (:max-tx db))
       (every? #(= dh/tx0 (nth % 3)) (take 1000 (dh/datoms db false)))))

(defn- check-empty!
  "Refuse a target that is not empty."
  [db]
  (when-not (empty-db? db)
    (throw (ex-info (str "the target database is not empty (max-tx " (:max-tx db)
                         "): restore only into a freshly created database")
                    {:datacamp/error :datacamp/target-not-empty :max-tx (:max-tx db)}))))

(defn- check-compatible!
  "Refuse a target whose configuration differs from the backup's."
  [db info]
  (let [source (:datahike-config info)
        target (:config db)
        keys [:keep-history? :schema-flexibility :attribute-refs?]
        diffs (into {} (for [k keys
                             :when (and (contains? source k) (not= (get source k) (get target k)))]
                         [k {:backup (get source k) :target (get target k)}]))]
    (when (seq diffs)
      (throw (ex-info (str "the target database's configuration differs from the backup's: "
                           (pr-str diffs) "; create the target with the same settings")
                      {:datacamp/error :datacamp/incompatible-target :differences diffs})))))

(defn- restore-batches
  "A lazy seq of the session's batches, each `{:chunk-id :datoms}`."
  [h decoder]
  (lazy-seq
   (when-let [b (native/restore-next h decoder)]
     (cons b (restore-batches h decoder)))))

(def ^:private restore-own-keys
  "The restore options this layer handles itself (not sent to the core)."
  [:batch-size :progress-fn :load-timeout-ms])

(def ^:private default-load-timeout-ms
  "How long one `load-entities` call may take before the restore gives up on Datahike's
  writer (10 minutes)."
  600000)

(defn- target-failed
  "The error for a restore whose target database failed (`cause`, the writer's exception)
  or stopped answering (`cause` nil) in load-entities call `call`."
  [cause {:keys [call loaded batch-size timeout-ms] :as ctx}]
  (ex-info (str "the restore stopped: "
                (if cause
                  (str "Datahike failed in load-entities call " call ": " (ex-message cause))
                  (str "Datahike did not answer load-entities call " call " within " timeout-ms
                       " ms; its writer has most likely died (a :file store that runs out of file"
                       " descriptors does this: look for \"Too many open files\" in its log)"))
                ". " loaded " datoms were loaded before, so the target database is PARTIAL:"
                " delete it and create it again before restoring again")
           (merge {:datacamp/error :datacamp/target-failed
                   :datacamp/hint (str "a smaller :batch-size (now " batch-size
                                       ") keeps fewer files open in each load-entities call"
                                       (when-not cause "; :load-timeout-ms sets the wait"))
                   :datoms-loaded loaded
                   :load-entities-calls (dec call)}
                  (select-keys ctx [:database-id :backup-id :batch-size]))
           (or cause (java.util.concurrent.TimeoutException.
                      (str "no answer from load-entities within " timeout-ms " ms")))))

(defn- restore!
  "Restore a backup from a canonical target into `conn`."
  [conn target backup-id opts]
  (check-options! "restore" opts restore-own-keys)
  (let [{:keys [batch-size parallel verify-first? progress-fn load-timeout-ms
                sort-buffer-bytes tmp-dir]
         :or {batch-size default-load-batch verify-first? true
              load-timeout-ms default-load-timeout-ms}} opts
        database-id (database-id-arg (get opts :database-id default-database-id))
        id (backup-id-arg backup-id)
        db (dh/current-db conn)
        started (System/currentTimeMillis)
        progress (or progress-fn (constantly nil))]
    (positive-long! :batch-size batch-size)
    (positive-long! :load-timeout-ms load-timeout-ms)
    (check-empty! db)
    (native/with-native-errors {:database-id database-id :backup-id backup-id}
      (with-open [h (native/restore-open target (cond-> {:database-id database-id
                                                          :backup-id id
                                                          :verify-first? (boolean verify-first?)}
                                                   parallel (assoc :parallel (long parallel))
                                                   sort-buffer-bytes (assoc :sort-buffer-bytes (long sort-buffer-bytes))
                                                   tmp-dir (assoc :tmp-dir (str tmp-dir))))]
        (let [info (native/restore-info h)
              total (:datom-count info)
              load-entities (dh/api-fn 'load-entities)
              decoder (ValueDecoder. true)
              done (volatile! 0)
              loaded (volatile! 0)
              txs (volatile! 0)
              last-tx (volatile! nil)
              calls (volatile! 0)]
          (check-compatible! db info)
          (progress {:stage :started :datoms-done 0 :datoms-total total})
          (doseq [group (partition-all batch-size
                                       (mapcat (fn [{:keys [chunk-id datoms]}]
                                                 (vswap! done + (count datoms))
                                                 (doseq [d datoms]
                                                   (let [tx (nth d 3)]
                                                     (when-not (= tx @last-tx)
                                                       (vreset! last-tx tx)
                                                       (vswap! txs inc))))
                                                 (progress {:stage :restoring :chunk-id chunk-id
                                                            :datoms-done @done :datoms-total total})
                                                 datoms)
                                               (restore-batches h decoder)))]
            ;; Never wait forever on Datahike's writer (it may die and never deliver).
            (let [ctx {:call (inc @calls) :loaded @loaded :batch-size batch-size
                       :timeout-ms load-timeout-ms :database-id database-id :backup-id backup-id}
                  r (try
                      (dh/await-write (load-entities conn group) load-timeout-ms)
                      (catch Exception e
                        (throw (target-failed e ctx))))]
              (when (identical? ::dh/timeout r)
                (throw (target-failed nil ctx))))
            (vswap! loaded + (count group))
            (vswap! calls inc))
          (progress {:stage :done :datoms-done @done :datoms-total total})
          {:success true
           :backup-id (parse-id (:backup-id info))
           :database-id database-id
           :format (:format info)
           :datoms-restored @done
           :tx-count @txs
           :chunks-processed (:chunk-count info)
           :load-entities-calls @calls
           :duration-ms (- (System/currentTimeMillis) started)})))))

(defn restore-from-directory
  "Given a connection to an EMPTY Datahike database and a directory target, load backup
  `backup-id` of `:database-id` into it and return `{:success true :backup-id …
  :datoms-restored … :tx-count … :chunks-processed … :load-entities-calls … :duration-ms …}`.

  The target must have the backup's `:keep-history?`, `:schema-flexibility` and
  `:attribute-refs?`. Datoms reach `load-entities` in the order that reproduces entity ids;
  tx ids are identical when everything fits one call (`:batch-size` datoms, default
  1,000,000) and are otherwise shifted up by one per earlier call (Datahike's behaviour).

  Options: `:database-id` (default \"default-db\"), `:batch-size`, `:parallel` (chunks
  read ahead, default 2), `:verify-first?` (check every chunk's checksum before loading
  anything, default true), `:progress-fn` (called with `{:stage … :chunk-id … :datoms-done
  … :datoms-total …}`), `:load-timeout-ms` (how long one `load-entities` call may take,
  default 10 minutes), `:sort-buffer-bytes` and `:tmp-dir` (re-ordering backups of the
  original datacamp).

  When Datahike's writer fails or stops answering mid-restore (e.g. a `:file` store out of
  file descriptors), throws `:datacamp/target-failed` naming the cause and how many datoms
  were loaded: the target is then partial and must be recreated."
  [conn target backup-id & {:as opts}]
  (restore! conn (dir-target target) backup-id opts))

(defn restore-from-s3
  "Given a connection to an EMPTY Datahike database, an S3 target (as for `backup-to-s3`)
  and a backup id, restore exactly as `restore-from-directory` does (same options and
  result). `:verify-first?` defaults to false here: every chunk's size is checked up front
  (one HEAD each) and its SHA-256 as it streams, so nothing is downloaded twice."
  [conn s3-config backup-id & {:as opts}]
  (restore! conn (s3-target s3-config) backup-id (merge {:verify-first? false} opts)))

(ns datacamp.core
  "Backup and restore for Datahike databases, done by a native (Rust) core.

  Backups:    `backup-to-directory`, `backup-to-s3` (full, or `:incremental? true`), `resume-backup`
  Continuous: `start-continuous-backup`, `stop-continuous-backup`, `continuous-status`
  Restore:    `restore-from-directory`, `restore-from-s3` (a whole chain; `:as-of-tx`, `:as-of-time`)
  Catalog:    `list-backups`, `verify-backup`, `cleanup-incomplete`, `repair-manifest`,
              `prune-backups`, `rewrap-backup-keys` (key rotation of encrypted backups)

  Encryption: `:encryption {:key …}` (or `:key-file`, `:key-env`, `:passphrase`) on backups,
  restores, `resume-backup` and `verify-backup :deep? true` (see the README).

  A target is a map: `{:path \"/backups\"}` for a local directory, `{:bucket …}` for S3.
  Every failure throws `ex-info` whose data carries `:datacamp/error` (e.g. `:datacamp/invalid-argument`,
  `:datacamp/io`, `:datacamp/not-found`, `:datacamp/corrupt`) and a message a person can
  act on. Options are documented in the README."
  (:require [clojure.string :as str]
            [datacamp.continuous :as continuous]
            [datacamp.datahike :as dh]
            [datacamp.native :as native]
            ;; Loaded with the API, as the original's Quick Start calls it unrequired.
            [datacamp.utils])
  (:import [datacamp.jni DatacampException DatomWalker NativeHandle ValueDecoder]))

(set! *warn-on-reflection* true)

(def ^:private default-batch-size
  "Datoms per JNI call."
  8192)

(defn- invalid!
  "Throw an `:datacamp/invalid-argument` ex-info."
  [msg data]
  (throw (ex-info msg (merge {:datacamp/error :datacamp/invalid-argument} data))))

(defn ^:no-doc canonical-target
  "Given a target map — a directory `{:path …}` or S3 `{:bucket …}` — return what is sent
  to the core, which validates it (every key, with a hint naming the closest known key for
  a misspelled one; see the README's target tables). Entries with nil values count as
  absent."
  [target]
  (when-not (map? target)
    (invalid! "the target must be a map: {:path \"/backups\"} or {:bucket \"…\" :region \"…\"}"
              {:target (when-not (coll? target) target)}))
  (into {} (remove (comp nil? val)) target))

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

(defn- check-keys!
  "Fail (`:datacamp/invalid-argument`) on an option key operation `op` does not know,
  naming the closest known one: the core knows each operation's keys; this layer only
  removes its own (`own`) first."
  [op opts own]
  (native/with-native-errors {}
    (native/check-options op (apply dissoc opts own))))

(defn- describe
  "A short description of an option's value for an error message: numbers and booleans
  as they are, anything else by its type (an option may hold a secret)."
  [v]
  (cond (or (number? v) (boolean? v) (nil? v)) (pr-str v)
        :else (str "a " (.getSimpleName (class v)))))

(defn- positive-long!
  "Refuse `v` (option `k`) unless it is nil or an integer from 1 to `max` (default
  Long/MAX_VALUE)."
  ([k v] (positive-long! k v Long/MAX_VALUE))
  ([k v max]
   (when (and (some? v) (not (and (integer? v) (<= 1 v max))))
     (invalid! (str k " must be an integer from 1 to " max ", got " (describe v)) {k (describe v)}))))

(def ^:private max-batch-size
  "The most datoms per JNI call or per `load-entities` call."
  (bit-shift-left 1 24))

(defn- check-options!
  "Refuse options of the wrong type or range before anything is opened or written
  (`:batch-size` as the backup's: datoms per JNI call)."
  [opts]
  (doseq [k [:chunk-size :parallel :fetch-ahead :sort-buffer-bytes :lock-lease-ms]]
    (positive-long! k (get opts k)))
  (positive-long! :batch-size (:batch-size opts) max-batch-size)
  ;; its range depends on the codec (gzip 0-9, zstd 1-19): the core checks it
  (when-let [l (:compression-level opts)]
    (when-not (integer? l)
      (invalid! (str ":compression-level must be an integer, got " (describe l)) {})))
  (when-let [f (:progress-fn opts)]
    (when-not (ifn? f)
      (invalid! (str ":progress-fn must be a function, got " (describe f)) {})))
  (when-let [d (:tmp-dir opts)]
    (when-not (or (and (string? d) (not (str/blank? d))) (instance? java.io.File d))
      (invalid! (str ":tmp-dir must be a directory path, got " (describe d)) {}))))

(defn- encryption-option
  "The `:encryption` option as the core reads it (nil when absent): `{:key k}` (32 bytes,
  or their base64), `{:key-file path}`, `{:key-env \"VAR\"}` or `{:passphrase text}`. The
  core resolves and checks it; a key given as bytes travels as base64 text. Never echoed."
  [e]
  (when (some? e)
    (when-not (map? e)
      (invalid! (str ":encryption must be a map such as {:key-file \"…\"}, got " (describe e)) {}))
    (let [k (:key e)
          f (:key-file e)]
      (cond-> e
        (bytes? k) (assoc :key (.encodeToString (java.util.Base64/getEncoder) ^bytes k))
        (instance? java.io.File f) (assoc :key-file (str f))))))

(defn- parse-id
  "Our backup ids are UUIDs; the original implementation's are strings."
  [id]
  (or (and (string? id) (parse-uuid id)) id))

(defn- with-ids
  "Parse the backup ids a result map carries (`:backup-id :parent :base :chain :links`)."
  [m]
  (cond-> m
    (:backup-id m) (update :backup-id parse-id)
    (:parent m) (update :parent parse-id)
    (:base m) (update :base parse-id)
    (:chain m) (update :chain #(mapv parse-id %))
    (:links m) (update :links #(mapv parse-id %))))

(defn ^:no-doc backup-options
  "The options map sent to the core."
  [opts db-id facts]
  (let [history? (and (get opts :history? true) (:keep-history? facts))]
    (check-options! opts)
    (when-let [c (:compression opts)]
      (when-not (#{:gzip :zstd} c)
        (invalid! (str ":compression " (pr-str c) " is not supported; use :gzip (the default) or :zstd")
                  {:compression c})))
    (cond-> {:database-id db-id
             :history? (boolean history?)
             :ref-attrs (:ref-attrs facts)
             :no-history-attrs (vec (:no-history-attrs facts))
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
      (:compression opts) (assoc :compression (:compression opts))
      (:compression-level opts) (assoc :compression-level (long (:compression-level opts)))
      (:tmp-dir opts) (assoc :tmp-dir (str (:tmp-dir opts)))
      (:incremental? opts) (assoc :incremental? true)
      (:parent opts) (assoc :parent (str (:parent opts)))
      (:encryption opts) (assoc :encryption (encryption-option (:encryption opts))))))

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
  (check-options! opts)
  (let [batch-size (int (or (:batch-size opts) default-batch-size))
        progress-fn (:progress-fn opts)]
    (native/with-native-errors {:database-id (:database-id native-opts)}
      (with-open [h (native/backup-open target native-opts)]
        ;; The datoms go in a holder, not into a closure: a closed-over local is never
        ;; cleared, so this frame would keep the seq's head (the whole database in memory).
        (let [holder (doto (object-array 1) (aset 0 datoms))
              work (fn []
                     (DatomWalker/pushAll holder (.get ^NativeHandle h) batch-size)
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
  "A full or incremental backup of `conn` to a canonical target."
  [conn target opts]
  (check-keys! "backup" opts backup-own-keys)
  (let [db (dh/current-db conn)
        db-id (database-id opts db)
        facts (dh/describe db)
        native-opts (backup-options opts db-id facts)]
    (when (and (or (:incremental? opts) (:parent opts)) (not (:history? native-opts)))
      (invalid! (str "an incremental backup needs the database's history, and "
                     (if (:keep-history? facts) ":history? false was given" "this database keeps none (:keep-history? false)")
                     ": its retractions would be lost")
                {:datacamp/hint "take a full backup instead"}))
    (backup-datoms target native-opts (dh/datoms db (:history? native-opts)) opts)))

(defn backup-to-directory
  "Given a Datahike connection and a directory target `{:path \"/backups\"}`, write a full
  backup of the connection's current db (with its history when the db keeps history) and
  return `{:success true :backup-id #uuid … :database-id … :path … :datom-count …
  :chunk-count … :total-size-bytes … :max-eid … :max-tx … :duration-ms …}`.

  Options: `:database-id` (default: the store config's `:id`, else \"default-db\"),
  `:chunk-size` (bytes of encoded Fressian per chunk, default 8 MiB), `:compression` (`:gzip`, the
  default, which the original datacamp reads too; or `:zstd`: faster and smaller, read by
  this library only), `:compression-level` (gzip 0-9, default 6; zstd 1-19, default 3),
  `:parallel` (chunks compressed and written at
  once, default 2), `:history?` (default true when the db keeps history),
  `:sort-buffer-bytes` (default 64 MiB), `:tmp-dir` (where sorted runs spill),
  `:progress-fn` (called with `{:stage … :datoms-done … :datoms-total … :bytes-done …
  :chunks-done …}` about every half second, and with `:stage :done` at the end). An
  unknown option key fails (`:datacamp/invalid-argument`) naming the closest known one.

  Incremental: `:incremental? true` continues the newest complete backup of the database
  (full or incremental), `:parent backup-id` a given one; the backup stores only the
  transactions after the parent's basis (`:type :incremental`, `:parent`, `:base`,
  `:after-tx`, `:tx-range` in the result). With nothing new it still writes a valid,
  empty incremental. Refused (`:datacamp/invalid-argument`) for a database without
  history, and for a parent that is incomplete, of another database or ahead of it."
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
  (check-keys! "resume" opts backup-own-keys)
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
              recorded (cond-> {:chunk-size (:backup/chunk-size cfg)
                                :compression (:backup/compression cfg)
                                :compression-level (:backup/compression-level cfg)
                                :history? (:backup/history? cfg)}
                         (:backup/parent cfg) (assoc :parent (:backup/parent cfg)))
              native-opts (cond-> (-> (backup-options (merge recorded (dissoc opts :database-id)) database-id facts)
                                      (assoc :backup-id id :resume? true))
                            (:break-lock? opts) (assoc :break-lock? true)
                            (:lock-lease-ms opts) (assoc :lock-lease-ms (long (:lock-lease-ms opts))))]
          ;; The snapshot the interrupted backup started from (config.edn, input from outside):
          ;; a transaction of this database, never beyond it, with no entity beyond its own.
          (when-not (and (integer? basis) (integer? (:stats/max-eid cfg)))
            (throw (ex-info (str "backup " id " has no readable config.edn: it cannot be resumed")
                            {:datacamp/error :datacamp/corrupt :backup-id backup-id})))
          (when-not (and (<= dh/tx0 basis (:max-tx db)) (<= 0 (:stats/max-eid cfg) (:max-eid db)))
            (throw (ex-info (str "backup " id " cannot be resumed from this database: its config.edn records a snapshot"
                                 " (:stats/max-tx " basis ", :stats/max-eid " (:stats/max-eid cfg) ") this database does not have"
                                 " (:max-tx " (:max-tx db) ", :max-eid " (:max-eid db) ")")
                            {:datacamp/error :datacamp/conflict :backup-id backup-id
                             :datacamp/hint "resume with the database the backup was started from, or start a new backup"})))
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
  newest first; incomplete backups are included with `:completed? false` and `:progress`.
  Chain facts: `:type` (`:full`/`:incremental`), `:parent`, `:base`, `:after-tx` (the
  parent's basis), `:max-tx` (the basis), `:tx-range` and `:instant-range` (the first and
  last transaction whose datoms it holds, and their `:db/txInstant`s)."
  [target database-id]
  (let [target (canonical-target target)]
    (native/with-native-errors {:database-id database-id}
      (mapv with-ids (native/list-backups target (database-id-arg database-id))))))

(defn verify-backup
  "Given a target and a backup id (and `:database-id`, default \"default-db\"), check that every chunk is present
  with the right size and SHA-256; with `:deep? true` also decode every chunk and check the
  datom counts. Returns `{:success … :backup-id … :chunk-count … :all-chunks-present …
  :checksums-valid … :problems […] :chain [ids]}`; an incomplete backup never verifies.
  For an incremental, also checks that its chain back to the base is complete and
  contiguous (naming the first missing or broken link) and that the ancestors' chunks are
  present with their sizes (`:deep? true`: fully checked)."
  [target backup-id & {:as opts}]
  (check-keys! "verify" opts [])
  (let [target (canonical-target target)
        id (backup-id-arg backup-id)
        database-id (database-id-arg (get opts :database-id default-database-id))
        deep? (:deep? opts)]
    (when-not (or (nil? deep?) (boolean? deep?))
      (invalid! (str ":deep? must be true or false, got " (pr-str deep?)) {:deep? deep?}))
    (native/with-native-errors {:database-id database-id :backup-id backup-id}
      (with-ids (native/verify-backup target database-id id deep?
                                      (when-let [e (encryption-option (:encryption opts))]
                                        {:encryption e}))))))

(defn rewrap-backup-keys
  "Given a target and a database id, rotate the key of its encrypted backups:
  `:old-key` and `:new-key` take what `:encryption` takes (`{:key …}`, `{:key-file …}`,
  `{:key-env …}`, `{:passphrase …}`). Each backup's random data key is re-wrapped by the
  new key in its `manifest.edn` and `config.edn` (metadata only: no chunk is read or
  rewritten; each file written atomically). A rotation that stops midway is finished by
  running it again with the same keys. Returns `{:key-id … :rewrapped [ids] :already [ids]
  :plain [ids]}`; a backup wrapped by neither key stops it (`:datacamp/wrong-key`)."
  [target database-id & {:as opts}]
  (check-keys! "rewrap" opts [])
  (let [target (canonical-target target)
        database-id (database-id-arg database-id)
        {:keys [old-key new-key]} opts]
    (when-not (and old-key new-key)
      (invalid! "rewrap-backup-keys needs :old-key and :new-key" {}))
    (native/with-native-errors {:database-id database-id}
      (with-ids (native/rewrap-backup-keys target database-id
                                           {:old-key (encryption-option old-key)
                                            :new-key (encryption-option new-key)})))))

(defn cleanup-incomplete
  "Given a target and a database id, remove incomplete backups whose last activity is older
  than `:older-than-hours` (default 24); complete backups are never touched. Returns
  `{:removed [ids] :kept-incomplete [ids] :objects-deleted n}`."
  [target database-id & {:keys [older-than-hours] :or {older-than-hours 24} :as opts}]
  (check-keys! "cleanup" opts [])
  (let [target (canonical-target target)
        database-id (database-id-arg database-id)]
    (when-not (and (number? older-than-hours)
                   (Double/isFinite (double older-than-hours))
                   (<= 0 older-than-hours 1000000))
      (invalid! (str ":older-than-hours must be a finite number from 0 to 1000000, got " (describe older-than-hours))
                {:older-than-hours (describe older-than-hours)}))
    (native/with-native-errors {:database-id database-id}
      (-> (native/cleanup-incomplete target database-id (long (* older-than-hours 3600 1000)))
          (update :removed #(mapv parse-id %))
          (update :kept-incomplete #(mapv parse-id %))
          (update :damaged #(mapv parse-id %))))))

(defn repair-manifest
  "Given a target and the id of a backup that finished (it has a `complete.marker`) but
  whose `manifest.edn` is missing or damaged (and `:database-id`), rebuild the manifest
  from the backup's checkpoint after reading, checking and decoding every chunk. Returns
  `{:backup-id … :repaired? true :chunk-count … :datom-count …}` (`:repaired? false` when
  the manifest was good). `list-backups` and `verify-backup` name such backups in
  `:problems`; `cleanup-incomplete` never removes them (`:damaged`)."
  [target backup-id & {:as opts}]
  (check-keys! "repair" opts [])
  (let [target (canonical-target target)
        id (backup-id-arg backup-id)
        database-id (database-id-arg (get opts :database-id default-database-id))]
    (native/with-native-errors {:database-id database-id :backup-id backup-id}
      (with-ids (native/repair-manifest target database-id id)))))

(defn prune-backups
  "Given a target and a database id, delete the complete backups that no retention rule
  keeps: `:keep-last n` (the n newest), `:keep-daily n`, `:keep-weekly n`, `:keep-monthly n`
  (the newest backup of each of the n most recent days, ISO weeks, months with one; UTC).
  A backup is kept when any rule keeps it, and so is everything a kept or incomplete
  backup depends on (its chain back to the base). Incomplete backups are never touched.
  `:dry-run?` (default true) only reports. Returns `{:dry-run? … :kept [{:backup-id …
  :reasons […]}] :deleted [ids] :finished [ids] :rescued [ids] :incomplete [ids]
  :objects-deleted n}`; safe to re-run after a crash (`:finished` are backups an
  interrupted prune had begun to delete)."
  [target database-id & {:keys [keep-last keep-daily keep-weekly keep-monthly dry-run?]
                         :or {dry-run? true} :as opts}]
  (check-keys! "prune" opts [])
  (let [target (canonical-target target)
        database-id (database-id-arg database-id)
        rules {:keep-last keep-last :keep-daily keep-daily :keep-weekly keep-weekly
               :keep-monthly keep-monthly}]
    (doseq [[k v] rules]
      (when (and (some? v) (not (and (integer? v) (not (neg? v)))))
        (invalid! (str k " must be a non-negative integer, got " (pr-str v)) {k v})))
    (native/with-native-errors {:database-id database-id}
      (-> (native/prune-backups target database-id
                                (into {:dry-run? (boolean dry-run?)}
                                      (keep (fn [[k v]] (when v [k (long v)]))) rules))
          (update :kept (fn [ks] (mapv #(update % :backup-id parse-id) ks)))
          (update :deleted #(mapv parse-id %))
          (update :finished #(mapv parse-id %))
          (update :rescued #(mapv parse-id %))
          (update :incomplete #(mapv parse-id %))))))

(defn start-continuous-backup
  "Given a Datahike connection and a target (a directory `{:path …}` or S3 `{:bucket …}`),
  start continuous backup: from now on every committed transaction is durably in the target
  within about `:flush-interval-ms` (plus the upload). Returns a handle (a
  `java.io.Closeable`: `with-open` works) for `stop-continuous-backup` and
  `continuous-status`; returns as soon as the capture runs (a first catch-up or base backup
  goes on in the background).

  The capture continues the database's newest chain (full backup, incrementals, logs):
  after a restart it first catches up the transactions since the chain's last durable one
  from the database's history, then streams new ones; with no chain to continue (or none
  of this database, or a database without history that moved on) it starts a new chain
  with a full backup taken in the background. One capture per `:database-id` and target
  (a lock with a lease); errors never reach the application's transactions.

  Options: `:database-id` (as for backups), `:flush-interval-ms` (1000), `:max-segment-bytes`
  (8 MiB), `:spool-dir` (where captured transactions wait, fsynced, while the target is
  unreachable; default: in memory), `:max-spool-bytes` (1 GiB with a spool dir, else
  64 MiB: past it the capture pauses and catches up from the database when the target is
  back), `:on-error` (called with an ex-info for every error; its own exceptions are
  ignored), `:snapshot-every` (`{:bytes n :hours h}`: start a new chain with a background
  full backup after that much log or time), `:queue-size` (10000 reports), `:lock-lease-ms`
  (30000), `:lock-wait-ms` (0: how long to wait for another capture's lease to run out),
  `:break-lock? true`, `:stop-timeout-ms` (60000), `:shutdown-timeout-ms` (5000: the JVM
  shutdown hook's flush), and the backup options of the base backups (`:chunk-size`,
  `:parallel`, `:compression-level`, `:sort-buffer-bytes`, `:tmp-dir`)."
  [conn target & {:as opts}]
  (check-keys! "continuous" opts [])
  (let [target (canonical-target target)
        db (dh/current-db conn)
        db-id (database-id opts db)
        full-backup (fn [db backup-id]
                      (let [facts (dh/describe db)
                            native-opts (assoc (backup-options opts db-id facts) :backup-id (str backup-id))]
                        (backup-datoms target native-opts (dh/datoms db (:history? native-opts)) opts)))]
    (continuous/start conn target db-id (dissoc opts :database-id) {:full-backup full-backup})))

(defn stop-continuous-backup
  "Given a handle from `start-continuous-backup`, stop it: stop listening, store every
  transaction captured so far (waiting at most `:stop-timeout-ms`), close the log and
  release the lock; return the final status (see `continuous-status`). Idempotent."
  [handle]
  (continuous/stop handle))

(defn continuous-status
  "Given a handle from `start-continuous-backup`, return `{:running? … :last-durable-tx …
  :last-durable-instant … :lag-ms … :queued-txs … :segments-written … :bytes-written …
  :last-error …}` and more: `:log-id`, `:chain` (its base backup and why it started),
  `:catch-ups`, `:target-reachable?`, `:outage-since`, `:pending-segments`,
  `:spool-full?`, `:base-backup` (a new chain's full backup in progress) and `:mode`
  (`:live`, or `:gap` while transactions wait to be caught up)."
  [handle]
  (continuous/status handle))

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

(defn- partially-restored
  "The exception `e` (thrown after `loaded` datoms reached the target, or during a
  `load-entities` call) as an `ex-info` that says the target is partly restored."
  [^Throwable e loaded]
  (let [data (ex-data e)]
    (ex-info (str (.getMessage e) "; the target database is partly restored (" loaded
                  " datoms loaded): discard it and restore into a new empty database")
             (merge {:datacamp/error :datacamp/internal}
                    data
                    {:datacamp/target-partially-restored true
                     :datacamp/datoms-loaded loaded})
             e)))

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
                   :load-entities-calls (dec call)
                   ;; the call itself may have written some of its datoms
                   :datacamp/target-partially-restored true
                   :datacamp/datoms-loaded loaded}
                  (select-keys ctx [:database-id :backup-id :batch-size]))
           (or cause (java.util.concurrent.TimeoutException.
                      (str "no answer from load-entities within " timeout-ms " ms")))))

(defn- point-options
  "The native options of a point in time: `:as-of-tx` (a tx id) or `:as-of-time` (an
  instant)."
  [{:keys [as-of-tx as-of-time]}]
  (when (and as-of-tx as-of-time)
    (invalid! "give :as-of-tx or :as-of-time, not both" {:as-of-tx as-of-tx :as-of-time as-of-time}))
  (when (and (some? as-of-tx) (not (integer? as-of-tx)))
    (invalid! (str ":as-of-tx must be a transaction id, got " (pr-str as-of-tx)) {:as-of-tx as-of-tx}))
  (when (and (some? as-of-time) (not (inst? as-of-time)))
    (invalid! (str ":as-of-time must be an instant (#inst, java.util.Date), got " (pr-str as-of-time))
              {:as-of-time as-of-time}))
  (cond-> {}
    as-of-tx (assoc :as-of-tx (long as-of-tx))
    as-of-time (assoc :as-of-time (java.util.Date. (long (inst-ms as-of-time))))))

(defn- restore!
  "Restore a backup (its whole chain, up to a point in time) from a canonical target into
  `conn`."
  [conn target backup-id opts]
  (check-keys! "restore" opts restore-own-keys)
  (let [{:keys [batch-size parallel fetch-ahead verify-first? progress-fn load-timeout-ms
                tmp-dir sort-buffer-bytes]
         :or {batch-size default-load-batch verify-first? true
              load-timeout-ms default-load-timeout-ms}} opts
        database-id (database-id-arg (get opts :database-id default-database-id))
        latest? (boolean (:latest? opts))
        ;; :latest? true needs no id (the newest state of the database), or names a chain
        backup-id (when-not (and latest? (nil? backup-id)) (backup-id-arg backup-id))
        db (dh/current-db conn)
        started (System/currentTimeMillis)
        progress (or progress-fn (constantly nil))]
    (check-options! (dissoc opts :batch-size))
    (positive-long! :batch-size batch-size)
    (positive-long! :load-timeout-ms load-timeout-ms)
    (check-empty! db)
    (native/with-native-errors {:database-id database-id :backup-id backup-id}
      (with-open [h (native/restore-open target (cond-> (merge {:database-id database-id
                                                                 :verify-first? (boolean verify-first?)
                                                                 ;; no native batch larger than a load-entities call
                                                                 :batch-datoms (min (long batch-size) 8192)}
                                                                (point-options opts))
                                                   backup-id (assoc :backup-id backup-id)
                                                   latest? (assoc :latest? true)
                                                   (:encryption opts) (assoc :encryption (encryption-option (:encryption opts)))
                                                   parallel (assoc :parallel (long parallel))
                                                   fetch-ahead (assoc :fetch-ahead (long fetch-ahead))
                                                   tmp-dir (assoc :tmp-dir (str tmp-dir))
                                                   sort-buffer-bytes (assoc :sort-buffer-bytes (long sort-buffer-bytes))))]
        (let [info (native/restore-info h)
              total (:datom-count info)
              load-entities (dh/api-fn 'load-entities)
              decoder (ValueDecoder. true)
              done (volatile! 0)
              txs (volatile! 0)
              last-tx (volatile! nil)
              calls (volatile! 0)
              loaded (volatile! 0)
              loading? (volatile! false)]
          (check-compatible! db info)
          (progress {:stage :started :datoms-done 0 :datoms-total total})
          (try
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
              (vreset! loading? true)
              ;; Never wait forever on Datahike's writer (it may die and never deliver).
              (let [ctx {:call (inc @calls) :loaded @loaded :batch-size batch-size
                         :timeout-ms load-timeout-ms :database-id database-id :backup-id backup-id}
                    r (try
                        (dh/await-write (load-entities conn group) load-timeout-ms)
                        (catch Exception e
                          (throw (target-failed e ctx))))]
                (when (identical? ::dh/timeout r)
                  (throw (target-failed nil ctx))))
              (vreset! loading? false)
              (vswap! loaded + (count group))
              (vswap! calls inc))
            (catch Throwable e
              ;; Datoms already reached the target: the caller must know it is not untouched.
              (let [e (if (instance? DatacampException e)
                        (native/native-ex e {:database-id database-id :backup-id backup-id})
                        e)]
                (throw (if (and (or (pos? @loaded) @loading?)
                                (not (:datacamp/target-partially-restored (ex-data e))))
                         (partially-restored e @loaded)
                         e)))))
          (progress {:stage :done :datoms-done @done :datoms-total total})
          (let [end (native/restore-info h)]
            (cond-> {:success true
                     :backup-id (parse-id (:backup-id info))
                     :database-id database-id
                     :format (:format info)
                     :datoms-restored @done
                     :tx-count @txs
                     :chunks-processed (:chunk-count info)
                     :load-entities-calls @calls
                     :restored-to-tx (:restored-to-tx end)
                     :restored-to-instant (:restored-to-instant end)
                     :duration-ms (- (System/currentTimeMillis) started)}
              true (merge (with-ids (select-keys info [:chain :links :available :as-of])))
              (:bytes-to-read info) (assoc :bytes-read (:bytes-to-read info)))))))))

(defn restore-from-directory
  "Given a connection to an EMPTY Datahike database and a directory target, load backup
  `backup-id` of `:database-id` into it and return `{:success true :backup-id …
  :datoms-restored … :tx-count … :chunks-processed … :load-entities-calls … :duration-ms …}`.

  The target must have the backup's `:keep-history?`, `:schema-flexibility` and
  `:attribute-refs?`. Datoms reach `load-entities` in the order that reproduces entity ids;
  tx ids are identical when everything fits one call (`:batch-size` datoms, default
  1,000,000) and are otherwise shifted up by one per earlier call (Datahike's behaviour).

  Options: `:database-id` (default \"default-db\"), `:batch-size`, `:parallel` (chunks decoded ahead,
  default 2), `:fetch-ahead` (chunks read ahead concurrently, default 32), `:verify-first?`
  (read, check and decode every chunk before loading anything, default true),
  `:progress-fn` (called with `{:stage … :chunk-id … :datoms-done … :datoms-total …}`),
  `:tmp-dir` and `:sort-buffer-bytes` (where and with how much memory backups of the
  original implementation are sorted), `:load-timeout-ms` (how long one `load-entities` call
  may take, default 10 minutes).

  When Datahike's writer fails or stops answering mid-restore (e.g. a `:file` store out of
  file descriptors), throws `:datacamp/target-failed` naming the cause and how many datoms
  were loaded: the target is then partial and must be recreated. Any other failure after datoms reached the target carries `:datacamp/target-partially-restored
  true` and `:datacamp/datoms-loaded n`: discard that database.

  An incremental backup restores with its whole chain (base, then every link in order) as
  one load stream; a broken or missing link stops the restore before the target is
  touched. `:as-of-tx t` restores the database as it was right after transaction t,
  `:as-of-time inst` as it was right after the last transaction whose `:db/txInstant` is
  at or before inst — inside a single full backup too; chunks wholly after the point are
  never read. A point outside what the chain holds is `:datacamp/invalid-argument`,
  naming the available range. `:latest? true` restores the newest state captured (logs
  of continuous backup included): the furthest end of the database's intact chains, or,
  with a backup id, of the chain that holds it (`backup-id` may then be nil); a log's id
  restores its chain through it. The result adds `:restored-to-tx` and
  `:restored-to-instant` (the source's last transaction restored and its instant), and
  for chains and points `:chain`, `:links` (those read), `:available` and `:bytes-read`."
  [conn target backup-id & {:as opts}]
  (restore! conn (dir-target target) backup-id opts))

(defn restore-from-s3
  "Given a connection to an EMPTY Datahike database, an S3 target (as for `backup-to-s3`)
  and a backup id, restore exactly as `restore-from-directory` does (same options and
  result). `:verify-first?` defaults to false here: every chunk's size is checked up front
  (from one listing of the backup) and its SHA-256 as it streams, so nothing is downloaded
  twice."
  [conn s3-config backup-id & {:as opts}]
  (restore! conn (s3-target s3-config) backup-id (merge {:verify-first? false} opts)))

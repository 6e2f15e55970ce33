(ns datacamp.bench.run
  "One benchmark measurement, run in a fresh JVM by `datacamp.bench` (so peak RSS and heap
  belong to that measurement alone). Usage:

      java -Xmx192m -cp … clojure.main -m datacamp.bench.run '{:measure :backup …}'

  Prints one line `BENCH-RESULT {…}` (EDN) with the timings, the process's peak RSS
  (VmHWM of /proc/self/status, read at the end, after the measured work), peak JVM heap
  (sum of the heap memory pools' peak usage), GC time, and the CPU used by other processes
  during the measured interval (from /proc/stat, to tell a loaded machine).

  Measurements (`:measure`):
  Synthetic datasets (`:ds {:kind :synthetic :datoms n}`) are read from their materialised
  file (`materialize!`), or from the generator with `:source :generator`.

  - `:walk`             walk the datoms as DatomWalker does (e a v tx added), no output: the limit
  - `:backup`           `datacamp.core/backup-datoms` to `:dir`, then verify-backup :deep? true
  - `:backup-s3`        the same to the S3 target `:target` (the loopback test server); also
                        reports the CPU the server process (`:server-pid`) used meanwhile
  - `:backup-stages`    the same engine split in its two phases (push, finish), for profiling
  - `:baseline-backup`  the pure-JVM baseline (datacamp.bench.baseline/backup)
  - `:restore`          native restore session: restore-open, restore-next + ValueDecoder
  - `:baseline-restore` GZIPInputStream + data.fressian/read of the same chunk files
  - `:chain-backup`     a full backup of the database as of tx `:through`, or an incremental
                        continuing `:parent` (or with `:incremental? true` the newest backup
                        in `:dir`)
  - `:pit-restore`      a native restore session of a chain to `:as-of-tx`, with the bytes read"
  (:require [clojure.data.fressian :as fress]
            [clojure.edn :as edn]
            [clojure.java.io :as io]
            [clojure.string :as str]
            [datacamp.bench.baseline :as baseline]
            [datacamp.bench.gen :as gen]
            [datacamp.core :as core]
            [datacamp.datahike :as dh]
            [datacamp.native :as native])
  (:import [clojure.lang RT]
           [datacamp.bench MaterializedSource]
           [datacamp.jni DatomWalker NativeHandle ValueDecoder]
           [java.io File]
           [java.lang.management GarbageCollectorMXBean ManagementFactory MemoryPoolMXBean MemoryType]))

(set! *warn-on-reflection* true)

;; ------------------------------------------------------------------ process facts

(defn- proc-lines
  "The lines of a /proc file (slurp cannot read them: available() fails)."
  [^String path]
  (with-open [r (java.io.BufferedReader. (java.io.FileReader. path))]
    (vec (line-seq r))))

(defn- proc-status
  "A field of /proc/self/status in kB, e.g. \"VmHWM\"."
  [field]
  (some (fn [^String line]
          (when (str/starts-with? line (str field ":"))
            (parse-long (re-find #"\d+" line))))
        (proc-lines "/proc/self/status")))

(defn- cpu-busy-seconds
  "Busy CPU seconds of the whole machine since boot (all cores), from /proc/stat."
  []
  (let [[_ & xs] (str/split (first (proc-lines "/proc/stat")) #"\s+")
        [user nice system _idle _iowait irq softirq steal] (map parse-long xs)]
    (/ (double (+ user nice system irq softirq (or steal 0))) 100.0)))

(defn- process-cpu-seconds
  "CPU seconds used so far by process `pid` (user + system), from /proc/PID/stat; nil
  without a pid."
  [pid]
  (when pid
    (let [^String s (first (proc-lines (str "/proc/" pid "/stat")))
          fields (str/split (subs s (+ 2 (str/last-index-of s ")"))) #"\s+")]
      (/ (double (+ (parse-long (nth fields 11)) (parse-long (nth fields 12)))) 100.0))))

(defn- own-cpu-seconds
  "CPU seconds used by this process so far (user + system), from /proc/self/stat."
  []
  (process-cpu-seconds "self"))

(defn- load-avg [] (parse-double (first (str/split (first (proc-lines "/proc/loadavg")) #"\s+"))))

(defn- heap-stats []
  (let [pools (filter #(= MemoryType/HEAP (.getType ^MemoryPoolMXBean %))
                      (ManagementFactory/getMemoryPoolMXBeans))
        gcs (ManagementFactory/getGarbageCollectorMXBeans)]
    {:peak-heap-bytes (reduce + (map #(.getUsed (.getPeakUsage ^MemoryPoolMXBean %)) pools))
     :max-heap-bytes (.maxMemory (Runtime/getRuntime))
     :gc-count (reduce + (map #(.getCollectionCount ^GarbageCollectorMXBean %) gcs))
     :gc-ms (reduce + (map #(.getCollectionTime ^GarbageCollectorMXBean %) gcs))}))

(defmacro ^:private timed
  "Evaluate body; return [value stats] with :seconds, :cpu-seconds (this process) and
  :foreign-cores (average cores busy with other processes meanwhile) and :window (the
  System/nanoTime seconds it ran between, for a `perf record -k mono` profile)."
  [& body]
  `(let [busy0# (cpu-busy-seconds)
         own0# (own-cpu-seconds)
         load0# (load-avg)
         t0# (System/nanoTime)
         v# (do ~@body)
         t1# (System/nanoTime)
         secs# (/ (- t1# t0#) 1e9)
         own# (- (own-cpu-seconds) own0#)
         busy# (- (cpu-busy-seconds) busy0#)]
     [v# {:seconds secs#
          :cpu-seconds own#
          :foreign-cores (max 0.0 (/ (- busy# own#) secs#))
          :window [(/ t0# 1e9) (/ t1# 1e9)]
          :load-avg-start load0#
          :load-avg-end (load-avg)}]))

;; ------------------------------------------------------------------ datasets

(defn- project-dir ^String []
  (or (System/getProperty "datacamp.project.dir") (System/getProperty "user.dir")))

(defn- read-fixture [name]
  (let [f (io/file (project-dir) "tests" "fixtures" (str name ".fressian"))]
    (with-open [in (io/input-stream f)]
      (fress/read in))))

(defn source-file
  "The file a materialised synthetic database lives in (written by `materialize!`)."
  ^File [datoms seed]
  (io/file (project-dir) "target" "bench" "sources" (str "synthetic-" datoms "-" seed ".dcsrc")))

(defn materialize!
  "Write the synthetic database of `datoms` and `seed` into its source file unless it is
  there already; return the file."
  ^File [datoms seed]
  (let [f (source-file datoms seed)]
    (when-not (.exists f)
      (io/make-parents f)
      (MaterializedSource/write (gen/datoms (gen/spec datoms seed)) f))
    f))

(def ^:private warm-up-datoms
  "The size of the database walked first to JIT-compile the source (another seed)."
  300000)

(defn dataset
  "Given a dataset spec, return `{:datoms-fn (fn [] seqable) :facts … :warm-up-fn (fn [])}`.
  Synthetic datasets come from their materialised file (`:source :materialized`, the
  default: memory-mapped, outside the heap, walked as fast as Datahike's index) or from
  the generator (`:source :generator`, generated lazily on every call of `:datoms-fn`); a
  fixture's history is read once (it lives in the heap)."
  [{:keys [kind datoms seed name source]}]
  (case kind
    :synthetic
    (let [seed (or seed 42)
          spec (gen/spec datoms seed)
          warm-n (min warm-up-datoms (long datoms))]
      (if (= source :generator)
        {:datoms-fn #(gen/datoms spec)
         :facts (gen/facts spec)
         ;; JIT-compile the generator on another database, the same for every measurement.
         :warm-up-fn #(gen/datoms (gen/spec warm-n 7))}
        (let [src (MaterializedSource/open (materialize! datoms seed))
              warm (MaterializedSource/open (materialize! warm-n 7))]
          {:datoms-fn #(.seq src)
           :facts (gen/facts spec)
           :source-bytes (.bytes src)
           ;; JIT-compile the walk on another database; map the measured one's pages in
           ;; (Datahike's index is resident in a running application).
           :warm-up-fn (fn [] (.preload src) (.seq warm))})))
    :fixture
    (let [m (read-fixture name)
          history (:history m)
          facts (dh/describe {:max-eid (:max-eid m) :max-tx (:max-tx m)
                              :config (:config m) :schema (:schema m)})]
      {:datoms-fn (constantly history)
       :facts (assoc facts :datahike-version (:datahike/version m))
       :warm-up-fn (constantly history)})))

;; ------------------------------------------------------------------ measurements

(defn walk
  "Walk the datoms the way DatomWalker does (e a v tx added of every datom), pushing them
  nowhere; return `{:datom-count n :retractions r :checksum x}`."
  [datoms]
  (loop [s (seq datoms) n 0 r 0 h 0]
    (if s
      (let [d (.first ^clojure.lang.ISeq s)
            e (long (RT/nth d 0))
            _a (RT/nth d 1)
            v (RT/nth d 2)
            tx (long (RT/nth d 3))
            added (RT/booleanCast (RT/nth d 4))]
        (recur (.next ^clojure.lang.ISeq s) (inc n) (if added r (inc r))
               (bit-xor h e tx (if (nil? v) 1 0))))
      {:datom-count n :retractions r :checksum h})))

(defn- db-id [ds] (str "bench-" (if (= :fixture (:kind ds)) (:name ds) (:datoms ds))))

(defn- native-opts [{:keys [ds parallel chunk-size compression compression-level encryption]} facts]
  (core/backup-options (cond-> {:parallel (or parallel 2)}
                         chunk-size (assoc :chunk-size chunk-size)
                         compression (assoc :compression compression)
                         compression-level (assoc :compression-level compression-level)
                         encryption (assoc :encryption encryption))
                       (db-id ds) facts))

(defn- read-manifest [dir db backup-id]
  (edn/read-string (slurp (io/file dir db (str backup-id) "manifest.edn"))))

(defn- dir-size
  "Total bytes of the files under `dir`."
  [dir]
  (reduce + (map #(.length ^File %) (filter #(.isFile ^File %) (file-seq (io/file dir))))))

(defmulti measure :measure)

(defmethod measure :walk [{:keys [ds]}]
  (let [{:keys [datoms-fn warm-up-fn source-bytes]} (dataset ds)]
    (walk (warm-up-fn))
    (let [[r t] (timed (walk (datoms-fn)))]
      (merge r t {:source-bytes source-bytes}))))

(defn- measured-backup
  "Back `ds` up to `target` (timed, with the CPU `server-pid` used meanwhile when given),
  then verify it with :deep? true (untimed); return the result, timings, memory and
  verification, plus the manifest options used."
  [{:keys [ds server-pid] :as args} target]
  (let [{:keys [datoms-fn warm-up-fn facts source-bytes]} (dataset ds)
        opts (native-opts args facts)]
    (walk (warm-up-fn))
    (native/ensure-loaded!)
    (let [server0 (process-cpu-seconds server-pid)
          [r t] (timed (core/backup-datoms target opts (datoms-fn) {}))
          server-cpu (some-> (process-cpu-seconds server-pid) (- server0))
          mem (assoc (heap-stats) :peak-rss-kb (proc-status "VmHWM"))
          verify (core/verify-backup target (:backup-id r) :database-id (:database-id opts) :deep? true
                                     :encryption (:encryption args))]
      (merge (select-keys r [:backup-id :database-id :path :s3-path :datom-count :chunk-count
                             :total-size-bytes :uncompressed-bytes :duration-ms])
             t mem {:source-bytes source-bytes}
             (when server-cpu
               ;; the server is another process on this machine: not counted as "others"
               {:server-cpu-seconds server-cpu
                :foreign-cores (max 0.0 (- (:foreign-cores t) (/ server-cpu (:seconds t))))})
             {:verify (select-keys verify [:success :all-chunks-present :checksums-valid :problems])}))))

(defmethod measure :backup [{:keys [dir] :as args}]
  (let [r (measured-backup args {:path dir})
        manifest (read-manifest dir (:database-id r) (:backup-id r))]
    (assoc r
           :files-bytes (dir-size (:path r))
           :chunk-datom-counts (mapv :chunk/datom-count (:chunks manifest))
           :chunk-keys (mapv :chunk/key (:chunks manifest)))))

(defmethod measure :backup-s3 [{:keys [target] :as args}]
  (measured-backup args target))

(defmethod measure :backup-stages [{:keys [ds dir repeat] :as args}]
  ;; For profiling: `:repeat n` runs the backup n times in this JVM (to profile a warm
  ;; one) and reports the last; `:stamps` are System/nanoTime (CLOCK_MONOTONIC) seconds
  ;; of the phase boundaries, for `perf record -k mono` + `perf report --time a,b`.
  (let [{:keys [datoms-fn warm-up-fn facts]} (dataset ds)
        opts (native-opts args facts)
        once (fn []
               (let [t0 (System/nanoTime)
                     h (native/backup-open {:path dir} opts)
                     [n push] (timed (DatomWalker/pushAll (doto (object-array 1) (aset 0 (datoms-fn))) (.get ^NativeHandle h) 8192))
                     t1 (System/nanoTime)
                     [r finish] (timed (native/backup-finish h))
                     t2 (System/nanoTime)]
                 (.close h)
                 {:datom-count n :push push :finish finish
                  :seconds (+ (:seconds push) (:seconds finish))
                  :total-size-bytes (:total-size-bytes r)
                  :stamps (mapv #(/ (double %) 1e9) [t0 t1 t2])}))]
    (walk (warm-up-fn))
    (native/ensure-loaded!)
    (last (repeatedly (or repeat 1) once))))

(defmethod measure :baseline-backup [{:keys [ds dir chunk-counts parallel]}]
  (let [{:keys [datoms-fn warm-up-fn source-bytes]} (dataset ds)]
    (walk (warm-up-fn))
    (let [[r t] (timed (baseline/backup datoms-fn chunk-counts (io/file dir) (or parallel 2)))]
      (merge (dissoc r :chunks) t {:source-bytes source-bytes}
             {:chunk-count (count (:chunks r))
              :chunk-datom-counts (mapv :datom-count (:chunks r))}))))

(defmethod measure :restore [{:keys [dir database-id backup-id parallel encryption]}]
  (native/ensure-loaded!)
  (let [[r t] (timed
               (native/with-native-errors {}
                 (with-open [h (native/restore-open {:path dir} (cond-> {:database-id database-id
                                                                         :backup-id (str backup-id)
                                                                         :verify-first? false
                                                                         :parallel (or parallel 2)}
                                                                  encryption (assoc :encryption encryption)))]
                   (let [decoder (ValueDecoder. true)]
                     (loop [n 0 batches 0]
                       (if-let [b (native/restore-next h decoder)]
                         (recur (+ n (count (:datoms b))) (inc batches))
                         {:datom-count n :batches batches}))))))]
    (merge r t)))

(defmethod measure :baseline-restore [{:keys [dir database-id backup-id chunk-keys parallel]}]
  (let [files (mapv #(io/file dir database-id (str backup-id) %) chunk-keys)
        [r t] (timed (baseline/restore-decode files (or parallel 2)))]
    (merge r t)))

;; ------------------------------------------------------------------ backup chains (#10)
;; Separate measurements (`datacamp.bench/chain-bench` runs them): a full backup of the
;; database as it was at tx `:through`, an incremental of the whole database continuing
;; it, and a point-in-time restore of a chain.

(defn- up-to
  "The history datoms of tx <= `through` (the database's history as it was then: the
  synthetic databases have no :db/noHistory attributes and no phantoms)."
  [datoms through]
  (if through (filter #(<= (long (RT/nth % 3)) (long through)) datoms) datoms))

(defmethod measure :chain-backup [{:keys [ds dir through incremental? parent]}]
  ;; A full backup of the database at `through`, or an incremental (continuing `parent`, or
  ;; the newest backup in `dir`) of the database at `through`; timed, then verified
  ;; (untimed).
  (let [{:keys [datoms-fn warm-up-fn facts]} (dataset ds)
        opts (cond-> (core/backup-options {} (db-id ds) (cond-> facts through (assoc :max-tx through)))
               incremental? (assoc :incremental? true)
               parent (assoc :parent (str parent)))]
    (walk (warm-up-fn))
    (native/ensure-loaded!)
    (let [[r t] (timed (core/backup-datoms {:path dir} opts (up-to (datoms-fn) through) {}))
          mem (assoc (heap-stats) :peak-rss-kb (proc-status "VmHWM"))
          verify (core/verify-backup {:path dir} (:backup-id r) :database-id (:database-id opts) :deep? true)]
      (merge (select-keys r [:backup-id :database-id :type :parent :after-tx :max-tx :datom-count
                             :chunk-count :total-size-bytes :uncompressed-bytes])
             t mem
             {:verify (select-keys verify [:success :problems :chain])}))))

(defn- read-bytes
  "Bytes this process has read through read(2) and friends so far (rchar of /proc/self/io)."
  []
  (some (fn [^String line] (when (str/starts-with? line "rchar:") (parse-long (str/trim (subs line 6)))))
        (proc-lines "/proc/self/io")))

(defmethod measure :pit-restore [{:keys [dir database-id backup-id as-of-tx parallel]}]
  ;; A point-in-time restore session of a chain (no Datahike: the datoms are decoded to
  ;; Clojure vectors as for `:restore`), with the bytes it planned to read and the bytes the
  ;; process read meanwhile.
  (native/ensure-loaded!)
  (let [rchar0 (read-bytes)
        [r t] (timed
               (native/with-native-errors {}
                 (with-open [h (native/restore-open {:path dir} {:database-id database-id
                                                                 :backup-id (str backup-id)
                                                                 :verify-first? false
                                                                 :as-of-tx as-of-tx
                                                                 :parallel (or parallel 2)})]
                   (let [decoder (ValueDecoder. true)
                         info (native/restore-info h)]
                     (loop [n 0]
                       (if-let [b (native/restore-next h decoder)]
                         (recur (+ n (count (:datoms b))))
                         (let [end (native/restore-info h)]
                           (assoc (select-keys info [:chain :links :bytes-to-read :chunk-count])
                                  :datom-count n
                                  :restored-to-tx (:restored-to-tx end)))))))))]
    (merge r t {:process-read-bytes (- (read-bytes) rchar0)})))

(defn -main
  "Run the measurement described by the EDN map in the first argument; print its result."
  [arg]
  (let [args (edn/read-string arg)
        r (measure args)
        r (merge (heap-stats) {:peak-rss-kb (proc-status "VmHWM")} r)]
    (println (str "BENCH-RESULT " (pr-str r)))
    (flush)
    (shutdown-agents)
    (System/exit 0)))

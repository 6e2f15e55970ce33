(ns datacamp.bench
  "The benchmark harness (`make bench`, `make bench-smoke`; results in BENCHMARKS.md).

  For each database — synthetic ones of 1M and 5M datoms (20M with `--20m`), generated
  lazily by `datacamp.bench.gen`, and the real `large` fixture — runs, each in a fresh JVM
  (`datacamp.bench.run`):
  1. walk: the JVM merely walking the datoms (the limit);
  2. backup: `datacamp.core/backup-datoms` to a directory (verified, :deep? true);
  3. baseline backup: the original datacamp's per-chunk work on the JVM, same chunk sizes
     (the datom counts of our manifest) and parallelism;
  4. restore decode: our native restore session vs GZIPInputStream + data.fressian/read
     of the same chunk files;
  5. for the synthetic databases, backups to S3 — the loopback test server
     (scripts/s3-test-server, moto) — at `:parallel` 1, 2 and 4 (verified, :deep? true).
  Prints the table and the ratios; a full run writes them into BENCHMARKS.md (between
  the generated-section markers, keeping the hand-written analysis).

  Options: --smoke (20k datoms + the kitchen-sink fixture, checks only, writes nothing),
  --20m, --no-s3 (skip the S3 runs), --s3-parallel 1,2,4 (their `:parallel` values), --sizes 1000000,5000000, --no-large, --runs N (median of N fresh JVMs per
  measurement), --stages (also time the backup's push and finish phases), --out FILE,
  --work DIR, --keep (keep the backups), --jvm-opt OPT (repeatable, added to every JVM),
  --native-lib FILE (the libdatacamp.so to load; default the one `make native` built),
  --code LABEL (what code was measured, for the report; default the git commit),
  --env NAME=VALUE (repeatable, set in every measurement's environment, e.g.
  MALLOC_ARENA_MAX=1), --no-chains / --only-chains (the backup-chain measurements of
  `chain-bench`: incremental after 1% new transactions, point-in-time restore of a chain;
  on the synthetic databases up to 5M)."
  (:require [clojure.edn :as edn]
            [clojure.java.io :as io]
            [clojure.java.shell :as sh]
            [clojure.string :as str]
            [datacamp.bench.gen]
            [datacamp.s3-server :as s3])
  (:import [java.io File]
           [java.lang ProcessBuilder$Redirect]
           [java.time LocalDate]))

(set! *warn-on-reflection* true)

(def ^:private synthetic-heap
  "The heap of every synthetic-database run of our code: the database must not live in it."
  "-Xmx192m")

(def ^:private baseline-heap
  "The baseline holds whole chunks as Clojure data (up to 2 x parallel of them)."
  "-Xmx1g")

;; ------------------------------------------------------------------ machine

(defn- sh-out [& args]
  (try (str/trim (:out (apply sh/sh args))) (catch Exception _ "")))

(defn- read-proc
  "The text of a /proc file (slurp cannot read them: available() fails)."
  [^String path]
  (with-open [r (java.io.BufferedReader. (java.io.FileReader. path))]
    (str/join "\n" (line-seq r))))

(defn machine-info []
  (let [cpuinfo (read-proc "/proc/cpuinfo")]
    {:nproc (.availableProcessors (Runtime/getRuntime))
     :cpu-model (or (second (re-find #"model name\s*:\s*(.*)" cpuinfo)) "unknown")
     :mem-gb (some-> (re-find #"MemTotal:\s*(\d+)" (read-proc "/proc/meminfo")) second parse-long (quot (* 1024 1024)))
     :date (str (LocalDate/now))
     :kernel (sh-out "uname" "-r")
     :java (str (System/getProperty "java.vm.name") " " (System/getProperty "java.runtime.version"))
     :git (let [c (sh-out "git" "rev-parse" "--short" "HEAD")
                dirty (sh-out "git" "status" "--porcelain" "--" "src" "java" "clj/src" "Cargo.toml")]
            (if (str/blank? c)
              "unknown (not a git checkout; pass --code)"
              (str c (when (seq dirty) " + uncommitted changes in src/java"))))
     :load-avg (first (str/split (read-proc "/proc/loadavg") #"\s+"))}))

;; ------------------------------------------------------------------ child JVMs

(defn- project-dir ^String [] (System/getProperty "user.dir"))

(defn- java-cmd [] (str (System/getProperty "java.home") "/bin/java"))

(defn- native-lib-opts
  "Load the library `make native` built (or the one given by --native-lib)."
  [native-lib]
  (let [f (io/file (or native-lib (str (project-dir) "/target/native-resources/native/linux-x86_64/libdatacamp.so")))]
    (when (.exists f) [(str "-Ddatacamp.native.path=" (.getAbsolutePath f))])))

(defn child
  "Run one measurement in a fresh JVM with `heap-opts`; return its result map. Throws
  when the JVM fails."
  [args heap-opts {:keys [jvm-opts native-lib env]}]
  (let [cmd (concat [(java-cmd)] heap-opts jvm-opts (native-lib-opts native-lib)
                    [(str "-Ddatacamp.project.dir=" (project-dir))
                     "-cp" (System/getProperty "java.class.path")
                     "clojure.main" "-m" "datacamp.bench.run" (pr-str args)])
        pb (doto (ProcessBuilder. ^java.util.List (vec cmd))
             (.redirectError ProcessBuilder$Redirect/INHERIT))
        _ (doseq [[k v] env] (.put (.environment pb) k v))
        p (.start pb)
        out (slurp (.getInputStream p))
        rc (.waitFor p)
        line (some #(when (str/starts-with? % "BENCH-RESULT ") %) (str/split-lines out))]
    (when-not (and (zero? rc) line)
      (throw (ex-info (str "measurement " (:measure args) " failed (exit " rc ")")
                      {:args args :exit rc :stdout out})))
    (assoc (edn/read-string (subs line (count "BENCH-RESULT ")))
           :heap-opts (str/join " " heap-opts))))

(defn- median-run
  "Run the measurement `runs` times; return the run of median wall time."
  [runs args heap-opts opts]
  (let [rs (sort-by :seconds (vec (repeatedly runs #(child args heap-opts opts))))]
    (assoc (nth rs (quot (count rs) 2)) :all-seconds (mapv :seconds rs))))

(defn- delete-tree [^File f]
  (when (.isDirectory f) (run! delete-tree (.listFiles f)))
  (.delete f))

(defn- fail! [msg data]
  (throw (ex-info msg data)))

(defn- s3-target
  "An S3 target on the loopback test server (started once), in a new bucket for `label`."
  [label]
  (let [bucket (str "bench-" (str/lower-case (str/replace label #"[^A-Za-z0-9]+" "-")) "-" (System/nanoTime))]
    (s3/create-bucket! bucket)
    (s3/target bucket)))

(defn- s3-runs
  "Back up `ds` to the S3 test server once per `:parallel` value of `s3-parallels`; check
  every backup verifies and holds `datom-count` datoms."
  [ds label datom-count step heap {:keys [runs s3-parallels] :as opts}]
  (let [target (s3-target label)]
    (vec (for [p s3-parallels]
           (let [r (step (str "S3, parallel " p)
                         #(median-run runs {:measure :backup-s3 :ds ds :parallel p :target target
                                            :server-pid (s3/pid)}
                                      heap opts))]
             (when-not (get-in r [:verify :success])
               (fail! (str label ": the S3 backup (parallel " p ") does not verify") (:verify r)))
             (when-not (= datom-count (:datom-count r))
               (fail! (str label ": the S3 backup holds " (:datom-count r) " datoms, the walk saw " datom-count) {}))
             (assoc r :parallel p))))))

(defn run-dataset
  "Run every measurement on dataset `ds`; return the results."
  [ds {:keys [runs work parallel stages? keep? s3-parallels] :as opts}]
  (let [fixture? (= :fixture (:kind ds))
        label (if fixture?
                (str (:name ds) " fixture")
                (let [n (long (:datoms ds))]
                  (str "synthetic " (cond (zero? (rem n 1000000)) (str (quot n 1000000) "M")
                                          (zero? (rem n 1000)) (str (quot n 1000) "k")
                                          :else n))))
        heap (if fixture? [] [synthetic-heap])
        base-heap (if fixture? [] [baseline-heap])
        dir (io/file work (str/replace label " " "-"))
        ours-dir (str (io/file dir "ours"))
        base-dir (str (io/file dir "baseline"))
        step (fn [what f]
               (print (format "  %-18s" what)) (flush)
               (let [r (f)]
                 (println (format "%8.2f s  (peak RSS %.0f MB, heap %.0f MB, others' CPU %.2f cores)"
                                  (double (:seconds r)) (/ (* 1024.0 (:peak-rss-kb r)) 1e6)
                                  (/ (double (:peak-heap-bytes r)) 1e6)
                                  (double (:foreign-cores r 0.0))))
                 r))]
    (delete-tree dir)
    (println (str "== " label))
    (let [walk (step "walk (limit)" #(median-run runs {:measure :walk :ds ds} heap opts))
          backup (step "backup (ours)" #(median-run runs {:measure :backup :ds ds :dir ours-dir :parallel parallel} heap opts))
          _ (when-not (get-in backup [:verify :success])
              (fail! (str label ": the backup does not verify") (:verify backup)))
          _ (when-not (= (:datom-count walk) (:datom-count backup))
              (fail! (str label ": the backup holds " (:datom-count backup) " datoms, the walk saw " (:datom-count walk)) {}))
          baseline (step "backup (baseline)" #(median-run runs {:measure :baseline-backup :ds ds :dir base-dir
                                                               :parallel parallel
                                                               :chunk-counts (:chunk-datom-counts backup)}
                                                          base-heap opts))
          _ (when-not (= (:chunk-datom-counts backup) (:chunk-datom-counts baseline))
              (fail! (str label ": the baseline cut different chunks") {}))
          where {:dir ours-dir :database-id (:database-id backup) :backup-id (str (:backup-id backup))
                 :chunk-keys (:chunk-keys backup) :parallel parallel}
          restore (step "restore (ours)" #(median-run runs (assoc where :measure :restore) heap opts))
          base-restore (step "restore (baseline)" #(median-run runs (assoc where :measure :baseline-restore) base-heap opts))
          s3 (when (and (seq s3-parallels) (not fixture?))
               (s3-runs ds label (:datom-count walk) step heap opts))
          stages (when stages?
                   (step "backup stages" #(child {:measure :backup-stages :ds ds :dir (str (io/file dir "stages"))
                                                  :parallel parallel} heap opts)))]
      (doseq [[what r] [["restore (ours)" restore] ["restore (baseline)" base-restore]]]
        (when-not (= (:datom-count r) (:datom-count backup))
          (fail! (str label ": " what " decoded " (:datom-count r) " datoms of " (:datom-count backup)) {})))
      (when-not keep? (delete-tree dir))
      {:ds ds :label label :walk walk :backup backup :baseline baseline
       :restore restore :baseline-restore base-restore :stages stages :s3 s3})))

;; ------------------------------------------------------------------ report

(def ^:private MB (* 1000.0 1000.0))

(defn- fmt [pattern & xs] (apply format pattern (map #(if (ratio? %) (double %) %) xs)))

(defn- rate [n secs] (fmt "%,.0f" (/ (double n) (double secs))))

(defn- run-row [label what r datoms out-bytes uncompressed]
  (let [secs (double (:seconds r))]
    (str "| " label " | " what " | " (or (not-empty (:heap-opts r)) "default")
         " | " (fmt "%.2f" secs)
         (when (< 1 (count (:all-seconds r)))
           (str " (" (fmt "%.2f" (first (:all-seconds r))) "–" (fmt "%.2f" (last (:all-seconds r))) ")"))
         " | " (rate datoms secs)
         " | " (if out-bytes (fmt "%.1f" (/ out-bytes MB)) "")
         " | " (if out-bytes (fmt "%.1f" (/ out-bytes MB secs)) "")
         " | " (if out-bytes (fmt "%.2f" (/ (double out-bytes) datoms)) "")
         " | " (if (and out-bytes uncompressed) (fmt "%.2f" (/ (double uncompressed) out-bytes)) "")
         " | " (fmt "%.0f" (/ (* 1024.0 (:peak-rss-kb r)) MB))
         " | " (fmt "%.0f" (/ (double (:peak-heap-bytes r)) MB))
         " | " (fmt "%.2f" (double (:foreign-cores r 0.0)))
         " |")))

(defn- check [ok?] (if ok? "met" "**missed**"))

(defn ratios [{:keys [walk backup baseline restore baseline-restore]}]
  (let [limit (/ (:seconds backup) (:seconds walk))
        speedup (/ (:seconds baseline) (:seconds backup))
        size (/ (double (:total-size-bytes backup)) (:total-size-bytes baseline))
        restore-speedup (/ (:seconds baseline-restore) (:seconds restore))]
    {:ours-over-limit limit :baseline-over-ours speedup :size-ours-over-baseline size
     :baseline-over-limit (/ (:seconds baseline) (:seconds walk))
     :restore-baseline-over-ours restore-speedup
     :targets {:limit (<= limit 1.3) :speedup (>= speedup 5.0) :size (<= size 1.0)
               :restore (>= restore-speedup 3.0)}}))

(defn report
  "The markdown report of `results`."
  [machine results]
  (let [lines (transient [])
        add (fn [& xs] (conj! lines (apply str xs)))]
    (add "Machine: " (:nproc machine) " cores (" (:cpu-model machine) "), " (:mem-gb machine)
         " GB RAM, Linux " (:kernel machine) ", " (:java machine) ". Date: " (:date machine)
         ". Code: " (:git machine) ".")
    (add "")
    (when (seq (:env machine))
      (add "Environment of every measurement: " (str/join " " (map (fn [[k v]] (str k "=" v)) (:env machine))) ".")
      (add ""))
    (add "Every row is a fresh JVM: the median of " (:runs machine) " run(s), (min–max) when more "
         "(wall times exclude JVM start and fixture loading). "
         "\"others' CPU\" = cores busy with other processes during the measured interval (0 = quiet machine).")
    (add "")
    (add "| database | run | heap | wall s | datoms/s | output MB | output MB/s | bytes/datom | compression | peak RSS MB | peak heap MB | others' CPU |")
    (add "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    (doseq [{:keys [label walk backup baseline restore baseline-restore stages]} results]
      (let [n (:datom-count walk)]
        (add (run-row (str label " (" (fmt "%,d" n) " datoms)") "walk only (limit)" walk n nil nil))
        (add (run-row label "backup: ours" backup n (:total-size-bytes backup) (:uncompressed-bytes backup)))
        (add (run-row label "backup: JVM baseline" baseline n (:total-size-bytes baseline) (:uncompressed-bytes baseline)))
        (add (run-row label "restore decode: ours" restore n nil nil))
        (add (run-row label "restore decode: JVM baseline" baseline-restore n nil nil))))
    (add "")
    (add "Output MB = chunk bytes (gzip), MB = 10^6 bytes; compression = uncompressed Fressian / gzip. "
         "Chunks: " (str/join ", " (map #(str (:label %) " " (:chunk-count (:backup %))) results))
         " (8 MiB of Fressian each, parallel " (:parallel machine) "; the baseline cuts the same datom counts).")
    (add "")
    (add "| database | backup ours / limit (target <= 1.3) | backup baseline / ours (target >= 5) | bound: baseline / limit | output ours / baseline (target <= 1) | restore decode baseline / ours (target >= 3) |")
    (add "|---|---:|---:|---:|---:|---:|")
    (doseq [r results]
      (let [{:keys [ours-over-limit baseline-over-ours baseline-over-limit size-ours-over-baseline
                    restore-baseline-over-ours targets]} (ratios r)]
        (add "| " (:label r)
             " | " (fmt "%.2f" ours-over-limit) " " (check (:limit targets))
             " | " (fmt "%.2f" baseline-over-ours) " " (check (:speedup targets))
             " | " (fmt "%.2f" baseline-over-limit)
             " | " (fmt "%.3f" size-ours-over-baseline) " " (check (:size targets))
             " | " (fmt "%.2f" restore-baseline-over-ours) " " (check (:restore targets)) " |")))
    (add "")
    (add "bound = baseline wall / walk wall: the largest speedup over the baseline that any backup "
         "could show, since it must at least walk the datoms.")
    (let [synth (filter #(= :synthetic (:kind (:ds %))) results)]
      (when (seq synth)
        (add "")
        (add "Memory of our backup (" synthetic-heap "): "
             (str/join "; " (for [r synth]
                              (str (:label r) ": peak RSS " (fmt "%.0f" (/ (* 1024.0 (:peak-rss-kb (:backup r))) MB))
                                   " MB, peak heap " (fmt "%.0f" (/ (double (:peak-heap-bytes (:backup r))) MB)) " MB")))
             ".")))
    (when-let [s3-results (seq (filter :s3 results))]
      (add "")
      (add "Backups to S3: the same databases backed up to the loopback S3 test server (moto "
           "on 127.0.0.1, in-memory, on the same 2 cores; 8 MiB chunks, gzip, each backup "
           "verified with `:deep? true`, untimed). \"S3 server CPU\" = CPU seconds the server "
           "process used during the backup (it competes with the backup for the cores); \"others' "
           "CPU\" excludes it. \"vs directory\" = wall of the directory backup above (parallel "
           (:parallel machine) ") / wall of this one.")
      (add "")
      (add "| database | :parallel | heap | wall s | datoms/s | output MB/s | vs directory | peak RSS MB | peak heap MB | S3 server CPU s | others' CPU |")
      (add "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
      (doseq [{:keys [label walk backup s3]} s3-results
              r s3
              :let [n (:datom-count walk)
                    secs (double (:seconds r))]]
        (add "| " label " | " (:parallel r) " | " (or (not-empty (:heap-opts r)) "default")
             " | " (fmt "%.2f" secs)
             (when (< 1 (count (:all-seconds r)))
               (str " (" (fmt "%.2f" (first (:all-seconds r))) "–" (fmt "%.2f" (last (:all-seconds r))) ")"))
             " | " (rate n secs)
             " | " (fmt "%.1f" (/ (double (:total-size-bytes r)) MB secs))
             " | " (fmt "%.2f" (/ (double (:seconds backup)) secs))
             " | " (fmt "%.0f" (/ (* 1024.0 (:peak-rss-kb r)) MB))
             " | " (fmt "%.0f" (/ (double (:peak-heap-bytes r)) MB))
             " | " (fmt "%.2f" (double (or (:server-cpu-seconds r) 0.0)))
             " | " (fmt "%.2f" (double (:foreign-cores r 0.0))) " |")))
    (when-let [st (seq (keep :stages results))]
      (add "")
      (add "Backup phases (`--stages`): "
           (str/join "; " (for [r results :let [s (:stages r)] :when s]
                            (str (:label r) ": push " (fmt "%.2f" (get-in s [:push :seconds])) " s (CPU "
                                 (fmt "%.2f" (get-in s [:push :cpu-seconds])) " s), finish "
                                 (fmt "%.2f" (get-in s [:finish :seconds])) " s (CPU "
                                 (fmt "%.2f" (get-in s [:finish :cpu-seconds])) " s)")))
           "."))
    (persistent! lines)))

(def ^:private begin-marker "<!-- BEGIN GENERATED by `make bench` (clj/bench/datacamp/bench.clj): do not edit by hand -->")
(def ^:private end-marker "<!-- END GENERATED -->")

(defn write-report!
  "Put `lines` between the markers of `file` (created when missing), keeping the rest."
  [^File file lines]
  (let [generated (str begin-marker "\n" (str/join "\n" lines) "\n" end-marker)
        old (when (.exists file) (slurp file))
        text (if (and old (str/includes? old begin-marker) (str/includes? old end-marker))
               (str (subs old 0 (str/index-of old begin-marker))
                    generated
                    (subs old (+ (str/index-of old end-marker) (count end-marker))))
               (str "# Benchmarks\n\nRun `make bench` (add `BENCH_20M=1` for the 20M-datom database).\n\n"
                    generated "\n" (when old (str "\n" old))))]
    (spit file text)))

;; ------------------------------------------------------------------ backup chains (#10)
;; Kept apart from `run-dataset` and `report` (its own measurements, table and markers).

(defn chain-bench
  "For the synthetic database of `n` datoms: the bare walk; a full backup of the database
  as it was before its last 1% of transactions; an incremental continuing it (the whole
  history walked, the last 1% stored); and a chain — a full backup at a quarter of the
  transactions, incrementals at half, three quarters and the end — restored to the
  middle transaction (native restore session), counting the bytes read. Each run in a
  fresh JVM; every backup deep-verified. Return the results."
  [n {:keys [runs work parallel] :as opts}]
  (let [ds {:kind :synthetic :datoms n}
        spec (datacamp.bench.gen/spec n 42)
        first-tx (inc datacamp.bench.gen/schema-tx)
        max-tx (long (:max-tx spec))
        txs (- max-tx datacamp.bench.gen/schema-tx)
        at (fn [fraction] (+ datacamp.bench.gen/schema-tx (long (Math/round (* (double fraction) txs)))))
        label (str "synthetic " (if (zero? (rem n 1000000)) (str (quot n 1000000) "M") (str (quot n 1000) "k")))
        dir (io/file work (str (str/replace label " " "-") "-chain"))
        heap [synthetic-heap]
        step (fn [what f]
               (print (format "  %-26s" what)) (flush)
               (let [r (f)]
                 (println (format "%8.2f s  (peak RSS %.0f MB)" (double (:seconds r))
                                  (/ (* 1024.0 (:peak-rss-kb r)) 1e6)))
                 r))
        verified! (fn [r what]
                    (when-not (get-in r [:verify :success])
                      (fail! (str label " " what ": the backup does not verify") (:verify r)))
                    r)
        one-pct (max first-tx (- max-tx (max 1 (long (Math/round (* 0.01 txs))))))
        inc-dir (str (io/file dir "incremental"))
        chain-dir (str (io/file dir "chain"))]
    (delete-tree dir)
    (println (str "== " label ": backup chains"))
    (let [walk (step "walk (limit)" #(median-run runs {:measure :walk :ds ds} heap opts))
          full (step "full backup (99%)" #(verified! (child {:measure :chain-backup :ds ds :dir inc-dir
                                                               :through one-pct} heap opts)
                                                       "full"))
          ;; every run writes a sibling: an incremental continuing the same full backup
          incr (step "incremental (last 1%)" #(verified! (median-run runs {:measure :chain-backup :ds ds :dir inc-dir
                                                                           :parent (str (:backup-id full))}
                                                                      heap opts)
                                                          "incremental"))
          links (mapv (fn [[fraction inc?]]
                        (verified! (child {:measure :chain-backup :ds ds :dir chain-dir
                                           :through (at fraction) :incremental? inc?} heap opts)
                                   "chain link"))
                      [[0.25 false] [0.5 true] [0.75 true] [1.0 true]])
          mid (at 0.5)
          pit (step "point-in-time restore" #(median-run runs {:measure :pit-restore :dir chain-dir
                                                               :database-id (:database-id (last links))
                                                               :backup-id (str (:backup-id (last links)))
                                                               :as-of-tx mid :parallel parallel}
                                                          heap opts))
          full-restore (step "whole-chain restore" #(median-run runs {:measure :pit-restore :dir chain-dir
                                                                     :database-id (:database-id (last links))
                                                                     :backup-id (str (:backup-id (last links)))
                                                                     :as-of-tx max-tx :parallel parallel}
                                                                heap opts))]
      (when-not (= mid (:restored-to-tx pit))
        (fail! (str label ": the point-in-time restore reached tx " (:restored-to-tx pit) ", not " mid) pit))
      (when-not (:keep? opts) (delete-tree dir))
      {:label label :walk walk :full full :incremental incr :links links :pit pit :whole full-restore
       :one-pct-txs (- max-tx one-pct) :txs txs :mid mid})))

(defn chain-report
  "The markdown lines of the chain results."
  [machine results]
  (let [lines (transient [])
        add (fn [& xs] (conj! lines (apply str xs)))
        mb #(fmt "%.2f" (/ (double %) MB))]
    (add "Machine: " (:nproc machine) " cores (" (:cpu-model machine) "), " (:date machine)
         ", code " (:git machine) "; each row the median of " (:runs machine)
         " fresh JVM(s), -Xmx192m. Incremental: the database as it was before its last 1% of "
         "transactions is backed up in full, then an incremental continues it: it walks the whole "
         "history (Datahike has no transaction index), notes every id's first transaction, and "
         "stores only the last 1%. Point in time: a chain of a full backup at a quarter of the "
         "transactions and incrementals at half, three quarters and the end, restored (native "
         "session, datoms decoded, no Datahike) to the middle transaction; 'read' counts the "
         "chunks' stored bytes the plan reads, 'process read' what the process read through "
         "read(2) meanwhile (rchar, class files included).")
    (add "")
    (add "| database | run | wall s | datoms stored | output MB | output / full | peak RSS MB | others' CPU |")
    (add "|---|---|---:|---:|---:|---:|---:|---:|")
    (doseq [{:keys [label walk full incremental one-pct-txs txs]} results
            :let [rss #(fmt "%.0f" (/ (* 1024.0 (:peak-rss-kb %)) MB))
                  others #(fmt "%.2f" (double (:foreign-cores % 0.0)))
                  ratio (/ (double (:total-size-bytes incremental)) (:total-size-bytes full))]]
      (add "| " label " | walk only (limit) | " (fmt "%.2f" (:seconds walk)) " | " (fmt "%,d" (:datom-count walk))
           " | | | " (rss walk) " | " (others walk) " |")
      (add "| " label " | full backup (" (- txs one-pct-txs) " of " txs " txs) | " (fmt "%.2f" (:seconds full))
           " | " (fmt "%,d" (:datom-count full)) " | " (mb (:total-size-bytes full)) " | 1 | " (rss full)
           " | " (others full) " |")
      (add "| " label " | incremental (last " one-pct-txs " txs) | " (fmt "%.2f" (:seconds incremental))
           " | " (fmt "%,d" (:datom-count incremental)) " | " (mb (:total-size-bytes incremental))
           " | " (fmt "%.4f" ratio) (if (<= ratio 0.02) " (target <= 0.02 met)" " (target <= 0.02 **missed**)")
           " | " (rss incremental) " | " (others incremental) " |"))
    (add "")
    (add "| database | restore | wall s | datoms | chunks read | read MB | chain MB | read / chain | process read MB | others' CPU |")
    (add "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    (doseq [{:keys [label links pit whole mid]} results
            :let [chain-bytes (reduce + (map :total-size-bytes links))]
            [what r] [[(str "as of tx " mid " (middle)") pit] ["whole chain" whole]]]
      (add "| " label " | " what " | " (fmt "%.2f" (:seconds r)) " | " (fmt "%,d" (:datom-count r))
           " | " (:chunk-count r) " | " (mb (:bytes-to-read r)) " | " (mb chain-bytes)
           " | " (fmt "%.2f" (/ (double (:bytes-to-read r)) chain-bytes))
           " | " (mb (:process-read-bytes r)) " | " (fmt "%.2f" (double (:foreign-cores r 0.0))) " |"))
    (persistent! lines)))

(def ^:private chain-begin "<!-- BEGIN GENERATED chains by `make bench` (datacamp.bench/chain-bench): do not edit by hand -->")
(def ^:private chain-end "<!-- END GENERATED chains -->")

(defn write-chain-report!
  "Put the chain lines between their markers in `file` (appended with a heading when the
  markers are missing)."
  [^File file lines]
  (let [generated (str chain-begin "\n" (str/join "\n" lines) "\n" chain-end)
        old (if (.exists file) (slurp file) "")
        text (if (and (str/includes? old chain-begin) (str/includes? old chain-end))
               (str (subs old 0 (str/index-of old chain-begin)) generated
                    (subs old (+ (str/index-of old chain-end) (count chain-end))))
               (str (str/trimr old) "\n\n## Backup chains\n\n" generated "\n"))]
    (spit file text)))

;; ------------------------------------------------------------------ main

(defn- parse-args [args]
  (loop [[a & more :as args] args opts {:sizes [1000000 5000000] :large? true :runs 1 :parallel 2 :s3-parallels [1 2 4]
                                        :chains? true
                                        :out "BENCHMARKS.md" :work "target/bench" :jvm-opts []}]
    (if-not (seq args)
      opts
      (case a
        "--smoke" (recur more (assoc opts :smoke? true))
        "--20m" (recur more (update opts :sizes conj 20000000))
        "--sizes" (recur (next more) (assoc opts :sizes (mapv parse-long (str/split (first more) #","))))
        "--no-large" (recur more (assoc opts :large? false))
        "--runs" (recur (next more) (assoc opts :runs (parse-long (first more))))
        "--parallel" (recur (next more) (assoc opts :parallel (parse-long (first more))))
        "--stages" (recur more (assoc opts :stages? true))
        "--no-s3" (recur more (assoc opts :s3-parallels []))
        "--no-chains" (recur more (assoc opts :chains? false))
        "--only-chains" (recur more (assoc opts :only-chains? true))
        "--s3-parallel" (recur (next more) (assoc opts :s3-parallels (mapv parse-long (str/split (first more) #","))))
        "--out" (recur (next more) (assoc opts :out (first more)))
        "--work" (recur (next more) (assoc opts :work (first more)))
        "--keep" (recur more (assoc opts :keep? true))
        "--code" (recur (next more) (assoc opts :code (first more)))
        "--native-lib" (recur (next more) (assoc opts :native-lib (first more)))
        "--env" (recur (next more) (update opts :env (fnil conj [])
                                            (vec (str/split (first more) #"=" 2))))
        "--jvm-opt" (recur (next more) (update opts :jvm-opts conj (first more)))
        (throw (ex-info (str "unknown option " a) {}))))))

(defn -main [& args]
  (let [opts (parse-args args)
        opts (if (:smoke? opts) (assoc opts :sizes [20000] :runs 1 :work "target/bench-smoke") opts)
        machine (cond-> (assoc (machine-info) :env (:env opts) :runs (:runs opts) :parallel (:parallel opts))
                  (:code opts) (assoc :git (:code opts)))
        datasets (concat (for [n (:sizes opts)] {:kind :synthetic :datoms n})
                         (cond (:smoke? opts) [{:kind :fixture :name "kitchen-sink"}]
                               (:large? opts) [{:kind :fixture :name "large"}]))]
    (println (format "Datacamp benchmark%s: %d cores, %s, %s, load average %s, code %s"
                     (if (:smoke? opts) " (smoke)" "") (:nproc machine) (:cpu-model machine)
                     (:date machine) (:load-avg machine) (:git machine)))
    (try
      (let [results (if (:only-chains? opts) [] (mapv #(run-dataset % opts) datasets))
            chains (when (:chains? opts)
                     (mapv #(chain-bench % opts) (if (:smoke? opts) [20000] (filter #(<= % 5000000) (:sizes opts)))))
            lines (report machine results)
            raw (io/file (:work opts) "results.edn")]
        (io/make-parents raw)
        (spit raw (pr-str {:machine machine :results results}))
        (println)
        (run! println lines)
        (when chains (println) (run! println (chain-report machine chains)))
        (if (:smoke? opts)
          (println "\nbench-smoke: every run succeeded, every backup verified (:deep? true)")
          (do (when (seq results) (write-report! (io/file (:out opts)) lines))
              (when chains (write-chain-report! (io/file (:out opts)) (chain-report machine chains)))
              (println (str "\nwritten to " (:out opts)))))
        (shutdown-agents)
        (System/exit 0))
      (catch Exception e
        (binding [*out* *err*]
          (println "benchmark FAILED:" (.getMessage e))
          (when-let [d (ex-data e)] (prn (dissoc d :stdout)) (some-> (:stdout d) println)))
        (shutdown-agents)
        (System/exit 1)))))

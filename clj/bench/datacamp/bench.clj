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

  `defaults-comparison` (`--defaults`, `make bench-defaults`) backs up and restore-decodes the
  synthetic databases at our default chunk size and parallelism and at the original
  datacamp's (64 MB, 4), for the README's defaults note.

  Options: --smoke (20k datoms + the kitchen-sink fixture, checks only, writes nothing;
  also runs the defaults comparison), --defaults (only the defaults comparison),
  --20m, --no-s3 (skip the S3 runs), --s3-parallel 1,2,4 (their `:parallel` values), --sizes 1000000,5000000, --no-large, --runs N (median of N fresh JVMs per
  measurement), --stages (also time the backup's push and finish phases), --out FILE,
  --work DIR, --keep (keep the backups), --jvm-opt OPT (repeatable, added to every JVM),
  --native-lib FILE (the libdatacamp.so to load; default the one `make native` built),
  --code LABEL (what code was measured, for the report; default the git commit),
  --env NAME=VALUE (repeatable, set in every measurement's environment, e.g.
  MALLOC_ARENA_MAX=1)."
  (:require [clojure.edn :as edn]
            [clojure.java.io :as io]
            [clojure.java.shell :as sh]
            [clojure.string :as str]
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
                     (str "-Djava.io.tmpdir=" (System/getProperty "java.io.tmpdir"))
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

(def ^:private not-judged
  "What a smoke run (20k datoms, say nothing about speed) shows instead of met/missed."
  "smoke: targets not judged")

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
                    restore-baseline-over-ours targets]} (ratios r)
            check (if (:smoke? machine) (constantly not-judged) check)]
        (add "| " (:label r)
             " | " (fmt "%.2f" ours-over-limit) " " (check (:limit targets))
             " | " (fmt "%.2f" baseline-over-ours) " " (check (:speedup targets))
             " | " (fmt "%.2f" baseline-over-limit)
             " | " (fmt "%.3f" size-ours-over-baseline) " " (check (:size targets))
             " | " (fmt "%.2f" restore-baseline-over-ours) " " (check (:restore targets)) " |")))
    (when (:smoke? machine)
      (add "")
      (add not-judged " (a smoke run checks that every measurement runs and every backup verifies)."))
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

;; ------------------------------------------------------------------ defaults (issue #13)

(def default-settings
  "The backup defaults compared by `defaults-comparison`: ours, and the ones the original
  datacamp documents (`:chunk-size` 64 MB, `:parallel` 4)."
  [{:label "ours: 8 MiB, :parallel 2" :chunk-size (* 8 1024 1024) :parallel 2}
   {:label "original's: 64 MiB, :parallel 4" :chunk-size (* 64 1024 1024) :parallel 4}])

(defn defaults-comparison
  "Back up each synthetic database of `sizes` at both `default-settings` (directory target,
  verified, :deep? true) and decode it with our restore session at the same `:parallel`,
  each in a fresh JVM under the synthetic heap; return one row per database and setting."
  [sizes {:keys [runs work] :as opts}]
  (vec (for [n sizes
             {:keys [label chunk-size parallel] :as setting} default-settings]
         (let [ds {:kind :synthetic :datoms n}
               dir (io/file work "defaults" (str n "-" chunk-size "-" parallel))
               _ (delete-tree dir)
               _ (println (format "== defaults: %,d datoms, %s" n label))
               b (median-run runs {:measure :backup :ds ds :dir (str dir) :parallel parallel
                                   :chunk-size chunk-size}
                             [synthetic-heap] opts)
               _ (when-not (get-in b [:verify :success])
                   (fail! (str "defaults " label ": the backup does not verify") (:verify b)))
               r (median-run runs {:measure :restore :dir (str dir) :database-id (:database-id b)
                                   :backup-id (str (:backup-id b)) :parallel parallel}
                             [synthetic-heap] opts)]
           (when-not (= (:datom-count b) (:datom-count r))
             (fail! (str "defaults " label ": the restore decoded " (:datom-count r) " of "
                         (:datom-count b) " datoms") {}))
           (delete-tree dir)
           {:datoms n :setting setting :backup b :restore r}))))

(defn defaults-report
  "The markdown table of `defaults-comparison`'s rows."
  [machine rows]
  (let [mb #(fmt "%.0f" (/ (* 1024.0 (double %)) MB))]
    (concat
     [(str "Defaults (`make bench-defaults`): " (:nproc machine) " cores (" (:cpu-model machine) "), "
           (:java machine) ", " (:date machine) ", code " (:git machine) "; median of " (:runs machine)
           " fresh JVM(s) each, " synthetic-heap ".")
      ""
      "| database | chunk size, :parallel | chunks | backup wall s | backup datoms/s | backup peak RSS MB | backup peak heap MB | restore decode wall s | restore decode peak RSS MB |"
      "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
     (for [{:keys [datoms setting backup restore]} rows]
       (str "| synthetic " (fmt "%,d" datoms) " | " (:label setting)
            " | " (:chunk-count backup)
            " | " (fmt "%.2f" (double (:seconds backup)))
            " | " (rate datoms (:seconds backup))
            " | " (mb (:peak-rss-kb backup))
            " | " (fmt "%.0f" (/ (double (:peak-heap-bytes backup)) MB))
            " | " (fmt "%.2f" (double (:seconds restore)))
            " | " (mb (:peak-rss-kb restore)) " |")))))

;; ------------------------------------------------------------------ main

(defn- parse-args [args]
  (loop [[a & more :as args] args opts {:sizes [1000000 5000000] :large? true :runs 1 :parallel 2 :s3-parallels [1 2 4]
                                        :out "BENCHMARKS.md" :work "target/bench" :jvm-opts []}]
    (if-not (seq args)
      opts
      (case a
        "--smoke" (recur more (assoc opts :smoke? true))
        "--defaults" (recur more (assoc opts :defaults? true))
        "--20m" (recur more (update opts :sizes conj 20000000))
        "--sizes" (recur (next more) (assoc opts :sizes (mapv parse-long (str/split (first more) #","))))
        "--no-large" (recur more (assoc opts :large? false))
        "--runs" (recur (next more) (assoc opts :runs (parse-long (first more))))
        "--parallel" (recur (next more) (assoc opts :parallel (parse-long (first more))))
        "--stages" (recur more (assoc opts :stages? true))
        "--no-s3" (recur more (assoc opts :s3-parallels []))
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
        machine (cond-> (assoc (machine-info) :env (:env opts) :runs (:runs opts) :parallel (:parallel opts)
                               :smoke? (:smoke? opts))
                  (:code opts) (assoc :git (:code opts)))
        datasets (concat (for [n (:sizes opts)] {:kind :synthetic :datoms n})
                         (cond (:smoke? opts) [{:kind :fixture :name "kitchen-sink"}]
                               (:large? opts) [{:kind :fixture :name "large"}]))]
    (println (format "Datacamp benchmark%s: %d cores, %s, %s, load average %s, code %s"
                     (if (:smoke? opts) " (smoke)" "") (:nproc machine) (:cpu-model machine)
                     (:date machine) (:load-avg machine) (:git machine)))
    (try
      (when (:defaults? opts)
        (let [lines (defaults-report machine (defaults-comparison (:sizes opts) opts))]
          (println)
          (run! println lines)
          (shutdown-agents)
          (System/exit 0)))
      (let [results (mapv #(run-dataset % opts) datasets)
            lines (report machine results)
            raw (io/file (:work opts) "results.edn")]
        (io/make-parents raw)
        (spit raw (pr-str {:machine machine :results results}))
        (println)
        (run! println lines)
        (when (:smoke? opts)
          (println)
          (run! println (defaults-report machine (defaults-comparison (:sizes opts) opts))))
        (if (:smoke? opts)
          (println "\nbench-smoke: every run succeeded, every backup verified (:deep? true)")
          (do (write-report! (io/file (:out opts)) lines)
              (println (str "\nwritten to " (:out opts)))))
        (shutdown-agents)
        (System/exit 0))
      (catch Exception e
        (binding [*out* *err*]
          (println "benchmark FAILED:" (.getMessage e))
          (when-let [d (ex-data e)] (prn (dissoc d :stdout)) (some-> (:stdout d) println)))
        (shutdown-agents)
        (System/exit 1)))))

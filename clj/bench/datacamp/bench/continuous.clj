(ns datacamp.bench.continuous
  "Benchmarks of continuous backup (`make bench-continuous`; rows in BENCHMARKS.md, between
  their own generated-section markers). Each measurement runs in a fresh JVM
  (`datacamp.bench.continuous/child`) on a stand-in database (datacamp.capture-load):

  - overhead: a writer transacting small transactions (10 datoms each) as fast as the
    stand-in takes them, for `--seconds` after a warm-up, with the capture off and on
    (directory target, default flush interval); transactions per second, medians of
    `--runs` alternating runs;
  - lag: 200 small transactions per second for `--lag-seconds` (60), capture on, directory
    and loopback S3 (moto): for every transaction, the time from `d/transact` returning to
    the capture's durable point passing it (a thread polls the status every 2 ms); p50, p99,
    max;
  - memory over the lag run: peak heap and RSS up to 10 s and up to the end, and the live
    heap after the last GC at both points; the same run with the capture off for
    comparison (the stand-in database itself grows by 10 datoms per transaction).

  `run-continuous-benchmarks` is the entry point (`-main` parses the command line: --runs,
  --seconds, --lag-seconds, --no-s3, --smoke (short runs, no report written), --out)."
  (:require [clojure.edn :as edn]
            [clojure.java.io :as io]
            [clojure.java.shell :as sh]
            [clojure.string :as str]
            [datacamp.capture-load :as load]
            [datacamp.continuous :as cont]
            [datacamp.core :as dc]
            [datacamp.s3-server :as s3]
            [datahike.api :as d])
  (:import [java.lang ProcessBuilder$Redirect]
           [java.lang.management ManagementFactory MemoryPoolMXBean MemoryType]
           [java.util.concurrent.atomic AtomicLong]))

(set! *warn-on-reflection* true)

;; ------------------------------------------------------------------ process facts

(defn- vm-kb
  "A field of /proc/self/status in kB (VmHWM: peak RSS, VmRSS: RSS now)."
  [field]
  (with-open [r (java.io.BufferedReader. (java.io.FileReader. "/proc/self/status"))]
    (some (fn [^String line]
            (when (str/starts-with? line (str field ":"))
              (parse-long (re-find #"\d+" line))))
          (line-seq r))))

(defn- heap-pools []
  (filter #(= MemoryType/HEAP (.getType ^MemoryPoolMXBean %)) (ManagementFactory/getMemoryPoolMXBeans)))

(defn- heap-used [] (reduce + (map #(.getUsed (.getUsage ^MemoryPoolMXBean %)) (heap-pools))))

(defn- heap-after-gc
  "Heap in use right after the last collection (the live set, with what the last GC left)."
  []
  (reduce + (map #(or (some-> (.getCollectionUsage ^MemoryPoolMXBean %) .getUsed) 0) (heap-pools))))

(defn- memory-sampler
  "Sample the heap every 100 ms; return `{:peak (atom bytes) :stop (fn [])}`."
  []
  (let [peak (atom 0)
        running (atom true)
        t (Thread. ^Runnable (fn [] (while @running
                                      (swap! peak max (heap-used))
                                      (Thread/sleep 100))))]
    (.setDaemon t true)
    (.start t)
    {:peak peak :stop #(reset! running false)}))

(defn- mem-point
  "The memory facts at one point of a run."
  [sampler]
  {:peak-heap-bytes @(:peak sampler)
   :heap-after-gc-bytes (heap-after-gc)
   :peak-rss-kb (vm-kb "VmHWM")
   :rss-kb (vm-kb "VmRSS")})

;; ------------------------------------------------------------------ measurements (child JVM)

(defn- start-capture
  "Start a capture of `conn` into `target` and wait until its first work is done."
  [conn target opts]
  (let [h (apply dc/start-continuous-backup conn target :database-id "bench" (mapcat identity opts))]
    (cont/flush! h 60000)
    h))

(defn- measure-overhead
  "Transactions per second of a writer doing small transactions as fast as it can."
  [{:keys [capture? seconds warmup target]}]
  (let [conn (load/fresh-conn (str "bench-" (System/nanoTime)))
        h (when capture? (start-capture conn target {}))
        i (AtomicLong. 0)
        run-for (fn [ms]
                  (let [end (+ (System/nanoTime) (* 1000000 (long ms)))
                        start-i (.get i)
                        t0 (System/nanoTime)]
                    (while (< (System/nanoTime) end)
                      (d/transact conn (load/bench-tx (.incrementAndGet i))))
                    [(- (.get i) start-i) (/ (- (System/nanoTime) t0) 1e9)]))
        _ (run-for (* 1000 (long warmup)))
        [n secs] (run-for (* 1000 (long seconds)))
        final (when h (dc/stop-continuous-backup h))]
    (when h
      (when-not (= (:max-tx @conn) (:last-durable-tx final))
        (throw (ex-info "the capture did not store every transaction" {:final final}))))
    {:txs n :seconds secs :tx-per-s (/ n secs)
     :segments (:segments-written final) :capture? (boolean capture?)}))

(defn- percentile [sorted p]
  (nth sorted (min (dec (count sorted)) (long (Math/floor (* p (count sorted)))))))

(defn- measure-lag
  "Lag commit → durable at `rate` transactions per second for `seconds`, and memory."
  [{:keys [capture? seconds rate target]}]
  (let [conn (load/fresh-conn (str "bench-" (System/nanoTime)))
        h (when capture? (start-capture conn target {}))
        sampler (memory-sampler)
        n (* (long rate) (long seconds))
        period-ns (quot 1000000000 (long rate))
        commits (long-array (inc n))
        txs (long-array (inc n))
        durable (java.util.ArrayList.)
        polling (atom true)
        poller (when h
                 (doto (Thread. ^Runnable
                        (fn []
                          (loop [last -1]
                            (when @polling
                              (let [t (long (:last-durable-tx (cont/status h)))
                                    now (System/nanoTime)]
                                (when (> t last) (locking durable (.add durable [t now])))
                                (Thread/sleep 2)
                                (recur (max last t)))))))
                   (.setDaemon true)
                   (.start)))
        t0 (System/nanoTime)
        at-10 (atom nil)]
    (loop [i 1]
      (when (<= i n)
        (let [due (+ t0 (* i period-ns))
              wait (- due (System/nanoTime))]
          (when (pos? wait) (Thread/sleep (quot wait 1000000) (int (rem wait 1000000))))
          (let [r (d/transact conn (load/bench-tx i))]
            (aset commits i (System/nanoTime))
            (aset txs i (long (:max-tx (:db-after r)))))
          (when (and (nil? @at-10) (>= (- (System/nanoTime) t0) 10000000000))
            (reset! at-10 (mem-point sampler)))
          (recur (inc i)))))
    (let [elapsed (/ (- (System/nanoTime) t0) 1e9)
          at-end (mem-point sampler)
          final (when h (cont/flush! h 60000))]
      (Thread/sleep 50)
      (reset! polling false)
      (when poller (.join ^Thread poller))
      ((:stop sampler))
      (let [lags (when h
                   (let [points (locking durable (vec durable))]
                     (vec (sort (for [i (range 1 (inc n))
                                      :let [tx (aget txs i)
                                            [_ t] (first (filter #(>= (long (first %)) tx) points))]]
                                  (/ (- (long (or t Long/MAX_VALUE)) (aget commits i)) 1e6))))))]
        (when h (dc/stop-continuous-backup h))
        (cond-> {:capture? (boolean capture?) :txs n :seconds elapsed :rate (/ n elapsed)
                 :mem-10s @at-10 :mem-end at-end}
          h (assoc :lag-ms {:p50 (percentile lags 0.5) :p99 (percentile lags 0.99) :max (peek lags)}
                   :segments (:segments-written final) :bytes (:bytes-written final)))))))

(defn child
  "Run one measurement (EDN `args`) and print `BENCH-RESULT {…}`."
  [args]
  (let [{:keys [measure] :as a} (edn/read-string args)
        r (case measure
            :overhead (measure-overhead a)
            :lag (measure-lag a))]
    (println "BENCH-RESULT" (pr-str r))
    (shutdown-agents)
    (System/exit 0)))

;; ------------------------------------------------------------------ the parent

(defn- run-child
  "Run one measurement in a fresh JVM; return its result."
  [args]
  (let [native (io/file "target/native-resources/native/linux-x86_64/libdatacamp.so")
        cmd (concat [(str (System/getProperty "java.home") "/bin/java") "-Xmx1g"]
                    (when (.exists native) [(str "-Ddatacamp.native.path=" (.getAbsolutePath native))])
                    ["-cp" (System/getProperty "java.class.path")
                     "clojure.main" "-m" "datacamp.bench.continuous" "child" (pr-str args)])
        pb (doto (ProcessBuilder. ^java.util.List (vec cmd))
             (.redirectError ProcessBuilder$Redirect/INHERIT))
        p (.start pb)
        out (slurp (.getInputStream p))
        rc (.waitFor p)
        line (some #(when (str/starts-with? % "BENCH-RESULT ") %) (str/split-lines out))]
    (when-not (and (zero? rc) line)
      (throw (ex-info (str "measurement " (:measure args) " failed (exit " rc ")") {:args args :out out})))
    (edn/read-string (subs line (count "BENCH-RESULT ")))))

(defn- median [xs] (nth (vec (sort xs)) (quot (count xs) 2)))

(defn- mb [b] (format "%.0f" (/ (double b) 1e6)))
(defn- kb->mb [kb] (format "%.0f" (/ (* 1024.0 kb) 1e6)))

(defn- report
  "The markdown rows of the results."
  [{:keys [overhead lag runs seconds lag-seconds code]}]
  (let [off (map :tx-per-s (filter (complement :capture?) overhead))
        on (map :tx-per-s (filter :capture? overhead))
        slower (- 1.0 (/ (median on) (median off)))
        mem-row (fn [label r]
                  (str "| " label " | " (mb (get-in r [:mem-10s :peak-heap-bytes])) " / "
                       (mb (get-in r [:mem-end :peak-heap-bytes]))
                       " | " (mb (get-in r [:mem-10s :heap-after-gc-bytes])) " / "
                       (mb (get-in r [:mem-end :heap-after-gc-bytes]))
                       " | " (kb->mb (get-in r [:mem-10s :peak-rss-kb])) " / "
                       (kb->mb (get-in r [:mem-end :peak-rss-kb])) " |"))]
    (concat
     [(str "Code: " code ". Machine: " (.availableProcessors (Runtime/getRuntime)) " cores; "
           "each row a fresh JVM (-Xmx1g) on the stand-in database; transactions of 10 datoms.")
      ""
      (str "Transaction throughput, capture off vs on (directory target, flush interval 1 s; "
           "median of " runs " alternating runs of " seconds " s after a warm-up):")
      ""
      "| capture | tx/s (median) | runs | slower than off (target <= 5%) |"
      "|---|---:|---|---:|"
      (str "| off | " (format "%.0f" (median off)) " | " (str/join ", " (map #(format "%.0f" %) off)) " | |")
      (str "| on | " (format "%.0f" (median on)) " | " (str/join ", " (map #(format "%.0f" %) on))
           " | " (format "%.1f%%" (* 100 slower)) " " (if (<= slower 0.05) "met" "**missed**") " |")
      ""
      (str "Lag from `d/transact` returning to the transaction being durable, at 200 tx/s for "
           lag-seconds " s, default flush interval (1 s):")
      ""
      "| target | transactions | p50 ms (target <= 1200) | p99 ms (target <= 2000) | max ms | segments | stored bytes / tx |"
      "|---|---:|---:|---:|---:|---:|---:|"]
     (for [[label r] (dissoc lag :off)
           :let [{:keys [p50 p99 max]} (:lag-ms r)]]
       (str "| " (name label) " | " (:txs r) " | " (format "%.0f" p50) " " (if (<= p50 1200) "met" "**missed**")
            " | " (format "%.0f" p99) " " (if (<= p99 2000) "met" "**missed**")
            " | " (format "%.0f" max) " | " (:segments r)
            " | " (if (and (:bytes r) (pos? (long (:txs r 0))))
                    (format "%.0f" (/ (double (:bytes r)) (:txs r)))
                    "") " |"))
     [""
      (str "Memory over the lag run, at 10 s / at " lag-seconds " s (MB; the stand-in database "
           "grows by 10 datoms per transaction, so compare with the capture off):")
      ""
      "| run | peak heap | heap after last GC | peak RSS |"
      "|---|---:|---:|---:|"]
     (for [[label r] lag]
       (mem-row (if (= :off label) "capture off" (str "capture on, " (name label))) r)))))

(def ^:private begin-marker "<!-- BEGIN GENERATED by `make bench-continuous` (clj/bench/datacamp/bench/continuous.clj): do not edit by hand -->")
(def ^:private end-marker "<!-- END GENERATED continuous -->")

(defn- write-report! [file lines]
  (let [f (io/file file)
        generated (str begin-marker "\n" (str/join "\n" lines) "\n" end-marker)
        old (if (.exists f) (slurp f) "")
        text (if (and (str/includes? old begin-marker) (str/includes? old end-marker))
               (str (subs old 0 (str/index-of old begin-marker)) generated
                    (subs old (+ (str/index-of old end-marker) (count end-marker))))
               (str old "\n## Continuous backup\n\n" generated "\n"))]
    (spit f text)))

(defn run-continuous-benchmarks
  "Run the continuous-backup benchmarks (see the namespace doc); return the results and,
  unless `:smoke?`, write the rows into `:out`."
  [{:keys [runs seconds warmup lag-seconds s3? smoke? out] :as opts}]
  (let [work (io/file "target/bench-continuous")
        dir-target (fn [] {:path (str (io/file work (str "t" (System/nanoTime))))})
        step (fn [what f] (print (format "  %-40s" what)) (flush)
               (let [r (f)] (println (pr-str (select-keys r [:tx-per-s :lag-ms :txs]))) r))
        overhead (vec (for [k (range runs) capture? [false true]]
                        (step (str "overhead, capture " (if capture? "on" "off") " #" (inc k))
                              #(run-child {:measure :overhead :capture? capture? :seconds seconds
                                           :warmup warmup :target (dir-target)}))))
        s3-target (when s3? (let [b (str "bench-cont-" (System/nanoTime))]
                              (s3/create-bucket! b) (s3/target b)))
        lag (cond-> {:directory (step "lag, directory"
                                      #(run-child {:measure :lag :capture? true :seconds lag-seconds
                                                   :rate 200 :target (dir-target)}))
                     :off (step "memory, capture off"
                                #(run-child {:measure :lag :capture? false :seconds lag-seconds :rate 200}))}
              s3-target (assoc :s3 (step "lag, S3 (loopback moto)"
                                         #(run-child {:measure :lag :capture? true :seconds lag-seconds
                                                      :rate 200 :target s3-target}))))
        code (let [c (str/trim (:out (sh/sh "git" "rev-parse" "--short" "HEAD")))] (if (str/blank? c) "unknown" c))
        lines (report (assoc opts :overhead overhead :lag lag :code code))]
    (println)
    (run! println lines)
    (when-not smoke?
      (write-report! out lines)
      (println "\nwritten to" out))
    {:overhead overhead :lag lag}))

(defn -main [& args]
  (if (= "child" (first args))
    (child (second args))
    (let [opts (loop [[a & more :as args] args
                      o {:runs 3 :seconds 20 :warmup 5 :lag-seconds 60 :s3? true :out "BENCHMARKS.md"}]
                 (if-not (seq args)
                   o
                   (case a
                     "--runs" (recur (next more) (assoc o :runs (parse-long (first more))))
                     "--seconds" (recur (next more) (assoc o :seconds (parse-long (first more))))
                     "--lag-seconds" (recur (next more) (assoc o :lag-seconds (parse-long (first more))))
                     "--no-s3" (recur more (assoc o :s3? false))
                     "--out" (recur (next more) (assoc o :out (first more)))
                     "--smoke" (recur more (assoc o :smoke? true :runs 1 :seconds 2 :warmup 1 :lag-seconds 11))
                     (throw (ex-info (str "unknown option " a) {})))))]
      (try
        (run-continuous-benchmarks opts)
        (shutdown-agents)
        (System/exit 0)
        (catch Exception e
          (binding [*out* *err*] (println "benchmark FAILED:" (.getMessage e)) (prn (ex-data e)))
          (shutdown-agents)
          (System/exit 1))))))

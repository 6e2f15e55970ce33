;; Interleaved A/B of native libraries (BENCHMARKS.md, "How changes are measured"):
;;   lein with-profile +debian,+bench run -m clojure.main clj/bench/profile/ab.clj \
;;     ROUNDS DATOMS MEASURE CODEC LIB-A LIB-B …
;; Runs MEASURE (backup-stages, backup, restore) on the synthetic database of DATOMS
;; once per library per round, alternating, each in a fresh JVM (-Xmx192m), and prints
;; wall and CPU seconds per run and the minimum per library. For `restore`, a LIB of
;; `baseline` runs the JVM baseline's decode (data.fressian, -Xmx1g) of the same chunks.
(require '[datacamp.bench :as bench] '[clojure.string :as str] '[clojure.java.io :as io])
(let [[rounds datoms measure codec & libs] *command-line-args*
      rounds (parse-long rounds)
      ds {:kind :synthetic :datoms (parse-long datoms)}
      codec (keyword codec)
      _ ((requiring-resolve 'datacamp.bench.run/materialize!) (:datoms ds) 42)
      _ ((requiring-resolve 'datacamp.bench.run/materialize!) (min 300000 (:datoms ds)) 7)
      results (atom {})
      ;; :restore reads one backup, made first with the first library.
      made (when (= measure "restore")
             (let [dir "target/bench-ab/restore-source"
                   libs (remove #{"baseline"} libs)]
               (bench/delete-tree (io/file dir))
               (assoc (bench/child (merge {:measure :backup :ds ds :dir dir :parallel 2} (bench/codec-opts codec))
                                   ["-Xmx192m"] {:native-lib (first libs) :jvm-opts []})
                      :dir dir)))]
  (dotimes [round rounds]
    (doseq [lib libs]
      (let [dir (str "target/bench-ab/" (.getName (io/file lib)))
            baseline? (= "baseline" lib)
            args (cond
                   (and made baseline?)
                   {:measure :baseline-restore :dir (:dir made) :database-id (:database-id made)
                    :backup-id (str (:backup-id made)) :parallel 2
                    :chunk-keys (:chunk-keys made)}
                   made
                   {:measure :restore :dir (:dir made) :database-id (:database-id made)
                    :backup-id (str (:backup-id made)) :parallel 2}
                   :else
                   (merge {:measure (keyword measure) :ds ds :dir dir :parallel 2}
                          (bench/codec-opts codec)))
            r (if baseline?
                (bench/child args ["-Xmx1g"] {:jvm-opts []})
                (bench/child args ["-Xmx192m"] {:native-lib lib :jvm-opts []}))
            line (if (= measure "backup-stages")
                   (format "push %.2f s (CPU %.2f) finish %.2f s (CPU %.2f) total %.2f s CPU %.2f"
                           (get-in r [:push :seconds]) (get-in r [:push :cpu-seconds])
                           (get-in r [:finish :seconds]) (get-in r [:finish :cpu-seconds])
                           (:seconds r) (+ (get-in r [:push :cpu-seconds]) (get-in r [:finish :cpu-seconds])))
                   (format "%.2f s CPU %.2f" (:seconds r) (:cpu-seconds r)))]
        (swap! results update lib (fnil conj []) r)
        (println (format "round %d %-40s %s bytes %s" round lib line (:total-size-bytes r)))
        (flush)
        (bench/delete-tree (io/file dir)))))
  (doseq [[lib rs] @results]
    (println (format "%-40s min wall %.2f s" lib (apply min (map :seconds rs)))))
  (shutdown-agents)
  (System/exit 0))

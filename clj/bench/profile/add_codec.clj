;; Add one codec's backup and restore rows to a finished `make bench` run and rewrite the
;; report (when a run was made without that codec):
;;   lein with-profile +debian,+bench run -m clojure.main clj/bench/profile/add_codec.clj \
;;     target/bench/results.edn zstd-6 BENCHMARKS.md
(require '[datacamp.bench :as bench] '[clojure.edn :as edn] '[clojure.java.io :as io])
(let [[results-file codec out] *command-line-args*
      codec (keyword codec)
      {:keys [machine results]} (edn/read-string (slurp results-file))
      add (fn [{:keys [ds label backup] :as r}]
            (let [dir (str "target/bench-add/" (name codec) "-" (hash label))
                  heap (if (= :fixture (:kind ds)) [] ["-Xmx192m"])
                  opts {:jvm-opts []}
                  b (bench/child (merge {:measure :backup :ds ds :dir dir :parallel (:parallel machine)}
                                        (bench/codec-opts codec))
                                 heap opts)
                  _ (when-not (get-in b [:verify :success]) (throw (ex-info "does not verify" (:verify b))))
                  _ (when-not (= (:datom-count b) (:datom-count backup)) (throw (ex-info "datom count" {})))
                  rs (bench/child {:measure :restore :dir dir :database-id (:database-id b)
                                   :backup-id (str (:backup-id b)) :parallel (:parallel machine)}
                                  heap opts)]
              (println label (name codec) "backup" (:seconds b) "s CPU" (:cpu-seconds b) "bytes" (:total-size-bytes b)
                       "restore" (:seconds rs) "s CPU" (:cpu-seconds rs))
              (bench/delete-tree (io/file dir))
              (-> r
                  (assoc-in [:backups codec] (assoc b :dir dir))
                  (assoc-in [:restores codec] rs))))
      results (mapv add results)]
  (spit results-file (pr-str {:machine machine :results results}))
  (bench/write-report! (io/file out) (bench/report machine results))
  (println "written to" out)
  (shutdown-agents)
  (System/exit 0))

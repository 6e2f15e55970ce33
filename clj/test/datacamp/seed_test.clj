(ns datacamp.seed-test
  "The original datacamp's README (github.com/alekcz/datacamp), its Quick Start and Usage
  snippets run as written against the Datahike stand-in, adapted only in the connection:
  the stand-in's `:file` stores at /tmp/my-db and /tmp/restore-db are prepared here (the
  snippets' `d/connect` lines are untouched), the S3 targets gain the loopback S3 server's
  endpoint and test credentials, and /backups becomes a temporary directory. Placeholders
  the README leaves to the reader (`backup-id`, `s3-client`, `bucket`, `db-id/backup-id`)
  are filled in. Each snippet is `load-string`ed in a scratch namespace; its results and
  printed lines are checked."
  (:require [clojure.string :as str]
            [clojure.test :refer [deftest is testing]]
            [datacamp.fixtures :as fx]
            [datacamp.s3-server :as s3]
            [datacamp.test-util :as u]
            [datacamp.utils :as utils]
            [datahike.api :as d]
            [datahike.connector :as dc]))

(set! *warn-on-reflection* true)

;; ---------------------------------------------------------------- the README's snippets

(def quick-start-backup-to-s3
  "(require '[datahike.api :as d])
(require '[datacamp.core :as backup])

;; Create a Datahike connection
(def conn (d/connect {:store {:backend :file :path \"/tmp/my-db\"}}))

;; Backup to S3
(def result
  (backup/backup-to-s3 conn
                       {:bucket \"my-backups\"
                        :region \"us-east-1\"}
                       :database-id \"production-db\"))

;; Check the result
(println \"Backup ID:\" (:backup-id result))
(println \"Datoms backed up:\" (:datom-count result))
(println \"Size:\" (datacamp.utils/format-bytes (:total-size-bytes result)))")

(def quick-start-backup-to-directory
  "(require '[datahike.api :as d])
(require '[datacamp.core :as backup])

;; Create a Datahike connection
(def conn (d/connect {:store {:backend :file :path \"/tmp/my-db\"}}))

;; Backup to local directory
(def result
  (backup/backup-to-directory conn
                              {:path \"/backups\"}
                              :database-id \"production-db\"))

;; Check the result
(println \"Backup ID:\" (:backup-id result))
(println \"Location:\" (:path result))")

(def quick-start-restore-from-s3
  "(require '[datahike.api :as d])
(require '[datacamp.core :as backup])

;; Connect to a fresh/empty target database
(def restore-conn (d/connect {:store {:backend :file :path \"/tmp/restore-db\"}}))

;; Restore a specific backup ID
(backup/restore-from-s3 restore-conn
                        {:bucket \"my-backups\" :region \"us-east-1\"}
                        backup-id
                        :database-id \"production-db\")")

(def quick-start-restore-from-directory
  "(def restore-conn (d/connect {:store {:backend :file :path \"/tmp/restore-db\"}}))
(backup/restore-from-directory restore-conn
                               {:path \"/backups\"}
                               backup-id
                               :database-id \"production-db\")")

(def usage-creating-a-backup
  "(backup/backup-to-s3 conn
                     {:bucket \"my-backups\"
                      :region \"us-east-1\"
                      :prefix \"production/\"}
                     :database-id \"my-database\"
                     :chunk-size (* 64 1024 1024)  ; 64MB chunks
                     :compression :gzip
                     :parallel 4)")

(def usage-listing-backups
  "(backup/list-backups {:bucket \"my-backups\"
                      :region \"us-east-1\"}
                     \"my-database\")")

(def usage-verifying-a-backup
  "(backup/verify-backup {:bucket \"my-backups\"
                       :region \"us-east-1\"}
                      backup-id
                      :database-id \"my-database\")")

(def usage-cleaning-up
  "(backup/cleanup-incomplete {:bucket \"my-backups\"
                            :region \"us-east-1\"}
                           \"my-database\"
                           :older-than-hours 24)")

(def usage-inspecting-backups
  "(require '[datacamp.metadata :as meta])

;; Read manifest
(def manifest
  (meta/read-edn-from-s3 s3-client bucket
                        \"db-id/backup-id/manifest.edn\"))

(clojure.pprint/pprint manifest)")

;; ---------------------------------------------------------------- running them

(defn- adapt
  "The snippet with the connection adapted: S3 targets on the loopback server, /backups
  in `backups`, and README placeholders filled from `fill`."
  [snippet backups fill]
  (let [{:keys [endpoint access-key-id secret-access-key]} (s3/target "my-backups")
        s (-> snippet
              (str/replace ":region \"us-east-1\""
                           (str ":region \"us-east-1\" :endpoint \"" endpoint "\" :access-key-id \""
                                access-key-id "\" :secret-access-key \"" secret-access-key "\""))
              (str/replace "\"/backups\"" (pr-str backups)))]
    (reduce-kv str/replace s fill)))

(defn- run-snippet
  "Evaluate `code` in namespace `ns`; return [value-of-the-last-form printed-output]."
  [ns code]
  (let [out (java.io.StringWriter.)
        v (binding [*ns* ns *out* out]
            (load-string code))]
    [v (str out)]))

(defn- stand-in-store!
  "A stand-in `:file` store at `path` with the kitchen-sink fixture's config, holding the
  fixture's database (or an empty one)."
  [path with-data?]
  (let [cfg (assoc (fx/fixture-config "kitchen-sink") :store {:backend :file :path path})]
    (d/delete-database cfg)
    (if with-data?
      (dc/put-store! (d/load-config cfg) (assoc (fx/fixture-db "kitchen-sink") :config (d/load-config cfg)))
      (d/create-database cfg))
    cfg))

(defn- history [conn]
  (mapv (comp u/typed u/datom-vec) (d/datoms (d/history @conn) :eavt)))

(deftest the-seeds-quick-start-and-usage-run-as-written
  (s3/start!)
  (s3/create-bucket! "my-backups")
  (let [backups (str (u/temp-dir))
        source-cfg (stand-in-store! "/tmp/my-db" true)
        restore-cfg (stand-in-store! "/tmp/restore-db" false)
        ns (binding [*ns* (create-ns (gensym "datacamp.seed-snippets-"))]
             (refer-clojure)
             *ns*)
        source-history (history (fx/fixture-conn "kitchen-sink"))
        run (fn [snippet & [fill]] (run-snippet ns (adapt snippet backups (or fill {}))))]
    (try
      (testing "Quick Start: backup to S3"
        (let [[_ out] (run quick-start-backup-to-s3)
              result @(ns-resolve ns 'result)]
          (is (:success result))
          (is (uuid? (:backup-id result)))
          (is (= (count source-history) (:datom-count result)))
          ;; println shows our UUID ids as #uuid "…" (the original's ids were strings).
          (is (= [(str "Backup ID: #uuid \"" (:backup-id result) "\"")
                  (str "Datoms backed up: " (:datom-count result))
                  (str "Size: " (utils/format-bytes (:total-size-bytes result)))]
                 (str/split-lines out)))
          (is (re-matches #"Size: \d+\.\d\d KB" (last (str/split-lines out))) out)))
      (testing "Quick Start: restore from S3"
        (let [backup-id (:backup-id @(ns-resolve ns 'result))
              _ (intern ns 'backup-id backup-id)
              [r] (run quick-start-restore-from-s3)]
          (is (:success r))
          (is (= source-history (history @(ns-resolve ns 'restore-conn)))
              "the restored history is the source's, datom by datom")))
      (testing "Quick Start: backup to a local directory"
        (let [[_ out] (run quick-start-backup-to-directory)
              result @(ns-resolve ns 'result)]
          (is (:success result))
          (is (str/starts-with? (:path result) (str backups "/production-db/")))
          (is (= [(str "Backup ID: #uuid \"" (:backup-id result) "\"") (str "Location: " (:path result))]
                 (str/split-lines out)))))
      (testing "Quick Start: restore from a local directory"
        (stand-in-store! "/tmp/restore-db" false)
        (intern ns 'backup-id (:backup-id @(ns-resolve ns 'result)))
        (let [[r] (run quick-start-restore-from-directory)]
          (is (:success r))
          (is (= source-history (history @(ns-resolve ns 'restore-conn))))))
      (testing "Usage: creating a backup (64 MB chunks, :parallel 4, under production/)"
        (let [[r] (run usage-creating-a-backup)]
          (is (:success r))
          (is (str/starts-with? (:s3-path r) "s3://my-backups/production/my-database/") (:s3-path r))
          (is (= 1 (:chunk-count r)))))
      ;; The listing, verifying and cleaning-up snippets use the default prefix: a backup of
      ;; my-database there, made as the Quick Start makes one.
      (let [[r] (run "(backup/backup-to-s3 conn {:bucket \"my-backups\" :region \"us-east-1\"} :database-id \"my-database\")")]
        (intern ns 'backup-id (:backup-id r))
        (testing "Usage: listing backups"
          (let [[listed] (run usage-listing-backups)]
            (is (= [(:backup-id r)] (mapv :backup-id listed)))
            (is (= {:backup-id (:backup-id r) :type :full :completed? true
                    :datom-count (:datom-count r) :size-bytes (:total-size-bytes r)}
                   (select-keys (first listed) [:backup-id :type :completed? :datom-count :size-bytes])))
            (is (inst? (:created-at (first listed))))))
        (testing "Usage: verifying a backup"
          (let [[v] (run usage-verifying-a-backup)]
            (is (= {:success true :backup-id (:backup-id r) :chunk-count (:chunk-count r)
                    :all-chunks-present true}
                   (select-keys v [:success :backup-id :chunk-count :all-chunks-present])))))
        (testing "Usage: cleaning up incomplete backups"
          (let [[c] (run usage-cleaning-up)]
            (is (= [] (:removed c)))
            (is (= 0 (:objects-deleted c)))))
        (testing "Inspecting backups from Clojure"
          ;; A REPL has clojure.pprint loaded (the snippet calls it unrequired).
          (require 'clojure.pprint)
          (intern ns 's3-client (s3/target "my-backups"))
          (intern ns 'bucket "my-backups")
          (let [[_ out] (run usage-inspecting-backups {"db-id/backup-id" (str "my-database/" (:backup-id r))})
                manifest @(ns-resolve ns 'manifest)]
            (is (= (str (:backup-id r)) (:backup/id manifest)))
            (is (= "my-database" (:database/id manifest)))
            (is (= (:datom-count r) (:stats/datom-count manifest)))
            (is (= manifest (read-string out)) "pprint printed the manifest"))))
      (testing "Backup Options: :database-id defaults to \"default-db\""
        (let [[r] (run "(backup/backup-to-directory conn {:path \"/backups\"})")]
          (is (= "default-db" (:database-id r)))))
      (finally
        (remove-ns (ns-name ns))
        (d/delete-database source-cfg)
        (d/delete-database restore-cfg)))))

(deftest format-bytes-reads-as-the-seed-prints
  (is (= "0 B" (utils/format-bytes 0)))
  (is (= "1023 B" (utils/format-bytes 1023)))
  (is (= "1.00 KB" (utils/format-bytes 1024)))
  (is (= "22.82 KB" (utils/format-bytes 23366)))
  (is (= "2.53 MB" (utils/format-bytes 2654143)))
  (is (= "1.50 GB" (utils/format-bytes (* 3 512 1024 1024))))
  (is (= "2048.00 GB" (utils/format-bytes (* 2048 1024 1024 1024))))
  (is (= :datacamp/invalid-argument
         (:datacamp/error (try (utils/format-bytes nil) nil (catch clojure.lang.ExceptionInfo e (ex-data e)))))))

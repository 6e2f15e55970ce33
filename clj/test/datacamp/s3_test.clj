(ns datacamp.s3-test
  "What only S3 has, against a real S3 server (moto on loopback): listing a database with
  more than 1,000 objects (ListObjectsV2 pages), and S3's own errors. Everything else —
  reading backups back with clojure.data.fressian / clojure.edn, `:s3-path` and the full
  `:chunk/s3-key`, verify, damage, list, cleanup, restores — runs on S3 as the `-s3` half of
  every test in `datacamp.core-test` and `datacamp.restore-test` (see `datacamp.backends`)."
  (:require [clojure.test :refer [deftest is testing use-fixtures]]
            [datacamp.backends :as bk]
            [datacamp.core :as backup]
            [datacamp.fixtures :as fx]
            [datacamp.s3-server :as s3]))

(set! *warn-on-reflection* true)

(use-fixtures :once (fn [f] (s3/start!) (f)))

(deftest more-than-a-thousand-objects
  (let [t (bk/fresh-target bk/s3)
        conn (fx/fixture-conn "kitchen-sink")
        r1 (backup/backup-to-s3 conn t :database-id "many" :chunk-size 200 :parallel 4)
        r2 (backup/backup-to-s3 conn t :database-id "many" :chunk-size 100000)]
    (is (< 1000 (:chunk-count r1)))
    (is (< 1000 (count (bk/keys-under bk/s3 t "many/"))) "the listing needs more than one page")
    (is (= #{(:backup-id r1) (:backup-id r2)} (set (map :backup-id (backup/list-backups t "many")))))
    (is (true? (:success (backup/verify-backup t (:backup-id r1) :database-id "many"))))))

(deftest s3-errors-are-clear
  (let [data (fn [f] (try (f) nil (catch clojure.lang.ExceptionInfo e (assoc (ex-data e) ::msg (ex-message e)))))]
    (testing "no such bucket fails fast"
      (let [e (data #(backup/backup-to-s3 (fx/fixture-conn "schema-on-read") (s3/target "no-such-bucket")
                                          :database-id "x"))]
        (is (= :datacamp/not-found (:datacamp/error e)) (::msg e))))
    (testing "an S3 target given to a directory function"
      (is (= :datacamp/invalid-argument
             (:datacamp/error (data #(backup/backup-to-directory (fx/fixture-conn "schema-on-read")
                                                                 (s3/target "b") :database-id "x"))))))
    (testing "a directory target given to an S3 function"
      (is (= :datacamp/invalid-argument
             (:datacamp/error (data #(backup/backup-to-s3 (fx/fixture-conn "schema-on-read")
                                                          {:path "/tmp"} :database-id "x"))))))))

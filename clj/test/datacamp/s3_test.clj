(ns datacamp.s3-test
  "The directory suite's assertions again, against a real S3 server (moto on loopback):
  backups read back with clojure.data.fressian / clojure.edn, verify, damage, list with
  more than 1,000 objects, cleanup, and restores."
  (:require [clojure.data.fressian :as fressian]
            [clojure.edn :as edn]
            [clojure.string :as str]
            [clojure.test :refer [deftest is testing use-fixtures]]
            [datacamp.core :as backup]
            [datacamp.fixtures :as fx]
            [datacamp.s3-server :as s3]
            [datacamp.test-util :as u]
            [datahike.api :as d])
  (:import [java.io ByteArrayInputStream]
           [java.security MessageDigest]
           [java.util.zip GZIPInputStream]))

(set! *warn-on-reflection* true)

(def ^:private bucket-counter (atom 0))

(defn- fresh-target
  "An S3 target in a new bucket."
  []
  (let [bucket (str "datacamp-test-" (swap! bucket-counter inc))]
    (s3/create-bucket! bucket)
    (s3/target bucket)))

(use-fixtures :once (fn [f] (s3/start!) (f)))

(defn- sha256-hex [^bytes bs]
  (apply str (map #(format "%02x" %) (.digest (MessageDigest/getInstance "SHA-256") bs))))

(defn- read-backup
  "Manifest (clojure.edn) and chunks (data.fressian) of one backup, read over HTTP."
  [t db-id backup-id]
  (let [base (str db-id "/" backup-id "/")
        manifest (edn/read-string (String. (s3/get-object t (str base "manifest.edn")) "UTF-8"))]
    {:manifest manifest
     :chunks (vec (for [c (:chunks manifest)
                        :let [bs (s3/get-object t (str base (:chunk/key c)))]]
                    (do (assert (= (:chunk/checksum c) (sha256-hex bs)))
                        (fressian/read (.readAllBytes (GZIPInputStream. (ByteArrayInputStream. bs)))))))}))

(deftest every-fixture-backs-up-to-s3-in-restore-order
  (doseq [name ["kitchen-sink" "schema-on-read" "no-history" "attribute-refs" "large"]]
    (testing name
      (let [fixture (fx/load-fixture name)
            t (fresh-target)
            r (backup/backup-to-s3 (fx/fixture-conn name) t :database-id name)
            {:keys [manifest chunks]} (read-backup t name (:backup-id r))]
        (is (true? (:success r)))
        (is (str/starts-with? (:s3-path r) (str "s3://" (:bucket t) "/datahike-backups/" name "/")))
        (is (= (count (:tx-order fixture)) (:datom-count r) (:stats/datom-count manifest)))
        (is (true? (= (map u/norm (:tx-order fixture)) (map u/norm (mapcat :datoms chunks))))
            "the chunks, concatenated, are the fixture's :tx-order")
        (is (= (str "datahike-backups/" name "/" (:backup-id r) "/chunks/datoms-0.fressian.gz")
               (:chunk/s3-key (first (:chunks manifest))))
            "for S3 the original's :chunk/s3-key is the full object key")))))

(deftest verify-list-and-cleanup-on-s3
  (let [t (fresh-target)
        conn (fx/fixture-conn "kitchen-sink")
        r (backup/backup-to-s3 conn t :database-id "ks" :chunk-size 20000)
        id (:backup-id r)
        chunk-key #(str "ks/" id "/chunks/datoms-" % ".fressian.gz")
        verify #(backup/verify-backup t id :database-id "ks" :deep? %)]
    (is (:success (verify true)))
    (testing "a flipped byte"
      (let [bs (s3/get-object t (chunk-key 1))
            bad (aclone bs)]
        (aset-byte bad 100 (unchecked-byte (bit-xor (aget bad 100) 0xff)))
        (s3/put-object! t (chunk-key 1) bad)
        (is (some #(str/includes? % "chunk 1 fails its SHA-256") (:problems (verify false))))
        (s3/put-object! t (chunk-key 1) bs)))
    (testing "a missing chunk"
      (s3/delete-object! t (chunk-key 2))
      (let [v (verify false)]
        (is (false? (:all-chunks-present v)))
        (is (some #(str/includes? % "chunk 2 is missing") (:problems v)))))
    (testing "incomplete backups are listed, then cleaned up; complete ones stay"
      (let [r2 (backup/backup-to-s3 conn t :database-id "ks")]
        (s3/delete-object! t (str "ks/" (:backup-id r2) "/complete.marker"))
        (is (= {(:backup-id r) true (:backup-id r2) false}
               (into {} (map (juxt :backup-id :completed?)) (backup/list-backups t "ks"))))
        (is (= [(:backup-id r2)] (:removed (backup/cleanup-incomplete t "ks" :older-than-hours 0))))
        (is (= [(:backup-id r)] (map :backup-id (backup/list-backups t "ks"))))))))

(deftest more-than-a-thousand-objects
  (let [t (fresh-target)
        conn (fx/fixture-conn "kitchen-sink")
        r1 (backup/backup-to-s3 conn t :database-id "many" :chunk-size 200 :parallel 4)
        r2 (backup/backup-to-s3 conn t :database-id "many" :chunk-size 100000)]
    (is (< 1000 (:chunk-count r1)))
    (is (= #{(:backup-id r1) (:backup-id r2)} (set (map :backup-id (backup/list-backups t "many")))))
    (is (true? (:success (backup/verify-backup t (:backup-id r1) :database-id "many"))))))

(deftest restore-from-s3-exactly
  (doseq [name ["kitchen-sink" "large"]]
    (testing name
      (let [fixture (fx/load-fixture name)
            t (fresh-target)
            b (backup/backup-to-s3 (fx/fixture-conn name) t :database-id name)
            conn (fx/empty-conn name)
            r (backup/restore-from-s3 conn t (:backup-id b) :database-id name)]
        (is (= (:datom-count b) (:datoms-restored r)))
        (is (true? (= (mapv (comp u/typed u/datom-vec) (:history fixture))
                      (mapv (comp u/typed u/datom-vec) (d/datoms (d/history @conn) :eavt))))
            "the restored history equals the source's")
        (d/release conn)))))

(deftest s3-errors-are-clear
  (let [data (fn [f] (try (f) nil (catch clojure.lang.ExceptionInfo e (assoc (ex-data e) ::msg (ex-message e)))))]
    (testing "no such bucket fails fast"
      (let [e (data #(backup/backup-to-s3 (fx/fixture-conn "schema-on-read") (s3/target "no-such-bucket")
                                          :database-id "x"))]
        (is (= :datacamp/not-found (:datacamp/error e)) (::msg e))))
    (testing "an S3 target given to a directory function"
      (is (= :datacamp/invalid-argument
             (:datacamp/error (data #(backup/backup-to-directory (fx/fixture-conn "schema-on-read")
                                                                 (s3/target "b") :database-id "x"))))))))

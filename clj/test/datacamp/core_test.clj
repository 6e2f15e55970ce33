(ns datacamp.core-test
  "Backups through the real JNI path, checked by reading the bytes back with Clojure's own
  readers (clojure.data.fressian, clojure.edn) and comparing datom by datom with the
  fixtures' `:tx-order` (the order that makes Datahike's load-entities reproduce a db).
  Every test runs twice, against a local directory and against S3 (moto): see
  `datacamp.backends`."
  (:require [clojure.edn :as edn]
            [clojure.string :as str]
            [clojure.test :refer [is testing]]
            [datacamp.backends :as bk :refer [defbackend-test]]
            [datacamp.core :as backup]
            [datacamp.fixtures :as fx]
            [datacamp.native]
            [datacamp.test-util :as u]
            [datahike.api :as d])
  (:import [java.security MessageDigest]))

(set! *warn-on-reflection* true)

(def fixture-names ["kitchen-sink" "schema-on-read" "no-history" "attribute-refs" "large"])

(defn- sha256-hex [^bytes bs]
  (apply str (map #(format "%02x" %) (.digest (MessageDigest/getInstance "SHA-256") bs))))

(defn- read-backup
  "The manifest and config (read with clojure.edn) and every chunk (its stored bytes, and
  its content read with data.fressian) of one backup, read through backend `b`."
  [b t db-id backup-id]
  (let [k (partial bk/backup-key db-id backup-id)
        manifest (edn/read-string (bk/read-string-at b t (k "manifest.edn")))
        chunk-bytes (mapv #(bk/read-bytes b t (k (:chunk/key %))) (:chunks manifest))]
    {:b b :t t :db-id db-id :backup-id backup-id
     :manifest manifest
     :config (edn/read-string (bk/read-string-at b t (k "config.edn")))
     :chunk-bytes chunk-bytes
     :chunks (mapv u/read-chunk chunk-bytes)}))

(defn- check-chunks
  "Structural checks of every chunk against the manifest."
  [{:keys [b t db-id backup-id manifest chunks chunk-bytes]} chunk-size]
  (is (= (count chunks) (:stats/chunk-count manifest) (count (:chunks manifest))))
  (doseq [[i c meta ^bytes bs] (map vector (range) chunks (:chunks manifest) chunk-bytes)]
    (is (= {:format/type :datom-chunk :format/version "1.0.0" :chunk/id i}
           (select-keys c [:format/type :format/version :chunk/id])))
    (is (= (:chunk/checksum meta) (sha256-hex bs)) (str "checksum of chunk " i))
    (is (= (:chunk/size-bytes meta) (alength bs)))
    (is (= (:chunk/datom-count meta) (count (:datoms c))))
    (is (= (str "chunks/datoms-" i ".fressian.gz") (:chunk/key meta)))
    (is (= (bk/chunk-s3-key b t db-id backup-id (:chunk/key meta)) (:chunk/s3-key meta))
        "the original's :chunk/s3-key: the full object key on S3, the chunk key on a directory")
    (when (and chunk-size (> (count (:datoms c)) 1))
      (is (<= (alength (u/gunzip bs)) chunk-size) (str "chunk " i " exceeds :chunk-size"))))
  (let [ranges (map :chunk/tx-range (:chunks manifest))]
    (is (every? (fn [[[_ hi] [lo _]]] (<= hi lo)) (partition 2 1 ranges))
        "chunk tx ranges ascend")))

(defn- backup-and-read [b conn t db-id & opts]
  (let [result (apply bk/backup b conn t :database-id db-id opts)]
    [result (read-backup b t db-id (:backup-id result))]))

(defbackend-test every-fixture-backs-up-in-restore-order [b]
  (doseq [name fixture-names
          chunk-size [nil (if (= name "large") 4096 256)]]
    (testing (str name " chunk-size " chunk-size)
      (let [fixture (fx/load-fixture name)
            t (bk/fresh-target b)
            conn (fx/fixture-conn name)
            [result backup] (apply backup-and-read b conn t name
                                   (when chunk-size [:chunk-size chunk-size]))
            datoms (mapcat :datoms (:chunks backup))
            manifest (:manifest backup)]
        (is (true? (:success result)))
        (is (uuid? (:backup-id result)))
        (is (= (bk/location b t name (:backup-id result)) (bk/result-location b result)))
        (is (= (count (:tx-order fixture)) (:datom-count result) (:stats/datom-count manifest)))
        (is (= (map u/norm (:tx-order fixture)) (map u/norm datoms))
            "the chunks, concatenated, are the fixture's :tx-order")
        (is (= (:max-eid fixture) (:max-eid result) (:stats/max-eid manifest)))
        (is (= (:max-tx fixture) (:max-tx result) (:stats/max-tx manifest)))
        (is (= (str (:backup-id result)) (:backup/id manifest)))
        (is (true? (:backup/completed manifest)))
        (is (= (not= name "no-history") (:backup/history? manifest)))
        (is (= "complete" (bk/read-string-at b t (bk/backup-key name (:backup-id result) "complete.marker"))))
        (is (= (get-in fixture [:config :schema-flexibility])
               (get-in backup [:config :datahike/config :schema-flexibility])))
        (is (nil? (get-in backup [:config :datahike/config :store :path])) "no store details leak")
        (check-chunks backup chunk-size)
        (when chunk-size
          (is (< 100 (count (:chunks backup))) "a tiny chunk size makes many chunks"))))))

(defbackend-test empty-database [b]
  (doseq [cfg [{:store {:backend :mem :id "dc-empty"}}
               {:store {:backend :mem :id "dc-empty-refs"} :attribute-refs? true}]]
    (d/delete-database cfg)
    (d/create-database cfg)
    (let [conn (d/connect cfg)
          t (bk/fresh-target b)
          [result backup] (backup-and-read b conn t "empty")]
      (is (= 0 (:datom-count result) (:chunk-count result)))
      (is (= [] (:chunks (:manifest backup))))
      (is (= 536870912 (:max-tx result)))
      (is (:success (backup/verify-backup t (:backup-id result)
                                          :database-id "empty" :deep? true)))
      (d/release conn))))

(defbackend-test current-state-backup [b]
  (let [fixture (fx/load-fixture "kitchen-sink")
        t (bk/fresh-target b)
        [result backup] (backup-and-read b (fx/fixture-conn "kitchen-sink") t "ks" :history? false)
        datoms (mapcat :datoms (:chunks backup))]
    (is (false? (:backup/history? (:manifest backup))))
    (is (= (count (:current fixture)) (:datom-count result)))
    (is (every? #(true? (nth % 4)) datoms) "no retractions in a current-state backup")
    (is (= (frequencies (map u/norm (:current fixture))) (frequencies (map u/norm datoms)))
        "the same datoms as the current db")))

(defbackend-test verify-catches-damage [b]
  (let [t (bk/fresh-target b)
        [result] (backup-and-read b (fx/fixture-conn "kitchen-sink") t "ks" :chunk-size 20000)
        id (:backup-id result)
        chunk-key (fn [i] (bk/backup-key "ks" id (str "chunks/datoms-" i ".fressian.gz")))
        verify #(backup/verify-backup t id :database-id "ks" :deep? %)]
    (is (< 3 (:chunk-count result)))
    (testing "an intact backup verifies, shallow and deep"
      (is (= {:success true :all-chunks-present true :checksums-valid true :problems []}
             (select-keys (verify false) [:success :all-chunks-present :checksums-valid :problems])))
      (is (= (:datom-count result) (:datoms-verified (verify true)))))
    (testing "a flipped byte"
      (bk/flip-byte! b t (chunk-key 1) 100)
      (let [r (verify false)]
        (is (false? (:success r)))
        (is (false? (:checksums-valid r)))
        (is (some #(str/includes? % "chunk 1 fails its SHA-256") (:problems r)) (pr-str r)))
      (bk/flip-byte! b t (chunk-key 1) 100))
    (testing "a truncated chunk"
      (bk/truncate! b t (chunk-key 2) (quot (alength (bk/read-bytes b t (chunk-key 2))) 2))
      (let [r (verify false)]
        (is (false? (:success r)))
        (is (some #(str/includes? % "chunk 2 has") (:problems r)) (pr-str r))))
    (testing "a missing chunk"
      (bk/delete! b t (chunk-key 3))
      (let [r (verify false)]
        (is (false? (:all-chunks-present r)))
        (is (some #(str/includes? % "chunk 3 is missing") (:problems r)) (pr-str r))))
    (testing "unknown backup"
      (let [e (is (thrown? clojure.lang.ExceptionInfo
                           (backup/verify-backup t "no-such-backup" :database-id "ks")))]
        (is (= :datacamp/not-found (:datacamp/error (ex-data e))))))))

(defn- ex-data-of
  "The ex-data (plus ::message) of what `f` throws, nil if it returns."
  [f]
  (try (f) nil (catch clojure.lang.ExceptionInfo e (assoc (ex-data e) ::message (ex-message e)))))

(defbackend-test bad-arguments-are-rejected-before-writing [b]
  (let [t (bk/fresh-target b)
        conn (fx/fixture-conn "kitchen-sink")
        run (partial bk/backup b)]
    (doseq [[what f] (concat
                      [["nil conn" #(run nil t :database-id "x")]]
                      ;; no/blank :path on a directory, no/blank :bucket on S3
                      (for [[what bad] (bk/missing-location-targets b t)]
                        [what #(run conn bad :database-id "x")])
                      [["zero chunk size" #(run conn t :database-id "x" :chunk-size 0)]
                       ["negative chunk size" #(run conn t :database-id "x" :chunk-size -5)]
                       ["dotdot id" #(run conn t :database-id "../x")]
                       ["slash id" #(run conn t :database-id "a/b")]
                       ["blank id" #(run conn t :database-id "")]
                       ["bad compression" #(run conn t :database-id "x" :compression :lz4)]])]
      (testing what
        (is (= :datacamp/invalid-argument (:datacamp/error (ex-data-of f))))))
    (is (bk/nothing-stored? b t) "nothing was written")))

(defbackend-test zstd-backups-hold-the-same-datoms-and-verify [b]
  ;; :compression :zstd (opt-in): the same Fressian chunks as gzip, compressed with zstd,
  ;; named .fressian.zst, recorded in the manifest; verify and the native decoder read them.
  (let [t (bk/fresh-target b)
        conn (fx/fixture-conn "kitchen-sink")
        [gz gz-backup] (backup-and-read b conn t "ks-gz" :chunk-size 20000)
        z (bk/backup b conn t :database-id "ks-z" :chunk-size 20000 :compression :zstd)
        k (partial bk/backup-key "ks-z" (:backup-id z))
        manifest (edn/read-string (bk/read-string-at b t (k "manifest.edn")))
        config (edn/read-string (bk/read-string-at b t (k "config.edn")))
        chunk-bytes (mapv #(bk/read-bytes b t (k (:chunk/key %))) (:chunks manifest))]
    (is (true? (:success z)))
    (is (= :zstd (:format/compression manifest)))
    (is (= :gzip (:format/compression (:manifest gz-backup))))
    (is (= :zstd (:backup/compression config)) "recorded for a resume")
    (is (nil? (:backup/compression (:config gz-backup))))
    (is (< 1 (count chunk-bytes)))
    (is (= (map :chunk/datom-count (:chunks (:manifest gz-backup))) (map :chunk/datom-count (:chunks manifest))))
    (doseq [[i meta ^bytes bs] (map vector (range) (:chunks manifest) chunk-bytes)]
      (is (= (str "chunks/datoms-" i ".fressian.zst") (:chunk/key meta)))
      (is (= [0x28 0xB5 0x2F 0xFD] (map #(bit-and 0xff %) (take 4 bs))) "a zstd frame")
      (is (= (:chunk/checksum meta) (sha256-hex bs))))
    (is (= (map u/norm (mapcat :datoms (:chunks gz-backup)))
           (map u/norm (mapcat #(:datoms (datacamp.native/decode-chunk %)) chunk-bytes)))
        "datom by datom what the gzip backup holds (read there with data.fressian)")
    (is (:success (backup/verify-backup t (:backup-id z) :database-id "ks-z" :deep? true)))
    (is (= :datacamp/invalid-argument
           (:datacamp/error (ex-data-of #(bk/backup b conn t :database-id "x" :compression :zstd
                                                    :compression-level 20)))))))

(defbackend-test unencodable-values-fail-naming-the-datom [b]
  (let [cfg {:store {:backend :mem :id "dc-unencodable"} :schema-flexibility :read}
        target (bk/fresh-target b)]
    (d/delete-database cfg)
    (d/create-database cfg)
    (let [conn (d/connect cfg)]
      (d/transact conn {:tx-data [{:db/id -1 :thing/weird (java.io.File. "/tmp")}]})
      (let [data (ex-data-of #(bk/backup b conn target :database-id "weird"))]
        (is (= :datacamp/unsupported-value (:datacamp/error data)))
        (is (str/includes? (str (::message data)) ":thing/weird")))
      (let [[lb :as listed] (backup/list-backups target "weird")]
        (is (= 1 (count listed)))
        (is (false? (:completed? lb)) "the failed backup lists as incomplete")
        (is (false? (:success (backup/verify-backup target (:backup-id lb) :database-id "weird")))))
      (d/release conn))))

(defn- age-backup!
  "Make an incomplete backup look `hours` old: its checkpoint's times (both backends) and
  its files' modification times (a directory only: S3 sets LastModified itself). Returns
  true when the files were back-dated too."
  [b t db-id backup-id hours]
  (let [then (- (System/currentTimeMillis) (* hours 3600 1000))
        cp (bk/backup-key db-id backup-id "checkpoint.edn")]
    (bk/write-bytes! b t cp (.getBytes (str/replace (bk/read-string-at b t cp) #"#inst \"[^\"]+\""
                                                    (str "#inst \"" (.toInstant (java.util.Date. (long then))) "\""))
                                       "UTF-8"))
    (bk/backdate! b t db-id backup-id hours)))

(defbackend-test list-and-cleanup [b]
  (let [t (bk/fresh-target b)
        conn (fx/fixture-conn "schema-on-read")
        r1 (bk/backup b conn t :database-id "sor")
        r2 (bk/backup b conn t :database-id "sor")
        make-incomplete (fn [id] (bk/delete! b t (bk/backup-key "sor" id "manifest.edn"))
                          (bk/delete! b t (bk/backup-key "sor" id "complete.marker")))
        r3 (bk/backup b conn t :database-id "sor")
        r4 (bk/backup b conn t :database-id "sor")
        [id1 id2 id3 id4] (map :backup-id [r1 r2 r3 r4])]
    (make-incomplete id3)
    (make-incomplete id4)
    (let [backdated? (age-backup! b t "sor" id3 48)
          listed (backup/list-backups t "sor")]
      (is (= (= :dir (:kind b)) backdated?))
      (is (= 4 (count listed)))
      (is (= #{id1 id2 id3 id4} (set (map :backup-id listed))))
      (is (= [true true false false]
             (map (into {} (map (juxt :backup-id :completed?)) listed) [id1 id2 id3 id4])))
      (is (= (reverse (sort-by :created-at listed)) listed) "newest first")
      (is (every? inst? (map :created-at listed)))
      (is (= (:datom-count r1) (:datom-count (first (filter #(= id1 (:backup-id %)) listed)))))
      (let [res (backup/cleanup-incomplete t "sor" :older-than-hours 24)]
        (if backdated?
          (do (is (= [id3] (:removed res)))
              (is (= [id4] (:kept-incomplete res)))
              (is (bk/backup-gone? b t "sor" id3)))
          ;; S3: the objects were just written, and a backup's last activity is its newest
          ;; object or checkpoint time, whichever is later: a back-dated checkpoint alone
          ;; does not make it stale.
          (do (is (= [] (:removed res)))
              (is (= [id4 id3] (:kept-incomplete res)) "newest first")
              (is (not (bk/backup-gone? b t "sor" id3))))))
      (is (= (if backdated? #{id1 id2 id4} #{id1 id2 id3 id4})
             (set (map :backup-id (backup/list-backups t "sor")))))
      (is (= (if backdated? [id4] [id4 id3])
             (:removed (backup/cleanup-incomplete t "sor" :older-than-hours 0))))
      (is (bk/backup-gone? b t "sor" id3))
      (is (bk/backup-gone? b t "sor" id4))
      (is (= #{id1 id2} (set (map :backup-id (backup/list-backups t "sor"))))
          "complete backups are never removed"))))

(defbackend-test original-datacamp-backups-list-and-verify [b]
  ;; The original datacamp's backups are folders on disk; for S3 they are uploaded first.
  (let [t (bk/copy-of-directory b "tests/fixtures/upstream")]
    (doseq [[db id n] [["kitchen-sink" "20261126-062656-e0d6a0" 4472]
                       ["large" "20261126-062732-a0777b" 162565]]]
      (let [[lb] (backup/list-backups t db)]
        (is (= id (:backup-id lb)))
        (is (true? (:completed? lb)))
        (is (= n (:datom-count lb))))
      (let [r (backup/verify-backup t id :database-id db :deep? true)]
        (is (true? (:success r)) (pr-str r))
        (is (= n (:datoms-verified r)))))))

(def ^:private exact-values
  "Values whose exact type a backup must keep, by attribute (schema-on-read db)."
  {:v/double 2.5
   :v/float (float 1.5)
   :v/nan Double/NaN
   :v/inf Double/NEGATIVE_INFINITY
   :v/bigdec 1.50M
   :v/bigdec-exp 1E+50M
   :v/bigint 123456789012345678901234567890N
   :v/ratio 22/7
   :v/char \ß
   :v/bytes (byte-array [0 1 -1 127 -128])
   :v/vector [1 "a" :b]
   :v/list '(1 "a" :b)
   :v/nested {:k [1 '(2 3) #{4}] "s" {:deep [[]]}}
   :v/set #{1 "two" :three}
   :v/inst #inst "1970-01-01T00:00:00.001-00:00"
   :v/uuid #uuid "ffffffff-ffff-ffff-ffff-ffffffffffff"
   :v/symbol 'ns/sym
   :v/keyword :a.b.c/d->e
   :v/string "emoji 😀 ZWJ 👩‍👩‍👧 combining é \u2028 tab\t"
   :v/long Long/MIN_VALUE})

(defn- same-value? [expected actual]
  (and (= (class expected) (class actual))
       (cond
         (bytes? expected) (java.util.Arrays/equals ^bytes expected ^bytes actual)
         (and (double? expected) (Double/isNaN expected)) (Double/isNaN actual)
         (decimal? expected) (and (= expected actual) (= (.scale ^BigDecimal expected) (.scale ^BigDecimal actual)))
         :else (= expected actual))))

(defbackend-test exact-types-survive-the-native-decoder [b]
  (let [cfg {:store {:backend :mem :id "dc-exact"} :schema-flexibility :read}
        t (bk/fresh-target b)]
    (d/delete-database cfg)
    (d/create-database cfg)
    (let [conn (d/connect cfg)]
      (d/transact conn {:tx-data [(assoc exact-values :db/id -1)]})
      (let [result (bk/backup b conn t :database-id "exact")
            {:keys [chunk-bytes]} (read-backup b t "exact" (:backup-id result))
            decoded (for [bs chunk-bytes] (datacamp.native/decode-chunk bs))
            by-attr (into {} (for [c decoded, [_ a v] (:datoms c)] [a v]))]
        (is (= (range (count decoded)) (map :chunk/id decoded)))
        (doseq [[a expected] exact-values]
          (is (same-value? expected (get by-attr a))
              (str a ": expected " (pr-str expected) " " (class expected)
                   ", got " (pr-str (get by-attr a)) " " (class (get by-attr a)))))
        (is (vector? (get-in by-attr [:v/nested :k])))
        (is (list? (get-in by-attr [:v/nested :k 1])))
        (is (set? (get-in by-attr [:v/nested :k 2]))))
      (d/release conn))))

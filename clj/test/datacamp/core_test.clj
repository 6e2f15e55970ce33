(ns datacamp.core-test
  "Backups through the real JNI path, checked by reading the bytes back with Clojure's own
  readers (clojure.data.fressian, clojure.edn) and comparing datom by datom with the
  fixtures' `:tx-order` (the order that makes Datahike's load-entities reproduce a db)."
  (:require [clojure.java.io :as io]
            [clojure.string :as str]
            [clojure.test :refer [deftest is testing]]
            [datacamp.core :as backup]
            [datacamp.fixtures :as fx]
            [datacamp.test-util :as u]
            [datahike.api :as d])
  (:import [java.io File RandomAccessFile]
           [java.security MessageDigest]))

(set! *warn-on-reflection* true)

(def fixture-names ["kitchen-sink" "schema-on-read" "no-history" "attribute-refs" "large"])

(defn- sha256-hex [^bytes bs]
  (apply str (map #(format "%02x" %) (.digest (MessageDigest/getInstance "SHA-256") bs))))

(defn- read-backup
  "The manifest (read with clojure.edn) and every chunk (read with data.fressian)."
  [root db-id backup-id]
  (let [dir (u/backup-dir root db-id backup-id)
        manifest (u/read-edn-file (io/file dir "manifest.edn"))]
    {:dir dir
     :manifest manifest
     :config (u/read-edn-file (io/file dir "config.edn"))
     :chunks (mapv u/read-chunk (u/chunk-files dir manifest))}))

(defn- check-chunks
  "Structural checks of every chunk against the manifest."
  [{:keys [dir manifest chunks]} chunk-size]
  (is (= (count chunks) (:stats/chunk-count manifest) (count (:chunks manifest))))
  (doseq [[i c meta] (map vector (range) chunks (:chunks manifest))
          :let [f (io/file dir (:chunk/key meta))
                bs (java.nio.file.Files/readAllBytes (.toPath f))]]
    (is (= {:format/type :datom-chunk :format/version "1.0.0" :chunk/id i}
           (select-keys c [:format/type :format/version :chunk/id])))
    (is (= (:chunk/checksum meta) (sha256-hex bs)) (str "checksum of chunk " i))
    (is (= (:chunk/size-bytes meta) (alength bs)))
    (is (= (:chunk/datom-count meta) (count (:datoms c))))
    (is (= (str "chunks/datoms-" i ".fressian.gz") (:chunk/key meta) (:chunk/s3-key meta)))
    (when (and chunk-size (> (count (:datoms c)) 1))
      (is (<= (alength (u/gunzip f)) chunk-size) (str "chunk " i " exceeds :chunk-size"))))
  (let [ranges (map :chunk/tx-range (:chunks manifest))]
    (is (every? (fn [[[_ hi] [lo _]]] (<= hi lo)) (partition 2 1 ranges))
        "chunk tx ranges ascend")))

(defn- backup-and-read [conn root db-id & opts]
  (let [result (apply backup/backup-to-directory conn {:path (str root)} :database-id db-id opts)]
    [result (read-backup root db-id (:backup-id result))]))

(deftest every-fixture-backs-up-in-restore-order
  (doseq [name fixture-names
          chunk-size [nil (if (= name "large") 4096 256)]]
    (testing (str name " chunk-size " chunk-size)
      (let [fixture (fx/load-fixture name)
            root (u/temp-dir)
            conn (fx/fixture-conn name)
            [result backup] (apply backup-and-read conn root name
                                   (when chunk-size [:chunk-size chunk-size]))
            datoms (mapcat :datoms (:chunks backup))
            manifest (:manifest backup)]
        (is (true? (:success result)))
        (is (uuid? (:backup-id result)))
        (is (= (count (:tx-order fixture)) (:datom-count result) (:stats/datom-count manifest)))
        (is (= (map u/norm (:tx-order fixture)) (map u/norm datoms))
            "the chunks, concatenated, are the fixture's :tx-order")
        (is (= (:max-eid fixture) (:max-eid result) (:stats/max-eid manifest)))
        (is (= (:max-tx fixture) (:max-tx result) (:stats/max-tx manifest)))
        (is (= (str (:backup-id result)) (:backup/id manifest)))
        (is (true? (:backup/completed manifest)))
        (is (= (not= name "no-history") (:backup/history? manifest)))
        (is (= "complete" (slurp (io/file (:dir backup) "complete.marker"))))
        (is (= (get-in fixture [:config :schema-flexibility])
               (get-in backup [:config :datahike/config :schema-flexibility])))
        (is (nil? (get-in backup [:config :datahike/config :store :path])) "no store details leak")
        (check-chunks backup chunk-size)
        (when chunk-size
          (is (< 100 (count (:chunks backup))) "a tiny chunk size makes many chunks"))))))

(deftest empty-database
  (doseq [cfg [{:store {:backend :mem :id "dc-empty"}}
               {:store {:backend :mem :id "dc-empty-refs"} :attribute-refs? true}]]
    (d/delete-database cfg)
    (d/create-database cfg)
    (let [conn (d/connect cfg)
          root (u/temp-dir)
          [result backup] (backup-and-read conn root "empty")]
      (is (= 0 (:datom-count result) (:chunk-count result)))
      (is (= [] (:chunks (:manifest backup))))
      (is (= 536870912 (:max-tx result)))
      (is (:success (backup/verify-backup {:path (str root)} (:backup-id result)
                                          :database-id "empty" :deep? true)))
      (d/release conn))))

(deftest current-state-backup
  (let [fixture (fx/load-fixture "kitchen-sink")
        root (u/temp-dir)
        [result backup] (backup-and-read (fx/fixture-conn "kitchen-sink") root "ks" :history? false)
        datoms (mapcat :datoms (:chunks backup))]
    (is (false? (:backup/history? (:manifest backup))))
    (is (= (count (:current fixture)) (:datom-count result)))
    (is (every? #(true? (nth % 4)) datoms) "no retractions in a current-state backup")
    (is (= (frequencies (map u/norm (:current fixture))) (frequencies (map u/norm datoms)))
        "the same datoms as the current db")))

(defn- flip-byte! [^File f pos]
  (with-open [raf (RandomAccessFile. f "rw")]
    (.seek raf (long pos))
    (let [b (.read raf)]
      (.seek raf (long pos))
      (.write raf (int (bit-xor b 0xff))))))

(deftest verify-catches-damage
  (let [root (u/temp-dir)
        target {:path (str root)}
        [result backup] (backup-and-read (fx/fixture-conn "kitchen-sink") root "ks" :chunk-size 20000)
        id (:backup-id result)
        chunk-file (fn [i] (io/file (:dir backup) (str "chunks/datoms-" i ".fressian.gz")))
        verify #(backup/verify-backup target id :database-id "ks" :deep? %)]
    (is (< 3 (:chunk-count result)))
    (testing "an intact backup verifies, shallow and deep"
      (is (= {:success true :all-chunks-present true :checksums-valid true :problems []}
             (select-keys (verify false) [:success :all-chunks-present :checksums-valid :problems])))
      (is (= (:datom-count result) (:datoms-verified (verify true)))))
    (testing "a flipped byte"
      (flip-byte! (chunk-file 1) 100)
      (let [r (verify false)]
        (is (false? (:success r)))
        (is (false? (:checksums-valid r)))
        (is (some #(str/includes? % "chunk 1 fails its SHA-256") (:problems r)) (pr-str r)))
      (flip-byte! (chunk-file 1) 100))
    (testing "a truncated chunk"
      (with-open [raf (RandomAccessFile. ^File (chunk-file 2) "rw")]
        (.setLength raf (quot (.length raf) 2)))
      (let [r (verify false)]
        (is (false? (:success r)))
        (is (some #(str/includes? % "chunk 2 has") (:problems r)) (pr-str r))))
    (testing "a missing chunk"
      (io/delete-file (chunk-file 3))
      (let [r (verify false)]
        (is (false? (:all-chunks-present r)))
        (is (some #(str/includes? % "chunk 3 is missing") (:problems r)) (pr-str r))))
    (testing "unknown backup"
      (let [e (is (thrown? clojure.lang.ExceptionInfo
                           (backup/verify-backup target "no-such-backup" :database-id "ks")))]
        (is (= :datacamp/not-found (:datacamp/error (ex-data e))))))))

(defn- ex-data-of
  "The ex-data (plus ::message) of what `f` throws, nil if it returns."
  [f]
  (try (f) nil (catch clojure.lang.ExceptionInfo e (assoc (ex-data e) ::message (ex-message e)))))

(deftest bad-arguments-are-rejected-before-writing
  (let [root (u/temp-dir)
        target {:path (str root)}
        conn (fx/fixture-conn "kitchen-sink")]
    (doseq [[what f] [["nil conn" #(backup/backup-to-directory nil target :database-id "x")]
                      ["no path" #(backup/backup-to-directory conn {} :database-id "x")]
                      ["blank path" #(backup/backup-to-directory conn {:path " "} :database-id "x")]
                      ["zero chunk size" #(backup/backup-to-directory conn target :database-id "x" :chunk-size 0)]
                      ["negative chunk size" #(backup/backup-to-directory conn target :database-id "x" :chunk-size -5)]
                      ["dotdot id" #(backup/backup-to-directory conn target :database-id "../x")]
                      ["slash id" #(backup/backup-to-directory conn target :database-id "a/b")]
                      ["no id" #(backup/backup-to-directory conn target)]
                      ["bad compression" #(backup/backup-to-directory conn target :database-id "x" :compression :lz4)]]]
      (testing what
        (is (= :datacamp/invalid-argument (:datacamp/error (ex-data-of f))))))
    (is (empty? (.list ^File root)) "nothing was written")))

(deftest unencodable-values-fail-naming-the-datom
  (let [cfg {:store {:backend :mem :id "dc-unencodable"} :schema-flexibility :read}
        root (u/temp-dir)
        target {:path (str root)}]
    (d/delete-database cfg)
    (d/create-database cfg)
    (let [conn (d/connect cfg)]
      (d/transact conn {:tx-data [{:db/id -1 :thing/weird (java.io.File. "/tmp")}]})
      (let [data (ex-data-of #(backup/backup-to-directory conn target :database-id "weird"))]
        (is (= :datacamp/unsupported-value (:datacamp/error data)))
        (is (str/includes? (str (::message data)) ":thing/weird")))
      (let [[b :as listed] (backup/list-backups target "weird")]
        (is (= 1 (count listed)))
        (is (false? (:completed? b)) "the failed backup lists as incomplete")
        (is (false? (:success (backup/verify-backup target (:backup-id b) :database-id "weird")))))
      (d/release conn))))

(defn- age-backup!
  "Make an incomplete backup look `hours` old (file times and checkpoint)."
  [root db-id backup-id hours]
  (let [dir (u/backup-dir root db-id backup-id)
        then (- (System/currentTimeMillis) (* hours 3600 1000))
        cp (io/file dir "checkpoint.edn")]
    (spit cp (str/replace (slurp cp) #"#inst \"[^\"]+\""
                          (str "#inst \"" (.toInstant (java.util.Date. (long then))) "\"")))
    (doseq [^File f (file-seq dir)] (.setLastModified f then))))

(deftest list-and-cleanup
  (let [root (u/temp-dir)
        target {:path (str root)}
        conn (fx/fixture-conn "schema-on-read")
        r1 (backup/backup-to-directory conn target :database-id "sor")
        r2 (backup/backup-to-directory conn target :database-id "sor")
        make-incomplete (fn [id] (io/delete-file (io/file (u/backup-dir root "sor" id) "manifest.edn"))
                          (io/delete-file (io/file (u/backup-dir root "sor" id) "complete.marker")))
        r3 (backup/backup-to-directory conn target :database-id "sor")
        r4 (backup/backup-to-directory conn target :database-id "sor")]
    (make-incomplete (:backup-id r3))
    (make-incomplete (:backup-id r4))
    (age-backup! root "sor" (:backup-id r3) 48)
    (let [listed (backup/list-backups target "sor")]
      (is (= 4 (count listed)))
      (is (= (set (map :backup-id [r1 r2 r3 r4])) (set (map :backup-id listed))))
      (is (= [true true false false]
             (map (into {} (map (juxt :backup-id :completed?)) listed) (map :backup-id [r1 r2 r3 r4]))))
      (is (= (reverse (sort-by :created-at listed)) listed) "newest first")
      (is (every? inst? (map :created-at listed)))
      (is (= (:datom-count r1) (:datom-count (first (filter #(= (:backup-id r1) (:backup-id %)) listed))))))
    (let [res (backup/cleanup-incomplete target "sor" :older-than-hours 24)]
      (is (= [(:backup-id r3)] (:removed res)))
      (is (= [(:backup-id r4)] (:kept-incomplete res))))
    (is (not (.exists (u/backup-dir root "sor" (:backup-id r3)))))
    (is (= #{(:backup-id r1) (:backup-id r2) (:backup-id r4)}
           (set (map :backup-id (backup/list-backups target "sor")))))
    (is (= [(:backup-id r4)] (:removed (backup/cleanup-incomplete target "sor" :older-than-hours 0))))
    (is (= #{(:backup-id r1) (:backup-id r2)} (set (map :backup-id (backup/list-backups target "sor"))))
        "complete backups are never removed")))

(deftest original-datacamp-backups-list-and-verify
  (let [root (io/file "tests/fixtures/upstream")]
    (doseq [[db id n] [["kitchen-sink" "20261126-062656-e0d6a0" 4472]
                       ["large" "20261126-062732-a0777b" 162565]]]
      (let [[b] (backup/list-backups {:path (str root)} db)]
        (is (= id (:backup-id b)))
        (is (true? (:completed? b)))
        (is (= n (:datom-count b))))
      (let [r (backup/verify-backup {:path (str root)} id :database-id db :deep? true)]
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

(deftest exact-types-survive-the-native-decoder
  (let [cfg {:store {:backend :mem :id "dc-exact"} :schema-flexibility :read}
        root (u/temp-dir)]
    (d/delete-database cfg)
    (d/create-database cfg)
    (let [conn (d/connect cfg)]
      (d/transact conn {:tx-data [(assoc exact-values :db/id -1)]})
      (let [result (backup/backup-to-directory conn {:path (str root)} :database-id "exact")
            {:keys [dir manifest]} (read-backup root "exact" (:backup-id result))
            decoded (for [f (u/chunk-files dir manifest)]
                      (datacamp.native/decode-chunk (java.nio.file.Files/readAllBytes (.toPath ^File f))))
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

(ns datacamp.hostile-test
  "Hostile or damaged backups (issue #16): a backup folder or bucket is input from outside
  the process, and a restore runs inside the application's JVM. One test per finding of
  the issue, each building its crafted bytes itself, through the real JNI path, against a
  directory and (where the finding applies to object stores) S3 (moto).

  Each test asserts the `:datacamp/error` (or the verify problem), that nothing outside the
  backup folder was read, written or deleted where links are involved, and that a refused
  restore left the target database empty. The crash-class findings (1-4, 11, 12: stack
  overflows and memory exhaustion kill a JVM outright) run in ONE child JVM with a 256 KiB
  default stack (`-Xss256k`), `-Xmx256m`, and its address space capped (`ulimit -v`) so
  that a native allocation bomb fails there too; each case reports as soon as it is done,
  so a crash shows as the cases that never reported."
  (:require [clojure.edn :as edn]
            [clojure.data.fressian :as fressian]
            [clojure.java.io :as io]
            [clojure.java.shell :as sh]
            [clojure.string :as str]
            [clojure.test :refer [deftest is testing]]
            [datacamp.backends :as bk :refer [defbackend-test]]
            [datacamp.core :as backup]
            [datacamp.fixtures :as fx]
            [datacamp.s3-server :as s3]
            [datacamp.test-util :as u]
            [datahike.api :as d])
  (:import [java.io ByteArrayOutputStream File RandomAccessFile]
           [java.nio.file Files LinkOption Path StandardWatchEventKinds WatchEvent$Kind]
           [java.nio.file.attribute FileAttribute PosixFilePermissions]
           [java.security MessageDigest]
           [java.util.concurrent TimeUnit]
           [java.util.zip GZIPOutputStream]))

(set! *warn-on-reflection* true)

;; ---------------------------------------------------------------------------------------
;; A small database, its backups, and crafting bytes
;; ---------------------------------------------------------------------------------------

(def ^:private counter (atom 0))

(def ^:private db-id "hostile")

(def ^:private schema
  [{:db/ident :person/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one}
   {:db/ident :person/friend :db/valueType :db.type/ref :db/cardinality :db.cardinality/one}])

(defn- config
  "A fresh in-memory stand-in configuration (schema on write unless `flex`)."
  ([] (config :write))
  ([flex]
   {:store {:backend :mem :id (str "hostile-" (swap! counter inc))}
    :keep-history? true :schema-flexibility flex}))

(defn- small-conn
  "A database of `n` transactions (one person each, a friend ref from the second on)."
  ([] (small-conn 20))
  ([n]
   (let [cfg (config)]
     (d/create-database cfg)
     (let [conn (d/connect cfg)]
       (d/transact conn {:tx-data schema})
       (reduce (fn [prev i]
                 (let [r (d/transact conn {:tx-data [(cond-> {:db/id "p" :person/name (str "person " i)}
                                                       prev (assoc :person/friend prev))]})]
                   (get (:tempids r) "p")))
               nil (range n))
       conn))))

(defn- backup!
  "Back `conn` up to target `t` of backend `b` with small chunks; return the backup id."
  [b conn t & opts]
  (:backup-id (apply bk/backup b conn t :database-id db-id :chunk-size 400 opts)))

(defn- k [id file] (bk/backup-key db-id id file))

(defn- sha256-hex [^bytes bs]
  (apply str (map #(format "%02x" %) (.digest (MessageDigest/getInstance "SHA-256") bs))))

(defn- gzip ^bytes [^bytes bs]
  (let [out (ByteArrayOutputStream.)]
    (with-open [z (GZIPOutputStream. out)] (.write z bs))
    (.toByteArray out)))

(defn- edn-str [x]
  (binding [*print-namespace-maps* false *print-length* nil *print-level* nil]
    (pr-str x)))

(defn- manifest [b t id]
  (edn/read-string (bk/read-string-at b t (k id "manifest.edn"))))

(defn- write-manifest! [b t id m]
  (bk/write-bytes! b t (k id "manifest.edn") (.getBytes ^String (edn-str m) "UTF-8")))

(defn- restat
  "Recompute the manifest's totals from its chunks (what an editor who wants the manifest
  to look consistent does)."
  [m]
  (assoc m
         :stats/datom-count (reduce + (map :chunk/datom-count (:chunks m)))
         :stats/size-bytes (reduce + (map :chunk/size-bytes (:chunks m)))
         :stats/chunk-count (count (:chunks m))))

(defn- replace-chunk!
  "Store `stored` as chunk `n` of backup `id` and make the manifest agree: size, checksum,
  datom count, uncompressed size (`:raw` bytes, or `:uncompressed` given, or none), totals."
  [b t id n ^bytes stored & {:keys [datoms raw uncompressed]}]
  (let [m (manifest b t id)
        ckey (:chunk/key (nth (:chunks m) n))]
    (bk/write-bytes! b t (k id ckey) stored)
    (write-manifest! b t id
                     (restat (update-in m [:chunks n]
                                        #(cond-> (assoc % :chunk/size-bytes (alength stored)
                                                        :chunk/checksum (sha256-hex stored))
                                           datoms (assoc :chunk/datom-count datoms)
                                           raw (assoc :chunk/uncompressed-bytes (alength ^bytes raw))
                                           uncompressed (assoc :chunk/uncompressed-bytes uncompressed)
                                           (and (nil? raw) (nil? uncompressed)) (dissoc :chunk/uncompressed-bytes)))))))

(defn- chunk-datoms
  "The datoms of chunk `n` of backup `id`, read with data.fressian."
  [b t id n]
  (let [m (manifest b t id)]
    (mapv vec (:datoms (u/read-chunk (bk/read-bytes b t (k id (:chunk/key (nth (:chunks m) n)))))))))

(defn- rewrite-chunk!
  "Replace chunk `n` by a chunk of `datoms` written with data.fressian (as the original
  implementation writes chunks), the manifest made to agree."
  [b t id n datoms]
  (let [raw (let [bb (fressian/write {:format/type :datom-chunk :format/version "1.0.0"
                                      :format/serialization :fressian :chunk/id n
                                      :datoms (mapv vec datoms)})
                  out (byte-array (.remaining bb))]
              (.get bb out)
              out)]
    (replace-chunk! b t id n (gzip raw) :datoms (count datoms) :raw raw)))

;; Fressian bytes by hand (org.fressian.impl.Codes), for what no writer produces.

(defn- ba ^bytes [& parts]
  (let [out (ByteArrayOutputStream.)]
    (doseq [p parts]
      (if (bytes? p) (.write out ^bytes p) (.write out (int (bit-and (long p) 0xff)))))
    (.toByteArray out)))

(declare flong)

(defn- fstr ^bytes [^String s]
  (let [bs (.getBytes s "UTF-8")]
    (if (< (alength bs) 8)
      (ba (+ 0xDA (alength bs)) bs)
      (ba 0xE3 (flong (alength bs)) bs))))

(defn- fkw ^bytes [ns n] (ba 0xCA (if ns (fstr ns) (ba 0xF7)) (fstr n)))

(defn- flong ^bytes [^long n]
  (if (<= 0 n 63)
    (ba n)
    (let [bb (java.nio.ByteBuffer/allocate 8)] (.putLong bb n) (ba 0xF8 (.array bb)))))

(defn- fchunk
  "A chunk map `{:format/type :datom-chunk :chunk/id id :datoms <datoms-bytes>}`."
  ^bytes [id ^bytes datoms]
  (ba 0xC0 0xEA (fkw "format" "type") (fkw nil "datom-chunk") (fkw "chunk" "id") (flong id)
      (fkw nil "datoms") datoms))

(def ^:private tx1 (inc 536870912))

(defn- laughs-chunk
  "Chunk `id` holding one datom whose value is seven cached lists, each of 32 references
  to the previous one: 32^6 values if copied (\"billion laughs\"), 250 bytes."
  ^bytes [id e tx]
  (let [levels (cons (apply ba 0xCD 0xEC 32 (repeat 32 0xF7))
                     (for [l (range 6)] (apply ba 0xCD 0xEC 32 (repeat 32 (+ 0x80 l)))))]
    (fchunk id (ba 0xE5 (ba 0xE9 (flong e) (fkw "person" "name") (apply ba 0xEB levels) (flong tx) 0xF5)))))

(defn- references-chunk
  "Chunk `id` caching one datom and referring to it `n` times with one byte each (an open
  list): n datoms of 8 bytes each if copied."
  ^bytes [id n e tx]
  (let [out (ByteArrayOutputStream.)]
    (.write out (fchunk id (ba 0xEE 0xCD 0xE9 (flong e) (fkw "person" "name") (fstr "x") (flong tx) 0xF5)))
    (let [refs (byte-array 1000000 (unchecked-byte 0x80))]
      (dotimes [_ (quot n 1000000)] (.write out refs)))
    (.toByteArray out)))

(defn- nested-chunk
  "Chunk `id` holding one datom whose value is a list nested `depth` deep."
  ^bytes [id depth e tx]
  (fchunk id (ba 0xE5 (ba 0xE9 (flong e) (fkw "person" "name")
                          (apply ba (concat (repeat depth 0xE5) [0x01]))
                          (flong tx) 0xF5))))

;; ---------------------------------------------------------------------------------------
;; Outcomes
;; ---------------------------------------------------------------------------------------

(defn- caught
  "Run `f`; return the ex-info's data (with `::message`) or `{::result r}`; any other
  throwable is returned as `{::raw class}` (a test failure: every error must be ex-info)."
  [f]
  (try
    {::result (f)}
    (catch clojure.lang.ExceptionInfo e
      (assoc (ex-data e) ::message (.getMessage e)))
    (catch Throwable e
      {::raw (str (class e) ": " (.getMessage e))})))

(defn- bounded
  "Run `f` on another thread and wait at most `secs` seconds for it (a hang fails the test
  instead of the suite)."
  [secs f]
  (let [fut (future (caught f))
        r (deref fut (* 1000 secs) ::timed-out)]
    (when (= ::timed-out r) (future-cancel fut))
    r))

(defn- restore-refused
  "Restore backup `id` into a new empty database; return the error data (nil if it
  succeeded) after asserting that the target holds nothing."
  [b t id & opts]
  (let [conn (fx/empty-conn (config))
        r (caught #(apply bk/restore b conn t id :database-id db-id opts))
        n (count (d/datoms @conn :eavt))]
    (fx/dispose! conn)
    (is (nil? (::result r)) "the restore is refused")
    (is (nil? (::raw r)) (str "no raw exception: " (::raw r)))
    (is (zero? n) (str "a refused restore leaves the target empty, it holds " n " datoms"))
    (when-not (::result r) r)))

(defn- verify-problems [t id & {:keys [deep?] :or {deep? true}}]
  (let [r (backup/verify-backup t id :database-id db-id :deep? deep?)]
    (is (false? (:success r)) "verify never calls it good")
    (:problems r)))

(defn- some-problem? [re problems]
  (boolean (some #(re-find re %) problems)))

;; ---------------------------------------------------------------------------------------
;; The child JVM for the crash-class findings
;; ---------------------------------------------------------------------------------------

(defn- child-cases
  "Prepare every crash-class case (targets, crafted backups) and return them as
  `[{:id … :op sym :args […] :stack-kb n} …]` with `:expect`, a function of the outcome."
  []
  (let [dir-root (u/temp-dir)
        deep (fn [^File base levels]
               (let [p (io/file base (str/join "/" (repeat levels "d")))]
                 (Files/createDirectories (.toPath p) (make-array FileAttribute 0))
                 p))
        cases (atom [])
        add! (fn [id op args & {:keys [stack-kb]}]
               (swap! cases conj {:id id :op op :args args :stack-kb stack-kb}))
        backed-up (fn [b]
                    (let [t (bk/fresh-target b) conn (small-conn) id (str (backup! b conn t))]
                      [t id]))
        restore-args (fn [b t id & opts] (into [(:kind b) t id db-id (config)] opts))]
    ;; 1. Deep folders anywhere below {path}/{database-id}/.
    (let [t {:path (str (io/file dir-root "deep"))}
          _ (io/make-parents (io/file (:path t) "x"))
          id (str (backup! bk/dir (small-conn) t))]
      (deep (io/file (:path t) db-id "junk") 1500)
      (deep (io/file (:path t) db-id id "chunks" "junk") 1500)
      (add! :f1-list 'datacamp.core/list-backups [t db-id])
      (add! :f1-verify 'datacamp.core/verify-backup [t id :database-id db-id :deep? true])
      (add! :f1-cleanup 'datacamp.core/cleanup-incomplete [t db-id :older-than-hours 0]))
    (let [root (io/file dir-root "deep-resume")
          t {:path (str root)}
          r (backup/backup-to-directory (fx/fixture-conn "kitchen-sink") t :database-id "crash" :chunk-size 3000)
          id (str (:backup-id r))
          dir (u/backup-dir root "crash" id)]
      (io/delete-file (io/file dir "manifest.edn"))
      (io/delete-file (io/file dir "complete.marker"))
      (doseq [^File f (.listFiles (io/file dir "chunks")) :when (re-find #"-([3-9]|\d\d+)\." (.getName f))]
        (io/delete-file f))
      (deep (io/file dir "chunks" "junk") 1500)
      (add! :f1-resume 'datacamp.hostile-child/resume-fixture [t id "crash" "kitchen-sink"])
      (add! :f1-resumed-verifies 'datacamp.core/verify-backup [t id :database-id "crash" :deep? true]))
    ;; 2. Cache-reference bombs; 11. gzip bombs (both backends).
    (doseq [b [bk/dir bk/s3]]
      (let [[t id] (backed-up b)
            raw (laughs-chunk 1 5 tx1)]
        (replace-chunk! b t id 1 (gzip raw) :datoms 1 :raw raw)
        (add! [:f2-laughs-verify (:kind b)] 'datacamp.core/verify-backup [t id :database-id db-id :deep? true])
        (add! [:f2-laughs-restore (:kind b)] 'datacamp.hostile-child/restore-into-empty
              (restore-args b t id :verify-first? true)))
      (let [[t id] (backed-up b)
            raw (references-chunk 1 20000000 5 tx1)]
        (replace-chunk! b t id 1 (gzip raw) :datoms 20000001 :raw raw)
        (add! [:f2-refs-verify (:kind b)] 'datacamp.core/verify-backup [t id :database-id db-id :deep? true])
        (add! [:f2-refs-restore (:kind b)] 'datacamp.hostile-child/restore-into-empty (restore-args b t id)))
      (let [[t id] (backed-up b)
            out (ByteArrayOutputStream.)
            zeros (byte-array (bit-shift-left 1 20))]
        ;; 1.5 GiB of zeros, 1.5 MB of gzip; the manifest keeps the chunk's real size.
        (with-open [z (GZIPOutputStream. out)]
          (dotimes [_ 1536] (.write z zeros)))
        (replace-chunk! b t id 1 (.toByteArray out) :uncompressed 2000)
        (add! [:f11-verify (:kind b)] 'datacamp.core/verify-backup [t id :database-id db-id :deep? true])
        (add! [:f11-restore (:kind b)] 'datacamp.hostile-child/restore-into-empty (restore-args b t id))
        (when (= :dir (:kind b))
          (let [[t2 id2] (backed-up b)]
            (replace-chunk! b t2 id2 1 (.toByteArray out))
            (add! :f11-unknown-size-restore 'datacamp.hostile-child/restore-into-empty
                  (restore-args b t2 id2))))))
    ;; 3. Metadata files: a sparse 1 GB manifest, a manifest linked to /dev/zero, a 33 MB one on S3.
    (let [[t id] (backed-up bk/dir)
          f (io/file (:path t) (k id "manifest.edn"))]
      (with-open [raf (RandomAccessFile. f "rw")]
        (.setLength raf 0)
        (.setLength raf (bit-shift-left 1 30)))
      (add! :f3-sparse-list 'datacamp.core/list-backups [t db-id])
      (add! :f3-sparse-verify 'datacamp.core/verify-backup [t id :database-id db-id])
      (add! :f3-sparse-restore 'datacamp.hostile-child/restore-into-empty (restore-args bk/dir t id)))
    (let [[t id] (backed-up bk/dir)
          f (io/file (:path t) (k id "manifest.edn"))]
      (io/delete-file f)
      (Files/createSymbolicLink (.toPath f) (.toPath (io/file "/dev/zero")) (make-array FileAttribute 0))
      (add! :f3-zero-list 'datacamp.core/list-backups [t db-id])
      (add! :f3-zero-verify 'datacamp.core/verify-backup [t id :database-id db-id])
      (add! :f3-zero-restore 'datacamp.hostile-child/restore-into-empty (restore-args bk/dir t id)))
    (let [[t id] (backed-up bk/s3)]
      (bk/write-bytes! bk/s3 t (k id "manifest.edn") (byte-array (* 33 1024 1024) (byte 32)))
      (add! :f3-s3-list 'datacamp.core/list-backups [t db-id])
      (add! :f3-s3-restore 'datacamp.hostile-child/restore-into-empty (restore-args bk/s3 t id)))
    ;; 4. Deep nesting on small stacks: a chunk value nested 500 deep, a config.edn nested
    ;;    509 deep (restored on a 128 KiB thread), and the deepest accepted value round trip.
    (let [[t id] (backed-up bk/dir)
          raw (nested-chunk 1 500 5 tx1)]
      (replace-chunk! bk/dir t id 1 (gzip raw) :datoms 1 :raw raw)
      (add! :f4-value-verify 'datacamp.core/verify-backup [t id :database-id db-id :deep? true] :stack-kb 256)
      (add! :f4-value-restore 'datacamp.hostile-child/restore-into-empty (restore-args bk/dir t id) :stack-kb 256))
    (let [[t id] (backed-up bk/dir)
          cfg-key (k id "config.edn")
          cfg (edn/read-string (bk/read-string-at bk/dir t cfg-key))
          nested (str (apply str (repeat 509 "[")) (apply str (repeat 509 "]")))]
      (bk/write-bytes! bk/dir t cfg-key
                       (.getBytes (str/replace (edn-str (assoc cfg :datahike/config ::here)) (str ::here) nested) "UTF-8"))
      (add! :f4-config-restore 'datacamp.hostile-child/restore-into-empty (restore-args bk/dir t id) :stack-kb 128))
    (let [t (bk/fresh-target bk/dir)
          cfg (config :read)
          _ (d/create-database cfg)
          conn (d/connect cfg)
          deepest (reduce (fn [v _] [v]) 1 (range 100))
          _ (d/transact conn {:tx-data [[:db/add "e" :x/deep deepest] [:db/add "e" :x/name "deep"]]})
          id (str (:backup-id (backup/backup-to-directory conn t :database-id db-id)))]
      (add! :f4-deepest-restore 'datacamp.hostile-child/restore-into-empty
            [:dir t id db-id (config :read)] :stack-kb 256))
    ;; 12. A backup in the original's format (EAVT, sorted before loading) with a bomb.
    (let [[t id] (backed-up bk/dir)
          raw (references-chunk 1 20000000 5 tx1)
          tmp (u/temp-dir)]
      (write-manifest! bk/dir t id (dissoc (manifest bk/dir t id) :format/chunk-order))
      (replace-chunk! bk/dir t id 1 (gzip raw) :datoms 20000001)
      (add! :f12-bomb-restore 'datacamp.hostile-child/restore-into-empty
            (restore-args bk/dir t id :tmp-dir (str tmp) :sort-buffer-bytes 65536))
      (add! :f12-tmp-dir 'datacamp.hostile-child/list-dir [(str tmp)]))
    (let [[t id] (backed-up bk/dir)
          tmp (u/temp-dir)]
      (write-manifest! bk/dir t id (dissoc (manifest bk/dir t id) :format/chunk-order))
      (add! :f12-good-restore 'datacamp.hostile-child/restore-into-empty
            (restore-args bk/dir t id :tmp-dir (str tmp) :sort-buffer-bytes 65536))
      (add! :f12-good-tmp-dir 'datacamp.hostile-child/list-dir [(str tmp)]))
    @cases))

(defn- run-child!
  "Run `cases` in a child JVM (-Xss256k, -Xmx256m, address space capped); return
  `{:exit n :results {id outcome} :done? bool :out text}`."
  [cases]
  (let [dir (u/temp-dir)
        cases-file (io/file dir "cases.edn")
        results-file (io/file dir "results.edn")
        java (str (System/getProperty "java.home") "/bin/java")
        cmd (str "ulimit -v " (* 4 1024 1024) " && exec '" java "' -Xss256k -Xmx256m"
                 " -XX:CompressedClassSpaceSize=64m -XX:ReservedCodeCacheSize=64m -XX:+UseSerialGC"
                 " -cp '" (System/getProperty "java.class.path") "'"
                 " clojure.main -m datacamp.hostile-child '" cases-file "' '" results-file "'")
        _ (spit cases-file (edn-str (mapv #(dissoc % :expect) cases)))
        pb (doto (ProcessBuilder. ^"[Ljava.lang.String;" (into-array String ["bash" "-c" cmd]))
             (.redirectErrorStream true))
        _ (.put (.environment pb) "MALLOC_ARENA_MAX" "2")
        p (.start pb)
        out (future (slurp (.getInputStream p)))
        finished? (.waitFor p 900 TimeUnit/SECONDS)]
    (when-not finished? (.destroyForcibly p))
    (let [lines (when (.exists results-file)
                  (map edn/read-string (str/split-lines (slurp results-file))))]
      {:exit (if finished? (.exitValue p) :timed-out)
       :done? (boolean (some :done lines))
       :results (into {} (keep (fn [l] (when (:id l) [(:id l) (:outcome l)]))) lines)
       :out (deref out 10000 "")})))

(def ^:private child
  "The crash-class cases, run once in the child JVM (on first use)."
  (delay
    (s3/start!)
    (let [started (System/currentTimeMillis)
          cases (child-cases)
          prepared (System/currentTimeMillis)
          r (run-child! cases)]
      (println (format "hostile child JVM: %d cases prepared in %.1f s, run in %.1f s (exit %s, %d reported)"
                       (count cases) (/ (- prepared started) 1000.0)
                       (/ (- (System/currentTimeMillis) prepared) 1000.0) (:exit r) (count (:results r))))
      r)))

(defn- child-outcome
  "The outcome of child case `id`, after checking the child survived every case."
  [id]
  (let [{:keys [exit done? results out]} @child]
    (is (= 0 exit) (str "the child JVM survived every case: " (subs out (max 0 (- (count out) 3000)))))
    (is done? "every case reported")
    (let [o (get results id)]
      (is (some? o) (str "case " id " reported (it is the one that crashed the JVM otherwise)"))
      (is (nil? (:raw o)) (str "no raw exception: " (:raw o) " " (:message o)))
      o)))

(defn- child-refused
  "A child restore that must be refused with `kind`: the target stayed empty, the message
  is short."
  [id kind]
  (let [o (child-outcome id)]
    (is (= kind (:error o)) (str id ": " (:message o)))
    (is (= 0 (:datacamp.hostile-child/target-datoms (:data o))) "the target holds nothing")
    (is (< (:message-length o 0) 4000) "the message is short")
    o))

(defn- child-problem
  "A child verify that must report a problem matching `re`."
  [id re]
  (let [r (:result (child-outcome id))]
    (is (false? (:success r)) (str id " is not good"))
    (is (some-problem? re (:problems r)) (str id ": " (pr-str (:problems r))))
    r))

;; ---------------------------------------------------------------------------------------
;; 1-4: crash class (child JVM)
;; ---------------------------------------------------------------------------------------

(deftest finding-01-deep-folders-never-overflow-the-stack
  (let [[listed] (:result (child-outcome :f1-list))]
    (is (true? (:completed? listed)) "the backup lists, the 1,500 nested folders are ignored"))
  (is (true? (:success (:result (child-outcome :f1-verify)))))
  (is (= [] (:removed (:result (child-outcome :f1-cleanup)))))
  (is (true? (:resumed? (:result (child-outcome :f1-resume)))) "resume walks its temporaries iteratively")
  (is (true? (:success (:result (child-outcome :f1-resumed-verifies))))))

(defbackend-test finding-02-cache-reference-bombs-are-refused [b]
  (let [kind (:kind b)]
    (child-problem [:f2-laughs-verify kind] #"decompression bomb")
    (child-refused [:f2-laughs-restore kind] :datacamp/corrupt)
    (child-problem [:f2-refs-verify kind] #"decompression bomb")
    (child-refused [:f2-refs-restore kind] :datacamp/corrupt)))

(deftest finding-03-huge-and-endless-metadata-files-are-refused
  (testing "a sparse 1 GB manifest.edn (0 bytes on disk)"
    (let [[listed] (:result (child-outcome :f3-sparse-list))]
      (is (false? (:completed? listed)))
      (is (some-problem? #"more than the" (:problems listed))))
    (child-problem :f3-sparse-verify #"more than the")
    (child-refused :f3-sparse-restore :datacamp/corrupt))
  (testing "manifest.edn linked to /dev/zero"
    (let [[listed] (:result (child-outcome :f3-zero-list))]
      (is (some-problem? #"symbolic link" (:problems listed)) (pr-str listed)))
    (child-problem :f3-zero-verify #"symbolic link")
    (child-refused :f3-zero-restore :datacamp/corrupt))
  (testing "S3: a 33 MB manifest object"
    (let [[listed] (:result (child-outcome :f3-s3-list))]
      (is (some-problem? #"more than the" (:problems listed))))
    (child-refused :f3-s3-restore :datacamp/corrupt)))

(deftest finding-04-deep-nesting-stays-within-a-small-stack
  (child-problem :f4-value-verify #"nesting deeper")
  (child-refused :f4-value-restore :datacamp/corrupt)
  (let [o (child-refused :f4-config-restore :datacamp/corrupt)]
    (is (re-find #"config.edn" (str (:datacamp/key (:data o))))))
  (let [r (:result (child-outcome :f4-deepest-restore))]
    (is (true? (:success r)) "a value nested 100 deep (the limit) backs up and restores on a 256 KiB stack")
    (is (pos? (:datacamp.hostile-child/target-datoms r))))
  (testing "one level deeper is refused by the backup: what a backup accepts, a restore reads"
    (let [cfg (config :read)
          _ (d/create-database cfg)
          conn (d/connect cfg)]
      (d/transact conn {:tx-data [[:db/add "e" :x/deep (reduce (fn [v _] [v]) 1 (range 101))]]})
      (let [e (caught #(backup/backup-to-directory conn (bk/fresh-target bk/dir) :database-id db-id))]
        (is (= :datacamp/unsupported-value (:datacamp/error e)) (pr-str e))
        (is (re-find #"deeper than 100" (str (::message e))))))))

(defbackend-test finding-11-decompression-stops-at-the-manifests-size [b]
  (child-problem [:f11-verify (:kind b)] #"decompresses to more than 2000 bytes")
  (child-refused [:f11-restore (:kind b)] :datacamp/corrupt)
  (when (= :dir (:kind b))
    (let [o (child-refused :f11-unknown-size-restore :datacamp/corrupt)]
      (is (re-find #"more than 268435456 bytes" (:message o)) "without a recorded size, 256 MiB at most"))))

(deftest finding-12-original-format-restores-are-bounded-and-spill-where-asked
  (child-refused :f12-bomb-restore :datacamp/corrupt)
  (is (empty? (:result (child-outcome :f12-tmp-dir))) "nothing left in :tmp-dir")
  (let [r (:result (child-outcome :f12-good-restore))]
    (is (true? (:success r)) "a backup in the original's format restores, sorting in :tmp-dir")
    (is (= :datacamp-original (:format r))))
  (is (empty? (:result (child-outcome :f12-good-tmp-dir)))))

;; ---------------------------------------------------------------------------------------
;; 5-10: links, permissions, FIFOs (directories)
;; ---------------------------------------------------------------------------------------

(defn- interrupted!
  "Back up a small db to a fresh directory target and make the backup look interrupted
  (manifest, marker and chunks from 2 on removed); return [conn target id dir]."
  []
  (let [conn (small-conn)
        t (bk/fresh-target bk/dir)
        id (str (backup! bk/dir conn t))
        dir (u/backup-dir (:path t) db-id id)]
    (io/delete-file (io/file dir "manifest.edn"))
    (io/delete-file (io/file dir "complete.marker"))
    (doseq [^File f (.listFiles (io/file dir "chunks")) :when (not (re-find #"-[01]\." (.getName f)))]
      (io/delete-file f))
    [conn t id dir]))

(defn- snapshot
  "Every file under `root` with its bytes and modification time."
  [^File root]
  (into (sorted-map)
        (for [^File f (file-seq root) :when (.isFile f)]
          [(str f) [(vec (Files/readAllBytes (.toPath f))) (.lastModified f)]])))

(defn- link! [^File from ^File to]
  (Files/createSymbolicLink (.toPath from) (.toPath to) (make-array FileAttribute 0)))

(defn- outside-with-temporaries
  "A folder outside every backup holding a secret and files named like temporaries."
  ^File []
  (let [d (u/temp-dir)]
    (spit (io/file d "secret.key") "-----BEGIN PRIVATE KEY----- SECRET")
    (spit (io/file d "datoms-0.fressian.gz.tmp-1") "someone else's")
    (spit (io/file d "manifest.edn.tmp-2") "someone else's")
    d))

(deftest finding-05-resume-never-removes-temporaries-outside-the-backup
  (let [[conn t id ^File dir] (interrupted!)
        outside (outside-with-temporaries)
        before (snapshot outside)]
    (link! (io/file dir "chunks" "link") outside)
    (let [r (bounded 120 #(backup/resume-backup conn t id :database-id db-id))]
      (is (true? (:resumed? (::result r))) (pr-str r)))
    (is (= before (snapshot outside)) "nothing outside was deleted or written")
    (is (Files/isSymbolicLink (.toPath (io/file dir "chunks" "link"))) "the link itself stays")
    (is (true? (:success (backup/verify-backup t id :database-id db-id :deep? true))))))

(deftest finding-06-resume-never-writes-through-a-linked-chunks-folder
  (let [[conn t id ^File dir] (interrupted!)
        outside (outside-with-temporaries)
        chunks (io/file dir "chunks")]
    (doseq [^File f (.listFiles chunks)] (io/copy f (io/file outside (.getName f))))
    (let [before (snapshot outside)]
      (doseq [^File f (.listFiles chunks)] (io/delete-file f))
      (io/delete-file chunks)
      (link! chunks outside)
      (let [r (bounded 120 #(backup/resume-backup conn t id :database-id db-id))]
        (is (= :datacamp/corrupt (:datacamp/error r)) (pr-str r))
        (is (re-find #"symbolic link" (str (::message r)))))
      (is (= before (snapshot outside)) "no chunk landed outside the backup")
      (is (false? (:completed? (first (backup/list-backups t db-id))))))))

(deftest finding-07-links-inside-a-backup-are-never-read-through
  (let [other-t (bk/fresh-target bk/dir)
        other-id (str (backup! bk/dir (small-conn 25) other-t))
        other-chunk (io/file (:path other-t) (k other-id "chunks/datoms-1.fressian.gz"))
        outside (outside-with-temporaries)
        before (snapshot outside)]
    (testing "a chunk linked to another database's chunk"
      (let [t (bk/fresh-target bk/dir)
            id (str (backup! bk/dir (small-conn) t))
            f (io/file (:path t) (k id "chunks/datoms-1.fressian.gz"))]
        (io/delete-file f)
        (link! f other-chunk)
        (is (some-problem? #"chunk 1 is missing" (verify-problems t id)))
        (let [e (restore-refused bk/dir t id)]
          (is (= :datacamp/corrupt (:datacamp/error e)))
          (is (re-find #"chunk 1 is missing" (::message e)) "verify and restore say the same"))))
    (testing "a linked chunks/ folder"
      (let [t (bk/fresh-target bk/dir)
            id (str (backup! bk/dir (small-conn) t))
            chunks (io/file (:path t) (k id "chunks"))
            copy (u/temp-dir)]
        (doseq [^File f (.listFiles chunks)] (io/copy f (io/file copy (.getName f))) (io/delete-file f))
        (io/delete-file chunks)
        (link! chunks copy)
        (is (some-problem? #"chunk 0 is missing" (verify-problems t id)))
        (is (= :datacamp/corrupt (:datacamp/error (restore-refused bk/dir t id))))))
    (testing "manifest.edn and config.edn linked to a key file"
      (let [t (bk/fresh-target bk/dir)
            id (str (backup! bk/dir (small-conn) t))]
        (doseq [file ["manifest.edn" "config.edn"]]
          (let [f (io/file (:path t) (k id file))]
            (io/delete-file f)
            (link! f (io/file outside "secret.key"))))
        (let [problems (verify-problems t id)]
          (is (some-problem? #"symbolic link" problems))
          (is (not (some-problem? #"SECRET|PRIVATE" problems)) "the key is never quoted"))
        (let [e (restore-refused bk/dir t id)]
          (is (= :datacamp/corrupt (:datacamp/error e)))
          (is (not (re-find #"SECRET|PRIVATE" (str e)))))))
    (is (= before (snapshot outside)))))

(defn- first-entry
  "The first entry of folder `dir`, or else the first one created in it within 60 s."
  ^Path [^Path dir]
  (or (first (iterator-seq (.iterator (Files/list dir))))
      (with-open [w (.newWatchService (.getFileSystem dir))]
        (.register dir w ^"[Ljava.nio.file.WatchEvent$Kind;" (into-array WatchEvent$Kind [StandardWatchEventKinds/ENTRY_CREATE]))
        ;; Created between the listing and the registration?
        (or (first (iterator-seq (.iterator (Files/list dir))))
            (when-let [^java.nio.file.WatchKey key (.poll w 60 TimeUnit/SECONDS)]
              (when-let [^java.nio.file.WatchEvent e (first (.pollEvents key))]
                (.resolve dir ^Path (.context e))))))))

(deftest finding-08-sort-spills-are-readable-by-the-owner-only
  (let [tmp (.toPath (u/temp-dir))
        seen (promise)
        perms (fn [^Path p] (PosixFilePermissions/toString (Files/getPosixFilePermissions p (make-array LinkOption 0))))
        await-run (fn []
                    ;; Mid-backup: the sorter's folder and a run inside it, as they are.
                    (when-let [sort-dir (first-entry tmp)]
                      (deliver seen {:dir (perms sort-dir) :run (some-> (first-entry sort-dir) perms)})))
        n 300000
        datoms (map (fn [i]
                      (when (= i 200000) (await-run))
                      [(inc i) :x/name (str "a value that fills the sort buffer " i) (+ tx1 (quot i 1000)) true])
                    (range n))
        opts {:database-id "spill" :history? true :ref-attrs [] :tx-instant-attr nil :skip-tx0? false
              :max-eid n :max-tx (+ tx1 300) :sort-buffer-bytes 65536 :tmp-dir (str tmp)}
        r (backup/backup-datoms (bk/fresh-target bk/dir) opts datoms {})]
    (is (= n (:datom-count r)))
    (is (= {:dir "rwx------" :run "rw-------"} (deref seen 0 :no-spill-seen)))
    (is (empty? (iterator-seq (.iterator (Files/list tmp)))) "the spills are gone afterwards")))

(defn- fifo! [^File f]
  (when (.exists f) (io/delete-file f))
  (is (= 0 (:exit (sh/sh "mkfifo" (str f))))))

(deftest finding-09-fifos-never-block
  (let [t (bk/fresh-target bk/dir)
        id (str (backup! bk/dir (small-conn) t))]
    (fifo! (io/file (:path t) (k id "manifest.edn")))
    (let [r (bounded 60 #(backup/list-backups t db-id))]
      (is (some-problem? #"FIFO" (:problems (first (::result r)))) (pr-str r)))
    (is (some-problem? #"FIFO" (::result (bounded 60 #(:problems (backup/verify-backup t id :database-id db-id))))))
    (is (= :datacamp/corrupt (:datacamp/error (::result (bounded 60 #(restore-refused bk/dir t id)))))))
  (let [t (bk/fresh-target bk/dir)
        id (str (backup! bk/dir (small-conn) t))]
    (fifo! (io/file (:path t) (k id "chunks/datoms-1.fressian.gz")))
    (is (some-problem? #"chunk 1 is missing"
                       (::result (bounded 60 #(:problems (backup/verify-backup t id :database-id db-id :deep? true))))))
    (is (= :datacamp/corrupt (:datacamp/error (::result (bounded 60 #(restore-refused bk/dir t id))))))))

(deftest finding-10-self-links-do-not-explode-resume
  (let [[conn t id ^File dir] (interrupted!)]
    (link! (io/file dir "chunks" "a") (io/file "."))
    (link! (io/file dir "chunks" "b") (io/file ".."))
    (let [r (bounded 120 #(backup/resume-backup conn t id :database-id db-id))]
      (is (true? (:resumed? (::result r))) (pr-str r)))
    (is (true? (:success (backup/verify-backup t id :database-id db-id :deep? true))))))

;; ---------------------------------------------------------------------------------------
;; 13-22
;; ---------------------------------------------------------------------------------------

(defbackend-test finding-13-huge-numbers-and-tiny-chunks-cost-linear-time [b]
  (let [t (bk/fresh-target b)
        id (str (backup! b (small-conn) t))]
    (write-manifest! b t id (assoc (manifest b t id) :stats/max-eid ::big))
    (let [text (str/replace (bk/read-string-at b t (k id "manifest.edn")) (str ::big) (apply str (repeat 5000000 "7")))]
      (bk/write-bytes! b t (k id "manifest.edn") (.getBytes ^String text "UTF-8")))
    (let [r (bounded 120 #(backup/verify-backup t id :database-id db-id))]
      (is (some-problem? #"longer than the 4096" (:problems (::result r))) (pr-str r)))
    (is (= :datacamp/corrupt (:datacamp/error (restore-refused b t id)))))
  (when (= :dir (:kind b))
    (testing ":chunk-size 1: one chunk per datom, the checkpoint stays cheap"
      (let [t (bk/fresh-target b)
            r (bounded 300 #(bk/backup b (small-conn 400) t :database-id db-id :chunk-size 1))
            res (::result r)]
        (is (< 800 (:chunk-count res)) (pr-str r))
        (is (true? (:success (backup/verify-backup t (:backup-id res) :database-id db-id :deep? true))))))))

(defbackend-test finding-14-error-messages-never-echo-whole-tokens [b]
  (let [t (bk/fresh-target b)
        id (str (backup! b (small-conn) t))]
    (bk/write-bytes! b t (k id "manifest.edn") (byte-array (* 10 1024 1024) (byte (int \:))))
    (let [problems (verify-problems t id :deep? false)]
      (is (seq problems))
      (is (every? #(< (count %) 2500) problems) (str (map count problems))))
    (let [e (restore-refused b t id)]
      (is (< (count (::message e)) 2500)))
    (is (every? #(< (count %) 2500) (:problems (first (backup/list-backups t db-id)))))))

(defbackend-test finding-15-cleanup-never-deletes-a-finished-backup [b]
  (let [t (bk/fresh-target b)
        conn (small-conn)
        id (backup! b conn t)
        sid (str id)
        mkey (k sid "manifest.edn")
        files (bk/keys-under b t db-id)]
    (bk/flip-byte! b t mkey 5)
    (let [[listed] (backup/list-backups t db-id)]
      (is (false? (:completed? listed)))
      (is (some-problem? #"repair-manifest" (:problems listed))))
    (let [r (backup/cleanup-incomplete t db-id :older-than-hours 0)]
      (is (= [id] (:damaged r)))
      (is (= [] (:removed r)))
      (is (= files (bk/keys-under b t db-id)) "every file of the finished backup is still there"))
    (is (= :datacamp/corrupt
           (:datacamp/error (caught #(backup/resume-backup conn t sid :database-id db-id))))
        "resume does not call it complete, nor restart it")
    (let [r (backup/repair-manifest t id :database-id db-id)]
      (is (true? (:repaired? r)))
      (is (true? (:success (backup/verify-backup t id :database-id db-id :deep? true))))
      (let [target (fx/empty-conn (config))]
        (is (true? (:success (bk/restore b target t id :database-id db-id))))
        (is (= (count (d/datoms (d/history @conn) :eavt)) (count (d/datoms (d/history @target) :eavt))))
        (fx/dispose! target)))))

(defbackend-test finding-16-manifest-inconsistencies-are-refused [b]
  (let [t (bk/fresh-target b)
        id (str (backup! b (small-conn) t))
        good (manifest b t id)
        _ (is (< 3 (count (:chunks good))))
        cases [["swapped entries" #"chunk ids must be" :datacamp/corrupt
                (update good :chunks #(assoc % 0 (nth % 1) 1 (nth % 0)))]
               ["an entry listed twice" #"chunk ids must be" :datacamp/corrupt
                (restat (update good :chunks #(assoc % 1 (nth % 0))))]
               ["the last entry dropped, totals adjusted" #"chunk-count is" :datacamp/corrupt
                (-> good (update :chunks pop) restat (assoc :stats/chunk-count (count (:chunks good))))]
               ["the last entry dropped, every stat adjusted" #"tx-range|not in the manifest" :datacamp/corrupt
                (-> good (update :chunks pop) restat)]
               ["a negative count" #"negative" :datacamp/corrupt (assoc good :stats/datom-count -5)]
               ["format version 99" #"format/version" :datacamp/unsupported-value (assoc good :format/version "99.0.0")]
               ["an unknown compression" #"compression" :datacamp/unsupported-value (assoc good :format/compression :lz4)]
               ["encryption" #"encryption" :datacamp/unsupported-value (assoc good :format/encryption :aes-256-gcm)]
               ["an unknown backup type" #"backup/type" :datacamp/unsupported-value (assoc good :backup/type :differential)]
               ["another backup's id" #"names backup" :datacamp/corrupt (assoc good :backup/id "../../evil")]]]
    (doseq [[what re kind m] cases]
      (testing what
        (write-manifest! b t id m)
        (is (some-problem? re (verify-problems t id)) what)
        (let [e (restore-refused b t id)]
          (is (= kind (:datacamp/error e)) (str what ": " (::message e))))))
    (testing "a chunk id of -1 is printed as -1"
      (write-manifest! b t id (assoc-in good [:chunks 0 :chunk/id] -1))
      (let [e (restore-refused b t id)]
        (is (re-find #"-1" (::message e)))
        (is (not (re-find #"18446744073709551615" (::message e))))))))

(defbackend-test finding-17-chunk-content-is-checked-against-the-manifest [b]
  (let [t (bk/fresh-target b)
        id (str (backup! b (small-conn) t))
        m (manifest b t id)
        n 2
        original (chunk-datoms b t id n)
        originals (mapv #(bk/read-bytes b t (k id (:chunk/key %))) (:chunks m))
        [lo hi] (:chunk/tx-range (nth (:chunks m) n))
        cases [["transactions swapped" #"must ascend" (reverse original)]
               ["an attribute not in the schema" #"does not declare"
                (assoc-in original [1 1] :person/age)]
               ["a tx below tx0" #"outside the backup's transactions" (assoc-in original [1 3] 5)]
               ["a tx above :stats/max-tx" #"outside the backup's transactions"
                (assoc-in original [1 3] (inc (:stats/max-tx m)))]
               ["a tx outside the chunk's range" #"outside the chunk's" (assoc-in original [1 3] (dec lo))]
               ["e = Long/MAX_VALUE" #"entity id" (assoc-in original [1 0] Long/MAX_VALUE)]
               ["a negative e" #"entity id" (assoc-in original [1 0] -7)]]]
    (is (< lo hi) "the chunk spans several transactions")
    (doseq [[what re datoms] cases]
      (testing what
        (write-manifest! b t id m)
        (doseq [[c bs] (map vector (:chunks m) originals)] (bk/write-bytes! b t (k id (:chunk/key c)) bs))
        (rewrite-chunk! b t id n datoms)
        (is (some-problem? re (verify-problems t id)) what)
        (let [e (restore-refused b t id)]
          (is (= :datacamp/corrupt (:datacamp/error e)))
          (is (re-find re (str (::message e))) (::message e)))))))

(defbackend-test finding-18-resume-trusts-neither-checkpoint-counts-nor-the-recorded-snapshot [b]
  (let [t (bk/fresh-target b)
        conn (small-conn)
        id (str (backup! b conn t))
        m (manifest b t id)
        interrupt! (fn []
                     (bk/delete! b t (k id "manifest.edn"))
                     (bk/delete! b t (k id "complete.marker"))
                     (doseq [c (drop 2 (:chunks m))]
                       (when (some #{(k id (:chunk/key c))} (bk/keys-under b t (k id "")))
                         (bk/delete! b t (k id (:chunk/key c))))))
        cp-key (k id "checkpoint.edn")]
    (interrupt!)
    (let [cp (edn/read-string (bk/read-string-at b t cp-key))]
      (bk/write-bytes! b t cp-key (.getBytes ^String (edn-str (-> cp
                                                                   (assoc-in [:state/chunks 0 :chunk/datom-count] 999)
                                                                   (assoc-in [:state/chunks 0 :chunk/max-eid] Long/MAX_VALUE)))
                                                     "UTF-8")))
    (let [r (backup/resume-backup conn t id :database-id db-id)]
      (is (true? (:resumed? r)))
      (is (= (:stats/datom-count m) (:datom-count r)) "the counts are the chunks', not the checkpoint's"))
    (is (= (:chunks m) (:chunks (manifest b t id))))
    (let [target (fx/empty-conn (config))]
      (is (true? (:success (bk/restore b target t id :database-id db-id))))
      (fx/dispose! target))
    (testing "a config.edn whose snapshot is beyond the database"
      (interrupt!)
      (let [cfg-key (k id "config.edn")
            cfg (edn/read-string (bk/read-string-at b t cfg-key))]
        (bk/write-bytes! b t cfg-key (.getBytes ^String (edn-str (assoc cfg :stats/max-tx 9999999999)) "UTF-8"))
        (let [e (caught #(backup/resume-backup conn t id :database-id db-id))]
          (is (= :datacamp/conflict (:datacamp/error e)) (pr-str e))
          (is (re-find #"9999999999" (::message e))))
        (is (false? (:completed? (first (backup/list-backups t db-id)))))))))

(defbackend-test finding-19-a-late-undecodable-chunk-never-leaves-a-silently-partial-target [b]
  (let [t (bk/fresh-target b)
        id (str (backup! b (small-conn 60) t))
        m (manifest b t id)
        last-n (dec (count (:chunks m)))
        raw (.getBytes "not fressian at all" "UTF-8")]
    (replace-chunk! b t id last-n (gzip raw) :raw raw)
    (let [e (restore-refused b t id :verify-first? true)]
      (is (= :datacamp/corrupt (:datacamp/error e)))
      (is (re-find (re-pattern (str "chunk " last-n " does not decode")) (::message e))))
    (testing "without verify-first, the error says the target is partly restored"
      ;; Loaded 200 datoms a call: thousands reach the target before the bad chunk.
      (let [t (bk/fresh-target b)
            id (str (backup! b (small-conn 1000) t :chunk-size 2000))
            m (manifest b t id)
            _ (replace-chunk! b t id (dec (count (:chunks m))) (gzip raw) :raw raw)
            conn (fx/empty-conn (config))
            e (caught #(bk/restore b conn t id :database-id db-id :verify-first? false :batch-size 200))]
        (is (= :datacamp/corrupt (:datacamp/error e)) (pr-str e))
        (is (true? (:datacamp/target-partially-restored e)))
        (is (pos? (:datacamp/datoms-loaded e)))
        (is (= (:datacamp/datoms-loaded e) (count (d/datoms (d/history @conn) :eavt))))
        (fx/dispose! conn)))))

(defbackend-test finding-20-verify-and-restore-agree [b]
  (let [t (bk/fresh-target b)
        id (str (backup! b (small-conn) t))]
    (bk/write-bytes! b t (k id "config.edn") (.getBytes "{:backup/id" "UTF-8"))
    (is (some-problem? #"config.edn is unreadable" (verify-problems t id :deep? false)) "verify reads config.edn")
    (is (= :datacamp/corrupt (:datacamp/error (restore-refused b t id))) "and so does restore"))
  (testing "a value verify would pass but restore could not load (a ratio 1/0)"
    (let [t (bk/fresh-target b)
          id (str (backup! b (small-conn) t))
          ratio (ba 0xEF (fstr "ratio") 2 0xC6 0xD1 1 0xC6 0xD1 0)
          raw (fchunk 1 (ba 0xE5 (ba 0xE9 (flong 5) (fkw "person" "name") ratio (flong tx1) 0xF5)))]
      (replace-chunk! b t id 1 (gzip raw) :datoms 1 :raw raw)
      (is (some-problem? #"zero denominator" (verify-problems t id)))
      (is (re-find #"zero denominator" (::message (restore-refused b t id))))))
  (when (= :dir (:kind b))
    (testing "a linked chunks/ folder: both refuse"
      (let [t (bk/fresh-target b)
            id (str (backup! b (small-conn) t))
            chunks (io/file (:path t) (k id "chunks"))
            copy (u/temp-dir)]
        (doseq [^File f (.listFiles chunks)] (io/copy f (io/file copy (.getName f))) (io/delete-file f))
        (io/delete-file chunks)
        (link! chunks copy)
        (is (some-problem? #"missing" (verify-problems t id)))
        (is (= :datacamp/corrupt (:datacamp/error (restore-refused b t id))))))))

(defbackend-test finding-21-nan-and-infinite-ages-are-refused [b]
  (let [t (bk/fresh-target b)
        [_ _ id] (let [conn (small-conn) id (str (backup! b conn t))]
                   (bk/delete! b t (k id "complete.marker"))
                   [conn t id])
        before (bk/keys-under b t db-id)]
    (doseq [age [##NaN ##Inf ##-Inf -1 1e300 "24" nil]]
      (let [e (caught #(backup/cleanup-incomplete t db-id :older-than-hours age))]
        (is (= :datacamp/invalid-argument (:datacamp/error e)) (pr-str age e))))
    (is (= before (bk/keys-under b t db-id)) "nothing was deleted")
    (is (= [id] (mapv str (:kept-incomplete (backup/cleanup-incomplete t db-id :older-than-hours 24)))))))

(defbackend-test finding-22-no-raw-exceptions-no-echoed-secrets-no-side-effects [b]
  (testing "backup :batch-size out of range is refused before anything is written"
    (doseq [bs [0 -1 Long/MAX_VALUE 1.5 "10"]]
      (let [t (bk/fresh-target b)
            e (caught #(bk/backup b (small-conn 2) t :database-id db-id :batch-size bs))]
        (is (= :datacamp/invalid-argument (:datacamp/error e)) (pr-str bs e))
        (is (bk/nothing-stored? b t) (str "nothing written for :batch-size " bs)))))
  (let [t (bk/fresh-target b)
        id (backup! b (small-conn) t)]
    (testing "restore :progress-fn 42"
      (let [e (restore-refused b t id :progress-fn 42)]
        (is (= :datacamp/invalid-argument (:datacamp/error e)))))
    (testing "control and bidirectional characters in ids"
      (doseq [bad ["a\u202Eb" "\u200B" "x\u001b[31m" "a\nb"]]
        (is (= :datacamp/invalid-argument (:datacamp/error (caught #(backup/list-backups t bad)))) (pr-str bad))
        (is (= :datacamp/invalid-argument
               (:datacamp/error (caught #(backup/verify-backup t (str id bad) :database-id db-id))))))))
  (when (= :s3 (:kind b))
    (testing "a secret of the wrong type and an endpoint with credentials are never echoed"
      (let [t (bk/fresh-target b)]
        (doseq [bad [(assoc t :secret-access-key :SECRET-abc123)
                     (assoc t :access-key-id {:SECRET "abc123"})
                     (assoc t :endpoint "ftp://user:SECRET-abc123@host:9000")]]
          (let [e (caught #(backup/list-backups bad db-id))]
            (is (= :datacamp/invalid-argument (:datacamp/error e)))
            (is (not (re-find #"SECRET" (pr-str e))) (pr-str e)))))))
  (when (= :dir (:kind b))
    (testing "list-backups and verify-backup create nothing"
      (let [root (io/file (u/temp-dir) "not-there")]
        (is (= [] (backup/list-backups {:path (str root)} db-id)))
        (is (= :datacamp/not-found (:datacamp/error (caught #(backup/verify-backup {:path (str root)} "x" :database-id db-id)))))
        (is (not (.exists root)))))))

(ns datacamp.encryption-test
  "Encrypted backups (`:encryption`) through the real JNI path, against a local directory
  and S3 (moto): exact round trips of the fixtures, wrong and missing keys refused with
  nothing loaded, a tampered chunk named, and no key material in any file written or any
  error message or ex-data."
  (:require [clojure.java.io :as io]
            [clojure.string :as str]
            [clojure.test :refer [deftest is testing]]
            [datacamp.backends :as bk :refer [defbackend-test]]
            [datacamp.core :as backup]
            [datacamp.fixtures :as fx]
            [datacamp.test-util :as u]
            [datahike.api :as d])
  (:import [java.util Base64 HexFormat]))

(set! *warn-on-reflection* true)

(def ^:private counter (atom 0))

(defn- fresh-conn
  "A new empty stand-in database with the fixture's configuration."
  [config]
  (let [cfg (assoc config :store {:backend :mem :id (str "encryption-" (swap! counter inc))})]
    (d/delete-database cfg)
    (d/create-database cfg)
    (d/connect cfg)))

(defn- history [conn]
  (mapv (comp u/typed u/datom-vec) (d/datoms (d/history @conn) :eavt)))

(defn- key-bytes
  "32 bytes of key `n` (distinct, recognisable in any file)."
  ^bytes [n]
  (byte-array (map #(unchecked-byte (+ (* 7 n) (* 13 %))) (range 32))))

(defn- b64 ^String [^bytes k] (.encodeToString (Base64/getEncoder) k))
(defn- hex ^String [^bytes k] (.formatHex (HexFormat/of) k))

(defn- leaks
  "The forms of key `k` found in `text` (base64, hex in either case)."
  [^String text ^bytes k]
  (let [lower (str/lower-case text)]
    (cond-> []
      (str/includes? text (b64 k)) (conj :base64)
      (str/includes? lower (hex k)) (conj :hex))))

(defn- thrown
  "The ex-info `f` throws (nil when it returns)."
  [f]
  (try (f) nil (catch clojure.lang.ExceptionInfo e e)))

(defn- error-text
  "Everything a caller sees of an error: message, ex-data, causes."
  [^Throwable e]
  (str/join "\n" (for [^Throwable t (take-while some? (iterate #(.getCause ^Throwable %) e))]
                   (str (.getMessage t) " " (pr-str (ex-data t))))))

(defbackend-test encrypted-fixtures-restore-exactly [backend]
  (doseq [[name enc] [["kitchen-sink" {:key (key-bytes 1)}]
                      ["schema-on-read" {:key (b64 (key-bytes 2))}]
                      ["attribute-refs" {:key (key-bytes 3)}]]]
    (testing name
      (let [fixture (fx/load-fixture name)
            target (bk/fresh-target backend)
            b (bk/backup backend (fx/fixture-conn name) target :database-id name
                         :encryption enc :chunk-size 4096)
            id (:backup-id b)
            conn (fresh-conn (:config fixture))
            r (bk/restore backend conn target id :database-id name :encryption enc
                          :verify-first? true)]
        (is (true? (:success r)))
        (is (< 1 (:chunks-processed r)) "several chunks")
        (is (= (:datom-count b) (:datoms-restored r)))
        (is (true? (= (mapv (comp u/typed u/datom-vec) (:history fixture)) (history conn)))
            "the restored history equals the source's, datom by datom, types included")
        (let [m (bk/read-string-at backend target (bk/backup-key name id "manifest.edn"))
              chunk (bk/read-bytes backend target (bk/backup-key name id "chunks/datoms-0.fressian.gz"))]
          (is (str/includes? m ":format/encryption"))
          (is (str/includes? m "aes-256-gcm"))
          (is (= "DCE1" (String. chunk 0 4 "US-ASCII")) "chunks are sealed"))
        (testing "plain verify needs no key; deep verify needs it"
          (is (true? (:success (backup/verify-backup target
                                                     id :database-id name))))
          (is (true? (:success (backup/verify-backup target
                                                     id :database-id name :deep? true :encryption enc))))
          (is (= :datacamp/wrong-key
                 (:datacamp/error (ex-data (thrown #(backup/verify-backup
                                                     target
                                                     id :database-id name :deep? true)))))))
        (d/release conn)))))

(defbackend-test wrong-or-missing-keys-load-nothing [backend]
  (let [name "kitchen-sink"
        fixture (fx/load-fixture name)
        target (bk/fresh-target backend)
        k (key-bytes 4)
        other (key-bytes 5)
        b (bk/backup backend (fx/fixture-conn name) target :database-id name :encryption {:key k})
        id (:backup-id b)]
    (doseq [[what opts] [["wrong key" [:encryption {:key other}]]
                         ["missing key" []]
                         ["wrong passphrase" [:encryption {:passphrase "not the key"}]]]]
      (testing what
        (let [conn (fresh-conn (:config fixture))
              e (thrown #(apply bk/restore backend conn target id :database-id name opts))]
          (is (some? e))
          (is (= :datacamp/wrong-key (:datacamp/error (ex-data e))) (error-text e))
          (is (re-find #"dck1-[0-9a-f]{20}" (ex-message e)) "the expected key id is named")
          (is (empty? (d/datoms @conn :eavt)) "nothing loaded")
          (is (not (:datacamp/target-partially-restored (ex-data e))))
          (is (empty? (concat (leaks (error-text e) k) (leaks (error-text e) other))))
          (d/release conn))))
    (testing "a tampered chunk is named and nothing is loaded"
      (let [chunk (bk/backup-key name id "chunks/datoms-0.fressian.gz")
            conn (fresh-conn (:config fixture))]
        (bk/flip-byte! backend target chunk 30)
        (let [e (thrown #(bk/restore backend conn target id :database-id name :encryption {:key k}
                                     :verify-first? true))]
          (is (= :datacamp/corrupt (:datacamp/error (ex-data e))) (error-text e))
          (is (str/includes? (ex-message e) "chunk 0"))
          (is (empty? (d/datoms @conn :eavt))))
        (bk/flip-byte! backend target chunk 30)
        (d/release conn)))))

(defbackend-test no-key-material-in-files-or-errors [backend]
  (let [name "kitchen-sink"
        target (bk/fresh-target backend)
        k (key-bytes 6)
        key-file (io/file (u/temp-dir) "backup.key")
        _ (spit key-file (b64 k))
        b (bk/backup backend (fx/fixture-conn name) target :database-id name
                     :encryption {:key-file (str key-file)})
        id (:backup-id b)
        errors [(thrown #(bk/backup backend (fx/fixture-conn name) target :database-id name
                                    :encryption {:key (b64 k) :passphrase (b64 k)}))
                (thrown #(bk/backup backend (fx/fixture-conn name) target :database-id name
                                    :encryption {:key (subs (b64 k) 4)}))
                (thrown #(bk/backup backend (fx/fixture-conn name) target :database-id name
                                    :encryption (b64 k)))
                (thrown #(bk/backup backend (fx/fixture-conn name) target :database-id name
                                    :encryption {:key (b64 k) :cipher (b64 k)}))
                (thrown #(bk/restore backend (fresh-conn (:config (fx/load-fixture name))) target id
                                     :database-id name :encryption {:key (key-bytes 7)}))]]
    (is (every? some? errors) "each bad use fails")
    (doseq [e errors]
      (is (empty? (leaks (error-text e) k)) (error-text e)))
    (let [ks (bk/keys-under backend target "")]
      (is (some #(str/ends-with? % "manifest.edn") ks))
      (doseq [key ks]
        (let [bytes (bk/read-bytes backend target key)]
          (is (empty? (leaks (String. bytes "ISO-8859-1") k)) key)
          (is (not (str/includes? (String. bytes "ISO-8859-1") (String. k "ISO-8859-1"))) key))))
    (testing "list-backups shows the key id, never the key"
      (let [listed (pr-str (backup/list-backups target name))]
        (is (empty? (leaks listed k)))))
    (testing "config.edn keeps no schema fact in clear"
      (let [cfg (bk/read-string-at backend target (bk/backup-key name id "config.edn"))]
        (is (str/includes? cfg ":backup/sealed-config"))
        (is (not (str/includes? cfg ":schema/ref-attrs")))))
    (let [conn (fresh-conn (:config (fx/load-fixture name)))
          r (bk/restore backend conn target id :database-id name :encryption {:key-file (str key-file)})]
      (is (= (:datom-count b) (:datoms-restored r)))
      (d/release conn))))

(defbackend-test an-encrypted-chain-rotates-to-a-new-key [backend]
  (let [name "kitchen-sink"
        fixture (fx/load-fixture name)
        target (bk/fresh-target backend)
        old {:key (key-bytes 8)}
        new {:passphrase "a long new passphrase"}
        full (bk/backup backend (fx/fixture-conn name) target :database-id name :encryption old)
        incr (bk/backup backend (fx/fixture-conn name) target :database-id name :encryption old
                        :incremental? true)
        chunks-before (into {} (for [k (bk/keys-under backend target "")
                                     :when (str/includes? k "/chunks/")]
                                 [k (vec (bk/read-bytes backend target k))]))]
    (is (= :incremental (:type incr)))
    (testing "an incremental of an encrypted chain without its key is refused"
      (let [e (thrown #(bk/backup backend (fx/fixture-conn name) target :database-id name
                                  :incremental? true))]
        (is (= :datacamp/wrong-key (:datacamp/error (ex-data e))) (error-text e))))
    (let [r (backup/rewrap-backup-keys target name :old-key old :new-key new)]
      (is (= (sort (map str [(:backup-id full) (:backup-id incr)])) (sort (map str (:rewrapped r)))))
      (is (re-find #"^dck1-" (:key-id r))))
    (is (= chunks-before (into {} (for [k (bk/keys-under backend target "")
                                        :when (str/includes? k "/chunks/")]
                                    [k (vec (bk/read-bytes backend target k))])))
        "no chunk was rewritten")
    (let [again (backup/rewrap-backup-keys target name :old-key old :new-key new)]
      (is (empty? (:rewrapped again)) "a second run has nothing left to do"))
    (let [conn (fresh-conn (:config fixture))
          e (thrown #(bk/restore backend conn target (:backup-id incr) :database-id name
                                 :encryption old))]
      (is (= :datacamp/wrong-key (:datacamp/error (ex-data e))))
      (is (empty? (d/datoms @conn :eavt)))
      (d/release conn))
    (let [conn (fresh-conn (:config fixture))
          r (bk/restore backend conn target (:backup-id incr) :database-id name :encryption new
                        :verify-first? true)]
      (is (true? (:success r)))
      (is (true? (= (mapv (comp u/typed u/datom-vec) (:history fixture)) (history conn))))
      (d/release conn))))

(defn- child-eval!
  "Evaluate `form` in a child JVM (this classpath) with `failpoint` armed; return its exit
  code and output (as `datacamp.crash-test` does)."
  [form failpoint]
  (let [pb (doto (ProcessBuilder. ^"[Ljava.lang.String;"
                                  (into-array String [(str (System/getProperty "java.home") "/bin/java")
                                                      "-cp" (System/getProperty "java.class.path")
                                                      "clojure.main" "-e" (pr-str form)]))
             (.redirectErrorStream true))]
    (.put (.environment pb) "DATACAMP_FAILPOINT" failpoint)
    (let [p (.start pb)
          out (slurp (.getInputStream p))]
      {:exit (.waitFor p) :out out})))

(deftest a-rotation-killed-midway-is-finished-by-the-next-run
  (let [name "kitchen-sink"
        old {:key (b64 (key-bytes 9))}
        new {:key (b64 (key-bytes 10))}
        deep-ok? (fn [t id k]
                   (try (:success (backup/verify-backup t id :database-id name :deep? true :encryption k))
                        (catch clojure.lang.ExceptionInfo _ false)))]
    ;; 3 backups, 2 files each: killed after the 1st, 3rd and 5th file rewritten
    (doseq [k [1 3 5]]
      (testing (str "killed after file " k)
        (let [t {:path (str (u/temp-dir))}
              ids (vec (repeatedly 3 #(:backup-id (backup/backup-to-directory (fx/fixture-conn name) t
                                                                               :database-id name
                                                                               :encryption old))))
              {:keys [exit out]} (child-eval! `(do (require 'datacamp.core)
                                                    ((resolve 'datacamp.core/rewrap-backup-keys) ~t ~name
                                                     :old-key ~old :new-key ~new)
                                                    (shutdown-agents)
                                                    (System/exit 0))
                                                 (str "rewrap-file-written:" k))]
          (is (= 137 exit) (str "the child was killed (SIGKILL): " out))
          (testing "after the crash every backup opens with the old key or the new one"
            (doseq [id ids]
              (is (or (deep-ok? t id old) (deep-ok? t id new)) (str id))))
          (let [r (backup/rewrap-backup-keys t name :old-key old :new-key new)]
            (is (seq (:rewrapped r)) "the rest is rewrapped")
            (is (= (set (map str ids)) (set (map str (concat (:rewrapped r) (:already r)))))))
          (doseq [id ids]
            (is (deep-ok? t id new) (str id))
            (is (not (deep-ok? t id old)) (str id)))
          (is (empty? (:rewrapped (backup/rewrap-backup-keys t name :old-key old :new-key new)))))))))

(ns datacamp.backends
  "The two storage backends the suites run against — a local directory (`{:path dir}`) and
  S3 (moto on loopback, `datacamp.s3-server`) — behind one small interface, and
  `defbackend-test`, which defines a test once per backend with the same body.

  A backend is a map `{:kind :dir}` or `{:kind :s3}`. Keys passed to `read-bytes`,
  `write-bytes!`, `delete!` and `keys-under` are relative to the backup root, exactly the
  names a backup uses on both stores: `{database-id}/{backup-id}/chunks/datoms-0.fressian.gz`
  (on S3 under the target's `:prefix`)."
  (:require [clojure.java.io :as io]
            [clojure.string :as str]
            [clojure.test :refer [deftest]]
            [datacamp.core :as backup]
            [datacamp.s3-server :as s3-server]
            [datacamp.test-util :as u])
  (:import [java.io File]
           [java.nio.file Files OpenOption]))

(set! *warn-on-reflection* true)

(def dir
  "The local-directory backend: targets `{:path \"/tmp/…\"}`."
  {:kind :dir})

(def s3
  "The S3 backend: a fresh bucket on the moto test server per target."
  {:kind :s3})

(defmacro defbackend-test
  "Define `name-dir` and `name-s3`: two deftests running `body` with `b` bound to the
  directory backend, then to the S3 backend (moto is started first; `start!` is idempotent)."
  [name [b] & body]
  `(do
     (deftest ~(symbol (str name "-dir"))
       (let [~b dir] ~@body))
     (deftest ~(symbol (str name "-s3"))
       (s3-server/start!)
       (let [~b s3] ~@body))))

(def ^:private bucket-counter (atom 0))

(defn fresh-target
  "A new, empty target of backend `b`: a temp directory, or a new bucket."
  [b]
  (case (:kind b)
    :dir {:path (str (u/temp-dir))}
    :s3 (let [bucket (str "datacamp-backends-" (swap! bucket-counter inc))]
          (s3-server/create-bucket! bucket)
          (s3-server/target bucket))))

(defn backup
  "Back `conn` up to target `t` with `backup-to-directory` or `backup-to-s3`."
  [b conn t & opts]
  (case (:kind b)
    :dir (apply backup/backup-to-directory conn t opts)
    :s3 (apply backup/backup-to-s3 conn t opts)))

(defn restore
  "Restore backup `id` from target `t` into `conn` with `restore-from-directory` or
  `restore-from-s3`."
  [b conn t id & opts]
  (case (:kind b)
    :dir (apply backup/restore-from-directory conn t id opts)
    :s3 (apply backup/restore-from-s3 conn t id opts)))

(defn backup-key
  "The key of `file` (e.g. \"manifest.edn\", \"chunks/datoms-0.fressian.gz\") inside backup
  `backup-id` of `db-id`, relative to the backup root."
  [db-id backup-id file]
  (str db-id "/" backup-id "/" file))

(defn- file-of ^File [t key]
  (io/file (:path t) key))

(defn read-bytes
  "The bytes stored under `key`."
  ^bytes [b t key]
  (case (:kind b)
    :dir (Files/readAllBytes (.toPath (file-of t key)))
    :s3 (s3-server/get-object t key)))

(defn read-string-at
  "The UTF-8 text stored under `key`."
  ^String [b t key]
  (String. (read-bytes b t key) "UTF-8"))

(defn write-bytes!
  "Overwrite (or create) `key` with `bs`."
  [b t key ^bytes bs]
  (case (:kind b)
    :dir (let [f (file-of t key)]
           (io/make-parents f)
           (Files/write (.toPath f) bs ^"[Ljava.nio.file.OpenOption;" (make-array OpenOption 0)))
    :s3 (s3-server/put-object! t key bs))
  nil)

(defn delete!
  "Delete `key` (which must exist on a directory)."
  [b t key]
  (case (:kind b)
    :dir (io/delete-file (file-of t key))
    :s3 (s3-server/delete-object! t key))
  nil)

(defn flip-byte!
  "Invert every bit of the byte at `pos` of `key` (twice restores it)."
  [b t key pos]
  (let [bs (read-bytes b t key)]
    (aset-byte bs pos (unchecked-byte (bit-xor (aget bs pos) 0xff)))
    (write-bytes! b t key bs)))

(defn truncate!
  "Cut `key` down to its first `n` bytes."
  [b t key n]
  (write-bytes! b t key (java.util.Arrays/copyOf (read-bytes b t key) (int n))))

(defn keys-under
  "The sorted keys of every stored file/object whose key starts with `prefix` (\"\" for
  everything in the target)."
  [b t prefix]
  (case (:kind b)
    :dir (let [root (io/file (:path t))
               root-len (inc (count (.getPath root)))]
           (->> (file-seq root)
                (filter #(.isFile ^File %))
                (map #(str/replace (subs (.getPath ^File %) root-len) File/separator "/"))
                (filter #(str/starts-with? % prefix))
                sort vec))
    :s3 (vec (sort (s3-server/list-keys t prefix)))))

(defn nothing-stored?
  "True when target `t` holds nothing at all: an empty directory (not even an empty
  folder), or a bucket without objects under the target's prefix."
  [b t]
  (case (:kind b)
    :dir (empty? (.list (io/file (:path t))))
    :s3 (empty? (keys-under b t ""))))

(defn backup-gone?
  "True when nothing of backup `backup-id` is left: on a directory its folder is gone, on
  S3 no object has its prefix."
  [b t db-id backup-id]
  (case (:kind b)
    :dir (not (.exists (u/backup-dir (:path t) db-id backup-id)))
    :s3 (empty? (keys-under b t (backup-key db-id backup-id "")))))

(defn location
  "Where backup `backup-id` of `db-id` lives, as the backup result reports it (`:path` for
  a directory, `:s3-path` for S3)."
  [b t db-id backup-id]
  (case (:kind b)
    :dir (str (io/file (:path t) db-id (str backup-id)) File/separator)
    :s3 (str "s3://" (:bucket t) "/" (:prefix t) db-id "/" backup-id "/")))

(defn result-location
  "The location a backup result map reports (`:path`, or `:s3-path` for S3)."
  [b result]
  (case (:kind b)
    :dir (:path result)
    :s3 (:s3-path result)))

(defn chunk-s3-key
  "The `:chunk/s3-key` a manifest must carry for `chunk-key`: the original datacamp stores
  the full object key there on S3, and the relative chunk key for a directory."
  [b t db-id backup-id chunk-key]
  (case (:kind b)
    :dir chunk-key
    :s3 (str (:prefix t) (backup-key db-id backup-id chunk-key))))

(defn missing-location-targets
  "Targets of backend `b` that lack their location (no/blank `:path`, no/blank `:bucket`),
  as `[description target]` pairs, derived from the valid target `t`."
  [b t]
  (case (:kind b)
    :dir [["no path" {}] ["blank path" {:path " "}]]
    :s3 [["no bucket" (dissoc t :bucket)] ["blank bucket" (assoc t :bucket " ")]]))

(defn copy-of-directory
  "A target of backend `b` holding the files under local directory `root` with the same
  relative keys: the directory itself, or a fresh bucket they were uploaded to."
  [b root]
  (case (:kind b)
    :dir {:path (str root)}
    :s3 (let [t (fresh-target b)
              root (io/file root)
              root-len (inc (count (.getPath root)))]
          (doseq [^File f (file-seq root) :when (.isFile f)]
            (write-bytes! b t (str/replace (subs (.getPath f) root-len) File/separator "/")
                          (Files/readAllBytes (.toPath f))))
          t)))

(defn backdate!
  "Make every stored file of backup `backup-id` look `hours` old by its modification time.
  Only a directory can do this: S3 sets LastModified itself (moto offers no way to change
  it), so this returns false for S3 and true once done for a directory."
  [b t db-id backup-id hours]
  (case (:kind b)
    :dir (let [then (- (System/currentTimeMillis) (* hours 3600 1000))]
           (doseq [^File f (file-seq (u/backup-dir (:path t) db-id backup-id))]
             (.setLastModified f then))
           true)
    :s3 false))

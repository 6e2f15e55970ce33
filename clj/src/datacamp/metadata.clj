(ns datacamp.metadata
  "Reading a backup's EDN metadata files (manifest, config, checkpoint), as the original
  datacamp documents it:

      (require '[datacamp.metadata :as meta])
      (meta/read-edn-from-s3 s3-target \"my-backups\" \"db-id/backup-id/manifest.edn\")
      (meta/read-edn-from-file \"/backups/db-id/backup-id/manifest.edn\")
      (meta/read-manifest {:path \"/backups\"} \"db-id\" backup-id)

  Where the original passes an S3 client, these functions take the S3 target map of
  `datacamp.core` (`{:bucket … :region … :prefix …}`, see the README). Every file is read
  by the native core (size-limited: 64 MiB), parsed as EDN and returned as Clojure data;
  failures throw `ex-info` with `:datacamp/error` (`:datacamp/not-found` for a missing
  file, `:datacamp/corrupt` for one that is not EDN or too large)."
  (:require [clojure.java.io :as io]
            [datacamp.core :as core]
            [datacamp.native :as native]))

(set! *warn-on-reflection* true)

(defn- invalid! [msg data]
  (throw (ex-info msg (merge {:datacamp/error :datacamp/invalid-argument} data))))

(defn read-edn-from-s3
  "Given an S3 target map (as `datacamp.core/backup-to-s3` takes; it may leave out
  `:bucket`), a bucket and a key, return the EDN file stored there as data. The key is
  relative to the target's `:prefix` (default \"datahike-backups/\", where backups live),
  so \"db-id/backup-id/manifest.edn\" names a backup's manifest; pass `:prefix \"\"` to
  read any key of the bucket."
  [s3-target bucket key]
  (when-not (or (nil? s3-target) (map? s3-target))
    (invalid! "read-edn-from-s3 takes an S3 target map where the original takes a client"
              {:s3-target (type s3-target)}))
  (when (and (:bucket s3-target) (not= bucket (:bucket s3-target)))
    (invalid! (str "the bucket " (pr-str bucket) " differs from the target's :bucket "
                   (pr-str (:bucket s3-target)))
              {:bucket bucket}))
  (when-not (and (string? key) (seq key))
    (invalid! (str "the key must be a non-empty string, got " (pr-str key)) {:key key}))
  (let [target (core/canonical-target (assoc s3-target :bucket bucket))]
    (native/with-native-errors {:key key}
      (native/read-metadata target nil nil key))))

(defn read-edn-from-file
  "Given the path of a local EDN file (e.g. a backup's manifest.edn), return its data."
  [file-path]
  (let [f (io/file (str file-path))]
    (when-not (.isFile f)
      (throw (ex-info (str "no such file: " file-path)
                      {:datacamp/error :datacamp/not-found :datacamp/key (str file-path)})))
    (let [f (.getAbsoluteFile f)]
      (native/with-native-errors {:datacamp/key (str f)}
        (native/read-metadata {:path (str (.getParentFile f))} nil nil (.getName f))))))

(defn read-manifest
  "Given a target (`{:path …}` or an S3 target map), a database id and a backup id, return
  that backup's manifest (`manifest.edn`) as data."
  [target database-id backup-id]
  (when-not (string? database-id)
    (invalid! (str "the database id must be a string, got " (pr-str database-id)) {:database-id database-id}))
  (when (nil? backup-id)
    (invalid! "the backup id is nil: pass the id of a backup (see list-backups)" {:backup-id nil}))
  (native/with-native-errors {:database-id database-id :backup-id backup-id}
    (native/read-metadata (core/canonical-target target) database-id (str backup-id) "manifest.edn")))

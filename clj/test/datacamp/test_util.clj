(ns datacamp.test-util
  "Test helpers: temp dirs, reading backups back with Clojure's own readers, and a loose
  value normalisation for comparing what clojure.data.fressian returns."
  (:require [clojure.data.fressian :as fressian]
            [clojure.edn :as edn]
            [clojure.java.io :as io])
  (:import [java.io File]
           [java.nio.file Files]
           [java.util.zip GZIPInputStream]
           [org.fressian TaggedObject]))

(set! *warn-on-reflection* true)

(defn temp-dir
  "A fresh temporary directory (deleted at JVM exit)."
  ^File []
  (let [f (.toFile (Files/createTempDirectory "datacamp-test" (make-array java.nio.file.attribute.FileAttribute 0)))]
    (.deleteOnExit f)
    f))

(defn backup-dir
  "The folder of one backup."
  ^File [root db-id backup-id]
  (io/file root db-id (str backup-id)))

(defn read-edn-file
  "Read an EDN file with clojure.edn (what the original implementation does)."
  [f]
  (edn/read-string (slurp f)))

(defn gunzip
  "The decompressed bytes of a gzip file (or of gzip bytes: anything `io/input-stream` takes)."
  ^bytes [f]
  (with-open [in (GZIPInputStream. (io/input-stream f))]
    (.readAllBytes in)))

(defn read-chunk
  "Read one chunk (a file, or its stored bytes) with clojure.data.fressian (as the original
  implementation does)."
  [f]
  (fressian/read (gunzip f)))

(defn chunk-files
  "The chunk files of a backup, in manifest order."
  [dir manifest]
  (for [c (:chunks manifest)]
    (io/file dir (:chunk/key c))))

(defn norm
  "Normalise a value for loose comparison: sequential -> vector (data.fressian does not keep
  vector vs list), byte[] -> [:bytes ...], NaN -> ::nan, tagged \"list\" -> its list, sets
  and maps recursively."
  [x]
  (cond
    (instance? TaggedObject x) (let [^TaggedObject t x] (norm (first (.getValue t))))
    (bytes? x) [:bytes (vec x)]
    (and (instance? Double x) (Double/isNaN x)) ::nan
    (map? x) (into {} (map (fn [[k v]] [(norm k) (norm v)])) x)
    (instance? java.util.Map x) (into {} (map (fn [[k v]] [(norm k) (norm v)])) x)
    (set? x) (into #{} (map norm) x)
    (instance? java.util.Set x) (into #{} (map norm) x)
    (sequential? x) (mapv norm x)
    (instance? java.util.List x) (mapv norm x)
    :else x))

(defn typed
  "Like `norm`, but scalars keep their exact type: a Float never equals a Double, a
  BigDecimal keeps its scale, BigInt and Long differ."
  [x]
  (cond
    (instance? TaggedObject x) (let [^TaggedObject t x] (typed (first (.getValue t))))
    (bytes? x) [:bytes (vec x)]
    (instance? Double x) [:double (if (Double/isNaN x) :nan x)]
    (instance? Float x) [:float x]
    (instance? BigDecimal x) [:bigdec (str x)]
    (instance? clojure.lang.BigInt x) [:bigint x]
    (instance? java.math.BigInteger x) [:biginteger x]
    (ratio? x) [:ratio x]
    (char? x) [:char x]
    (instance? java.util.Date x) [:inst (.getTime ^java.util.Date x)]
    (map? x) (into {} (map (fn [[k v]] [(typed k) (typed v)])) x)
    (instance? java.util.Map x) (into {} (map (fn [[k v]] [(typed k) (typed v)])) x)
    (set? x) (into #{} (map typed) x)
    (instance? java.util.Set x) (into #{} (map typed) x)
    (sequential? x) (mapv typed x)
    (instance? java.util.List x) (mapv typed x)
    :else x))

(defn datom-vec
  "A datom (Datahike's or a vector) as the vector [e a v tx added]."
  [d]
  [(nth d 0) (nth d 1) (nth d 2) (nth d 3) (nth d 4)])

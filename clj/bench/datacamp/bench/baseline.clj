(ns datacamp.bench.baseline
  "The pure-JVM baseline: what the original Clojure datacamp does per chunk.

  Backup: for each chunk, `clojure.data.fressian` of the chunk map `{:format/type
  :datom-chunk :format/version \"1.0.0\" :format/serialization :fressian :chunk/id N
  :datoms [[e a v tx added] …]}` into a ByteArrayOutputStream, GZIPOutputStream (level 6,
  the JDK default the original uses), SHA-256 of the gzip bytes, written to
  `chunks/datoms-N.fressian.gz` (no fsync, as the original). The calling thread walks the
  datoms and builds each chunk's vector (the original's `(mapv datom->vec datoms)`);
  `parallel` worker threads serialize, compress, hash and write, with at most `parallel`
  chunks in flight (the same parallelism as the native core).

  Chunks are cut by datom count: the caller passes the datom counts per chunk that the
  native backup's manifest reports for the same data, so both cut identically.

  Restore decode: for each chunk file, GZIPInputStream + `clojure.data.fressian/read`, on
  `parallel` threads, handed over in chunk order."
  (:require [clojure.data.fressian :as fress]
            [clojure.java.io :as io])
  (:import [java.io ByteArrayOutputStream File]
           [java.nio.file Files]
           [java.security MessageDigest]
           [java.util ArrayDeque ArrayList List]
           [java.util.concurrent Callable ExecutorService Executors Future Semaphore]
           [java.util.zip GZIPInputStream GZIPOutputStream]))

(set! *warn-on-reflection* true)

(defn- hex ^String [^bytes bs]
  (let [sb (StringBuilder. (* 2 (alength bs)))]
    (doseq [b bs] (.append sb (format "%02x" (bit-and 0xff (long b)))))
    (.toString sb)))

(defn serialize-chunk
  "The original's serialize-datom-chunk: Fressian bytes of the chunk map."
  ^bytes [id datoms]
  (let [baos (ByteArrayOutputStream.)]
    (with-open [^java.io.Closeable w (fress/create-writer baos)]
      (fress/write-object w {:format/type :datom-chunk
                             :format/version "1.0.0"
                             :format/serialization :fressian
                             :chunk/id id
                             :datoms datoms}))
    (.toByteArray baos)))

(defn gzip
  "The original's compress-gzip (GZIPOutputStream, default level)."
  ^bytes [^bytes data]
  (let [baos (ByteArrayOutputStream.)]
    (with-open [gz (GZIPOutputStream. baos)]
      (.write gz data))
    (.toByteArray baos)))

(defn- write-chunk
  "Serialize, compress, hash and write chunk `id`; return its stats."
  [^File dir id datoms]
  (let [fressian (serialize-chunk id datoms)
        gz (gzip fressian)
        sha (hex (.digest (MessageDigest/getInstance "SHA-256") gz))
        f (io/file dir "chunks" (str "datoms-" id ".fressian.gz"))]
    (Files/write (.toPath f) gz ^"[Ljava.nio.file.OpenOption;" (make-array java.nio.file.OpenOption 0))
    {:chunk/id id :datom-count (count datoms) :size-bytes (alength gz)
     :uncompressed-bytes (alength fressian) :checksum sha}))

(defn- datom->vec
  "The original converts each datom to a plain vector."
  [d]
  [(nth d 0) (nth d 1) (nth d 2) (nth d 3) (nth d 4)])

(defn backup
  "Given a function returning a fresh seqable of datoms, the datom count of each chunk (the last chunk takes any rest),
  a directory and the parallelism, write the chunks and return `{:chunks [stats …]
  :datom-count n :total-size-bytes … :uncompressed-bytes …}`."
  [datoms-fn chunk-counts ^File dir parallel]
  (.mkdirs (io/file dir "chunks"))
  (let [^ExecutorService pool (Executors/newFixedThreadPool (int parallel))
        permits (Semaphore. (int parallel))
        futures (ArrayList.)
        counts (vec chunk-counts)
        last-id (dec (count counts))]
    (try
      (loop [s (seq (datoms-fn)) id 0]
        (when (and s (<= id last-id))
          (let [n (if (= id last-id) Long/MAX_VALUE (long (nth counts id)))
                buf (ArrayList.)
                s (loop [s s k 0]
                    (if (and s (< k n))
                      (do (.add buf (datom->vec (first s))) (recur (next s) (inc k)))
                      s))
                chunk (vec (.toArray buf))]
            (.acquire permits)
            (.add futures (.submit pool ^Callable (fn []
                                                    (try (write-chunk dir id chunk)
                                                         (finally (.release permits))))))
            (recur s (inc id)))))
      (let [chunks (mapv #(.get ^Future %) futures)]
        {:chunks chunks
         :datom-count (reduce + (map :datom-count chunks))
         :total-size-bytes (reduce + (map :size-bytes chunks))
         :uncompressed-bytes (reduce + (map :uncompressed-bytes chunks))})
      (finally (.shutdownNow pool)))))

(defn read-chunk
  "GZIPInputStream + data.fressian/read of one chunk file; return the chunk map."
  [^File f]
  (with-open [in (GZIPInputStream. (io/input-stream f) 65536)]
    (fress/read in)))

(defn restore-decode
  "Given the chunk files in order and the parallelism, decode every chunk on `parallel`
  threads (at most 2 x `parallel` chunks ahead, as the native prefetcher) and return
  `{:datom-count n :chunk-count c}`."
  [files parallel]
  (let [^ExecutorService pool (Executors/newFixedThreadPool (int parallel))
        ahead (* 2 (long parallel))
        window (ArrayDeque.)
        fill (fn [fs]
               (loop [fs fs]
                 (if (and fs (< (.size window) ahead))
                   (let [f (first fs)]
                     (.add window (.submit pool ^Callable (fn [] (read-chunk f))))
                     (recur (next fs)))
                   fs)))]
    (try
      (loop [fs (fill (seq files)) n 0 c 0]
        (if (.isEmpty window)
          {:datom-count n :chunk-count c}
          (let [m (.get ^Future (.poll window))
                ^List ds (:datoms m)]
            (recur (fill fs) (+ n (.size ds)) (inc c)))))
      (finally (.shutdownNow pool)))))

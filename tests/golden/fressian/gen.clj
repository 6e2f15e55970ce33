;; Generates the golden Fressian files used by src/format/fressian_tests.rs.
;;
;; Run from this directory (data.fressian 1.0.0 on fressian 0.6.6):
;;   java -cp /usr/share/java/clojure.jar:/usr/share/java/spec.alpha.jar:/usr/share/java/core.specs.alpha.jar:/usr/share/java/data.fressian.jar:/usr/share/java/fressian.jar clojure.main gen.clj
;;
;; Every sample NAME becomes NAME.bin = the bytes of (clojure.data.fressian/write value)
;; (default handlers, no footer). Names starting with "rd-" are reader-only inputs built with
;; explicit FressianWriter calls (closed/open lists, primitive arrays, reset-caches, footer).
;; index.txt lists every name in order. The Rust tests rebuild the same values by hand, so
;; any change here must be mirrored in fressian_tests.rs.

(require '[clojure.data.fressian :as fress]
         '[clojure.java.io :as io])
(import '[org.fressian TaggedObject]
        '[org.fressian.impl BytesOutputStream]
        '[java.util Date UUID LinkedHashSet])

(defn buf->bytes ^bytes [^java.nio.ByteBuffer bb]
  (let [a (byte-array (.remaining bb))]
    (.get (.duplicate bb) a)
    a))

(defn with-writer
  "Run (f writer) on a fresh data.fressian writer; return the bytes written."
  ^bytes [f]
  (let [bos (BytesOutputStream.)
        w (fress/create-writer bos)]
    (f w)
    (java.util.Arrays/copyOf (.internalBuffer bos) (.length bos))))

(defn lset
  "A java.util.Set with a fixed iteration order (written exactly like a Clojure set)."
  [& xs]
  (let [s (LinkedHashSet.)]
    (doseq [x xs] (.add s x))
    s))

(defn tagged-list
  "The encoding Datacamp uses for a Clojure list: tagged struct \"list\" with one component."
  [xs]
  (TaggedObject. "list" (object-array [(vec xs)])))

(defn pow2 [k] (bit-shift-left 1 k))

(def int-boundaries
  (vec (concat [0 1 -1 2 -2 63 64 -64 -65 127 128 -128 -129 255 256]
               (mapcat (fn [k] [(dec (pow2 k)) (pow2 k) (- (pow2 k)) (dec (- (pow2 k)))])
                       [11 12 18 19 24 25 32 33 40 41 47 48 49 55 62])
               [Long/MAX_VALUE Long/MIN_VALUE])))

(defn rep [n ^String s] (apply str (repeat n s)))

(def datom-attrs
  [:db/ident :db/valueType :db/cardinality :person/name :person/age :ks/double :ks/inst :ks/uuid])

(defn datom-value [i]
  (case (int (mod i 8))
    0 (keyword "ident" (str "k" i))
    1 :db.type/string
    2 :db.cardinality/one
    3 (str "name-" i)
    4 (* 7 i)
    5 (/ (double i) 4.0)
    6 (Date. (+ 1700000000000 (* i 1000)))
    7 (UUID. 0 i)))

(defn datoms [attr-fn]
  (vec (for [i (range 50)]
         [(+ 1000 (quot i 5))
          (attr-fn i)
          (datom-value i)
          (+ 536870913 (quot i 10))
          (not= 3 (mod i 7))])))

(defn chunk-map [id ds]
  ;; array map: keeps this key order, like the original datacamp's chunk map
  (array-map :format/type :datom-chunk
             :format/version "1.0.0"
             :format/serialization :fressian
             :chunk/id id
             :datoms ds))

(def many-keywords
  (let [ks (vec (for [i (range 40)] (keyword (str "ns" i) (str "k" i))))]
    (into ks ks)))

(def samples
  [["nil" nil]
   ["true" true]
   ["false" false]
   ["ints" int-boundaries]
   ["long-max" Long/MAX_VALUE]
   ["long-min" Long/MIN_VALUE]
   ["doubles" [0.0 -0.0 1.0 -1.0 1.5 0.1 1e-300 -1e300 Double/MIN_VALUE Double/MAX_VALUE
               ##Inf ##-Inf ##NaN]]
   ["double-neg-zero" -0.0]
   ["double-nan-payload" (Double/longBitsToDouble 0x7ff0000000000001)]
   ["floats" [(float 0.0) (float -0.0) (float 1.0) (float 1.1) Float/MAX_VALUE Float/MIN_VALUE
              (Float/intBitsToFloat 0x7fc00000) Float/POSITIVE_INFINITY]]
   ["float-nan-payload" (Float/intBitsToFloat 0x7f800001)]
   ["string-empty" ""]
   ["string-7" "abcdefg"]
   ["string-8" "abcdefgh"]
   ["string-unicode" "h\u00e9llo w\u00f6rld \u2603 \u65e5\u672c\u8a9e \u07ff\u0800 \uffff"]
   ["string-emoji" "\ud83d\ude00 \ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67\u200d\ud83d\udc66 e\u0301 \u2028"]
   ["string-nul" "a\u0000b\u0000"]
   ["string-65536" (rep 65536 "x")]
   ["string-65537" (rep 65537 "x")]
   ["string-long-ascii" (rep 20000 "abcdefghij")]
   ["string-emoji-straddle" (str (rep 65533 "x") "\ud83d\ude00" "tail")]
   ["string-2byte-boundary" (str (rep 65535 "x") "\u00e9" "z")]
   ["string-3byte-long" (rep 30000 "\u65e5")]
   ["keyword" :a]
   ["keyword-ns" :db/ident]
   ["keywords-repeated" [:a/b :a/b :b/a :c :a :c :a/b (keyword "") (keyword "x" "") :x/x]]
   ["keywords-many" many-keywords]
   ["symbols" ['x 'ns/bar '+ 'ns/bar :ns/bar "ns" 'x]]
   ["chars" [\a \A \u00e9 \u0000 \uffff (char 0xd83d) \a (char 63) (char 64)]]
   ["insts" [(Date. 0) (Date. 1704164645678) (Date. -62135596800000) (Date. 253402300799999) (Date. -1)]]
   ["uuids" [(UUID. 0 0) (UUID. -1 -1) (UUID/fromString "4f1c3a2e-9b7d-4e21-8c5a-0d3e6f7a8b9c")]]
   ["bigints" [(bigint 0) 7N -1N 127N 128N -128N -129N 255N
               (biginteger 5) (.pow (biginteger 2) 200) (- (bigint (.pow (biginteger 3) 150)))]]
   ["bigint-huge" (bigint (.pow (biginteger 2) 200))]
   ["biginteger-huge" (.pow (biginteger 2) 200)]
   ["bigdecs" [1.50M 0E-10M 1E+50M -123456789012345678901234567890.123456789M 0M 1M -1.5M]]
   ["ratios" [22/7 -1/3 (/ (bigint (.pow (biginteger 2) 100)) 3) 22/7]]
   ["bytes-empty" (byte-array 0)]
   ["bytes-7" (byte-array [1 2 3 4 5 6 7])]
   ["bytes-8" (byte-array [1 2 3 4 5 6 7 8])]
   ["bytes-256" (byte-array (map unchecked-byte (range 256)))]
   ["bytes-65535" (byte-array (map unchecked-byte (range 65535)))]
   ["bytes-65536" (byte-array (map unchecked-byte (range 65536)))]
   ["bytes-70000" (byte-array (map #(unchecked-byte (* 7 %)) (range 70000)))]
   ["vector-empty" []]
   ["vector-7" [1 2 3 4 5 6 7]]
   ["vector-8" [1 2 3 4 5 6 7 8]]
   ["vector-100" (vec (range 100))]
   ["clojure-list" '(1 "two" :three)]
   ["set-empty" #{}]
   ["set-ordered" (lset 3 1 2 :a "b" nil)]
   ["map-empty" {}]
   ["map-small" (array-map :a 1 "b" 2.5 nil [1 2])]
   ["map-20" (apply array-map (mapcat (fn [i] [(keyword (str "k" i)) i]) (range 20)))]
   ["nested" (array-map :a (array-map :b [1 (lset 2) (array-map 3 4)])
                        [1 2] (lset [3] (array-map :x nil))
                        "deep" [[[[[[[[[[:bottom]]]]]]]]]])]
   ["list-tag" (tagged-list [1 2 3])]
   ["list-tag-empty" (tagged-list [])]
   ["list-tag-mixed" [(tagged-list [\a (tagged-list [22/7])]) \b 1/2 (tagged-list [:k])]]
   ["datom-chunk" (chunk-map 3 (datoms #(nth datom-attrs (mod % 8))))]
   ["datom-chunk-attr-refs" (chunk-map 0 (datoms #(+ 10 (mod % 8))))]])

(def reader-only
  [["rd-closed-list" (with-writer (fn [w]
                                    (fress/begin-closed-list w)
                                    (doseq [x [1 "two" :three]] (.writeObject w x))
                                    (fress/end-list w)))]
   ["rd-open-list" (with-writer (fn [w]
                                  (fress/begin-open-list w)
                                  (doseq [x [1 2 3]] (.writeObject w x))))]
   ["rd-open-list-ended" (with-writer (fn [w]
                                        (fress/begin-open-list w)
                                        (doseq [x [1 2]] (.writeObject w x))
                                        (fress/end-list w)))]
   ["rd-map-closed" (with-writer (fn [w]
                                   (.writeTag w "map" 1)
                                   (fress/begin-closed-list w)
                                   (.writeObject w :a true)
                                   (.writeObject w 1)
                                   (.writeObject w :a true)
                                   (.writeObject w 2)
                                   (fress/end-list w)))]
   ["rd-arrays" (with-writer (fn [w]
                               (.writeObject w [(int-array [1 -2 300]) (long-array [Long/MIN_VALUE 5])
                                                (float-array [1.5 -0.0]) (double-array [0.0 1.0 2.5])
                                                (boolean-array [true false]) (object-array ["x" :y nil])])))]
   ["rd-reset-caches" (with-writer (fn [w]
                                     (fress/begin-closed-list w)
                                     (.writeObject w [:a/b :a/b \c])
                                     (.resetCaches w)
                                     (.writeObject w [:c/d :a/b \c])
                                     (fress/end-list w)))]
   ["rd-cached-values" (with-writer (fn [w]
                                      ;; values put into the priority cache explicitly
                                      (fress/begin-closed-list w)
                                      (doseq [x [5000 5000 "str" "str" 1.5 1.5 [1 2] [1 2] 7N 7N 3 3]]
                                        (.writeObject w x true))
                                      (fress/end-list w)))]
   ["rd-footer" (buf->bytes (fress/write [1 2 3] :footer? true))]])

(def out-dir (io/file "."))

(with-open [idx (io/writer (io/file out-dir "index.txt"))]
  (doseq [[name v] samples]
    (let [bs (buf->bytes (fress/write v))]
      (with-open [o (io/output-stream (io/file out-dir (str name ".bin")))]
        (.write o bs))
      (.write idx (str name "\n"))))
  (doseq [[name ^bytes bs] reader-only]
    (with-open [o (io/output-stream (io/file out-dir (str name ".bin")))]
      (.write o bs))
    (.write idx (str name "\n"))))

;; sanity: what data.fressian reads back for the Datacamp list tag
(let [r (fress/read (fress/write (tagged-list [1 2])))]
  (println "list tag reads back as" (class r) "tag" (fress/tag r)
           "value" (mapv class (fress/tagged-value r))))
(println "wrote" (+ (count samples) (count reader-only)) "files")

;; Cross-check of src/format/edn.rs with Clojure's own printer and reader.
;;
;;   java -cp /usr/share/java/clojure.jar:/usr/share/java/spec.alpha.jar:/usr/share/java/core.specs.alpha.jar \
;;        clojure.main tests/golden/edn/check.clj
;;
;; (a) Writes clojure-printed.edn beside this file: `[:label value]` lines printed with
;;     `pr-str` (namespaced maps on, as in a REPL), one `pprint`ed manifest, and
;;     `["edn text" value]` lines holding what `clojure.edn/read-string` made of the text
;;     (`:datacamp.golden/error` where it threw). The Rust test `golden_clojure_printed`
;;     compares them with its expected values and with what `edn::parse` makes of the text.
;; (b) Reads rust-printed.edn beside this file (written by the Rust test
;;     `golden_rust_printed`: each label, then `write` of the value, the label again, then
;;     `write_pretty`) with `clojure.edn/read-string` and checks every value: equal, of the
;;     same classes, BigDecimal scales equal, doubles by `Double.equals` (NaN, -0.0).
;; Exits non-zero on any mismatch.
(ns check
  (:require [clojure.edn :as edn]
            [clojure.java.io :as io]
            [clojure.pprint :refer [pprint]]))

(def dir (or (first *command-line-args*) (.getParent (.getAbsoluteFile (io/file *file*)))))

(defn bd [^String unscaled scale] (BigDecimal. (BigInteger. unscaled) (int scale)))
(def two-pow-200 (bigint (.shiftLeft BigInteger/ONE 200)))

;; ----- (a) values printed by Clojure ---------------------------------------------------

(def printed
  [[:nil nil]
   [:bools [true false]]
   [:longs [0 -42 Long/MAX_VALUE Long/MIN_VALUE]]
   [:int-short-byte [(int 7) (short -3) (byte -1)]]
   [:doubles [1.0 -0.0 0.1 (/ 1.0 3) 1.0E-300 Double/MIN_VALUE Double/MAX_VALUE 1.0E7 9999999.0
              0.001 1.2345678901234567E-4 1.0E21 Double/NaN Double/POSITIVE_INFINITY
              Double/NEGATIVE_INFINITY]]
   [:floats [(float 0.1) (float 1e10) (float -2.5)]]
   [:string-escapes "q\" b\\ n\n t\t r\r b\b f\f"]
   [:string-raw-controls (str (char 1) (char 0x1f) (char 0x7f) "é😀" (char 0x2028))]
   [:keywords [:a :ns/name :a.b/c-d? (keyword "1")]]
   [:symbols ['foo 'ns/foo '+ '/ 'clojure.core//]]
   [:chars [\a \space \newline \tab \return \backspace \formfeed \é \\ \" \] \@ (char 1)
            (char 0x2028)]]
   [:insts (mapv #(java.util.Date. (long %))
                 [0 1795674416608 -1 -12219292800000 -12219292800001 -62135769600000
                  253402300799999 -30604608000000])]
   [:uuids [#uuid "f81d4fae-7dec-11d0-a765-00a0c91e6bf6" (java.util.UUID. 0 0)]]
   [:bigints [0N 1N -128N 9223372036854775808N two-pow-200]]
   [:bigdecs [(bd "150" 2) (bd "0" 10) (bd "1" -50) (bd "0" 0) (bd "-15" 1) (bd "1" 6) (bd "1" 7)
              (bd "10" -1) (bd "123456789123456789" 9)]]
   [:ratios [22/7 -1/3 (/ 100000000000000000000N 3)]]
   [:seqs ['() (range 3) (map inc [1 2]) (seq [1 2]) (list :a 1)]]
   [:sets [#{} #{1 2 3} #{[1] "x"}]]
   [:map-big (into {} (for [i (range 12)] [(keyword (str "k" i)) i]))]
   [:map-namespaced {:chunk/id 0 :chunk/checksum "ab"}]
   [:map-namespaced-nested {:a/b 1 :a/c {:d/e 2}}]
   [:map-namespaced-symbols {:a/x 1 'a/y 2}]
   [:map-mixed {:a/x 1 :y 2 "s" nil [1] #{}}]
   [:deep-50 (nth (iterate vector 0) 50)]])

(def pprinted-manifest
  (array-map
   :backup/id "20261126-062656-e0d6a0"
   :stats/tx-range [nil nil]
   :chunks (vec (for [i (range 3)]
                  (array-map :chunk/id i
                             :chunk/checksum "effa4230ed39208716796e993f6909b21db997e41c10a09207be668ff2ea7448"
                             :chunk/s3-etag nil)))
   :backup/created-at (java.util.Date. 1795674416608)
   :state/completed-chunks #{}
   :state/failed-chunks {}
   :format/encryption nil
   :duration-seconds 0.075
   :decimal 1.50M))

;; EDN texts that clojure.edn reads (its result is recorded) or rejects (recorded as an error).
;; Not here: years before 1 AD (Clojure prints 1 BC as year 0001, so its output loses them;
;; the Rust tests check year 0000 against the millis Clojure reads), and the deliberate
;; leniencies of edn.rs: `\uD800` (a lone surrogate char), years beyond 0000-9999, Julian
;; leap days before 1583 such as 1500-02-29.
(def reader-inputs
  ["4/2" "2/4" "-2/4" "0/5" "100000000000000000000/2" "100000000000000000000/100000000000000000000"
   "0x1F" "-0x1F" "0X1f" "-0x0" "2r101" "36rZZ" "36rZN" "-16rFF" "017" "0777N" "0x10N" "1N" "0N"
   "1e5" "1.e5" "1." "1.M" "5M" "08M" "1e5M" "1.5e-7M" "1E+50M" "0E-10M" "-0.00M" "1.0e+5" "1E5"
   "00.5" "01.5" "0e1" "+5" "-0" "+1/2" "9223372036854775807" "9223372036854775808"
   "-9223372036854775808" "-9223372036854775809" "0x8000000000000000" "1e99999" "-1e99999"
   "1e-99999" "4.9E-324" "2.2250738585072014E-308" "0.1" "-0.0"
   "\\o101" "\\o7" "\\u00e9" "\\u00E9" "\\é" "\\u" "\\o" "\\newline" "\\space" "\\tab" "\\return"
   "\\backspace" "\\formfeed" "\\ " "\\@" "\\~" "\\`" "\\#" "\\\\" "[\\a\\b]" "[\\]]" "(\\;)"
   "\"\\uD83D\\uDE00\"" "\"\\101\"" "\"\\1234\"" "\"\\0\"" "\"\\7 \"" "\"tab\there\"" "\"\\t\\r\\n\\\\\\\"\\b\\f\""
   ":1" ":1a/b" ":/" ":/a/b" ":a/b/c" "a//" "/" "a:b" ":a/b:c" "nil/a" ":nil" "true/false" "truex"
   "'a" "a#b" "a'b" "-a" "+a" "+" "-" "." ".5" "-.5" "a\u00a0b" "x\u0085y" "😀x"
   "#:a{:b 1 :_/c 2 d 3 :x/y 4}" "#: a{:b 1}" "#:a {:b 1}" "#:a{\"s\" 1}" "#:a{}" "#:a{:b #:c{:d 1}}"
   "## NaN" "##Inf" "##-Inf" "[1 #_ 2]" "#_ 1 2" "#_#_ 1 2 3" "#{:a #_ :a}" "^:foo [1]" "^{:a 1} x"
   "^\"x\" [1]" "#^:a [1]" "^foo {:a 1}" "{:a 1, :b 2,}" "[1,2,,3]" "(1 ; c\n 2)" "\u2028 1" "#{} "
   "#{1 1.0}" "{1 1.0 1.0 2}"
   "#inst \"2020\"" "#inst \"2020-01\"" "#inst \"1582-10-10\"" "#inst \"1582-10-15\"" "#inst \"1582-10-04\""
   "#inst \"0004-02-29\"" "#inst \"2020-06-30T23:59:60Z\""
   "#inst \"2020-01-01T00:00:00.123456789+01:30\"" "#inst \"2020-01-01T10\"" "#inst \"2020-01-01T10:11+01:00\""
   "#inst \"2020-01-01T00:00:00.5\"" "#inst\"2020-01-01\"" "#inst \"2026-11-26T06:26:56.608-00:00\""
   "#inst \"2026-11-26T06:26:56.608Z\"" "#inst \"2020-01-01T00:00:00+23:59\"" "#inst \"2020-01:00\""
   "#inst \"9999-12-31T23:59:59.999Z\"" "#inst \"1969-12-31T23:59:59.9999999999\""
   "#uuid \"1-2-3-4-5\"" "#uuid \"F81D4FAE-7DEC-11D0-A765-00A0C91E6BF6\"" "#uuid \"123456789-2-3-4-5\""
   "#uuid \"+1-2-3-4-5\"" "#uuid \"ffffffff-ffff-ffff-ffff-ffffffffffff\""
   ;; rejected by clojure.edn
   "[a^b]" "^:foo 1" "[a`b]" "[a~b]" "[a@b]" "@a" "~a" "`a" "1/0" "08" "37r1" "1r0" "0r0" "2r" "2r102"
   "0x" "1e" "1e+" ":/a" "//" ":a:" ":a::b" "::a" "a/" "/a" "a/1" ":a/1" "a::b" ":"
   "#inst \"2020-01-01t00:00Z\"" "#inst \"2020-1-01\"" "#inst \"2020-02-30\"" "#inst \"2019-02-29\""
   "#inst \"2020-01-01T24:00\"" "#inst \"2020-01-01T00:60\"" "#inst \"2020-01-01T00:00:60\""
   "#inst \"2020-01-01T00:00:00-24:00\"" "#inst \"2020-01-01T00:00:00.Z\"" "#inst \"20\"" "#inst 1"
   "#uuid \"00000001-0002-0003-0004-0000000000051\"" "#uuid \"1-2-3-4-\"" "#uuid \"x-2-3-4-5\""
   "#uuid \"1-2-3-4\"" "#uuid 1" "#:a/b{:c 1}" "#:1{}" "#::{}" "#:a" "#:a[1]" "#:a ;c\n{}"
   "#:a{:b 1 :a/b 2}" "##foo" "##1" "#{1 1}" "{1 1 1N 2}" "#{[1] (1)}" "#{0.0 -0.0}" "#{##NaN ##NaN}"
   "#{1.0M 1.00M}" "{[1 2] 1 (1 2) 2}" "#{{:a 1} {:a 1}}" "#{1/2 2/4}" "#{\\a \\a}" "#{\"a\" \"a\"}"
   "#{#inst \"2020\" #inst \"2020-01-01\"}" "{:a}" "{1 2 3}" "[1 #_]" "#foo 1" "#foo/bar [1]" "#<a>"
   "#!a" "\\ab" "\\" "\\o400" "\\o78" "\\o1234" "\\u00E9x" "\\u12345" "\\u00" "\\😀"
   "\"\\o\"" "\"\\x\"" "\"\\'\"" "\"\\8\"" "\"\\18\"" "\"\\400\"" "\"\\u00zz\"" "\"\\u004\""
   "1.5abc" "1/2/3" "1/-2" "1/2N" "1/2M" "1.5/2" "1/0x2" "(1 2" "\"abc" "[1 2)" "]" "#{1" "^a" "#"
   "#_" "##" "#:" "^1 [1]" "^:a #inst \"2020\"" "^:a \"s\"" "#nil 1"])

(defn write-clojure-printed [file]
  (with-open [w (io/writer file)]
    (binding [*out* w
              *print-namespace-maps* true]
      (doseq [entry printed]
        (println (pr-str entry)))
      (print "[:pprint-manifest\n")
      (pprint pprinted-manifest)
      (println "]")
      (doseq [s reader-inputs]
        (println (pr-str (try [s (edn/read-string s)]
                              (catch Throwable _ [s :datacamp.golden/error]))))))))

;; ----- (b) values printed by Rust ------------------------------------------------------

(def expected
  {:nil nil
   :true true
   :false false
   :long-0 0
   :long-neg -42
   :long-max Long/MAX_VALUE
   :long-min Long/MIN_VALUE
   :double-1 1.0
   :double-neg-zero -0.0
   :double-0.1 0.1
   :double-third (/ 1.0 3)
   :double-tiny 1.0E-300
   :double-min Double/MIN_VALUE
   :double-max Double/MAX_VALUE
   :double-1e7 1.0E7
   :double-below-1e7 9999999.0
   :double-0.001 0.001
   :double-small 1.2345678901234567E-4
   :double-1e21 1.0E21
   :double-big 1.23456789012E11
   :double-neg -2.5
   :double-nan Double/NaN
   :double-inf Double/POSITIVE_INFINITY
   :double-ninf Double/NEGATIVE_INFINITY
   ;; a Float prints as its shortest decimal, which reads as the nearest double
   :float-0.1 0.1
   :float-1e10 1.0E10
   :float-max 3.4028235E38
   :float-nan Double/NaN
   :string-empty ""
   :string-plain "hello, world"
   :string-escapes "q\" b\\ n\n t\t r\r b\b f\f"
   :string-controls (str (char 0) (char 1) (char 0x1f) (char 0x7f) (char 0x85) (char 0x9f))
   :string-unicode "é ü 中文 😀 \u2028"
   :string-syntax "a;b #_ , ] } ) \\u0041 #inst"
   :kw-plain :a
   :kw-ns :ns/name
   :kw-dotted :a.b.c/d-e?
   :kw-digit (keyword "1")
   :kw-slash (keyword "/")
   :kw-underscore-ns (keyword "_" "x")
   :kw-nested-slash (keyword "a" "b/c")
   :sym-plain 'foo
   :sym-ns 'ns/foo
   :sym-plus '+
   :sym-slash '/
   :sym-core-slash (symbol "clojure.core" "/")
   :sym-quote (symbol "a'b")
   :sym-hash (symbol "a#b")
   :sym-colon (symbol "a:b")
   :sym-dot5 (symbol ".5")
   :char-a \a
   :char-space \space
   :char-newline \newline
   :char-tab \tab
   :char-return \return
   :char-backspace \backspace
   :char-formfeed \formfeed
   :char-e-acute (char 0xe9)
   :char-nul (char 0)
   :char-backslash \\
   :char-quote \"
   :char-paren \(
   :char-bracket \]
   :char-semicolon \;
   :char-comma \,
   :char-at \@
   :char-tilde \~
   :char-backtick \`
   :char-hash \#
   :char-u (char 117)
   :char-o (char 111)
   :char-line-sep (char 0x2028)
   :char-ffff (char 0xffff)
   :inst-epoch (java.util.Date. 0)
   :inst-fixture (java.util.Date. 1795674416608)
   :inst-minus-one (java.util.Date. -1)
   :inst-cutover (java.util.Date. -12219292800000)
   :inst-julian (java.util.Date. -12219292800001)
   :inst-year-1 (java.util.Date. -62135769600000)
   :inst-year-9999 (java.util.Date. 253402300799999)
   :inst-leap-2000 (java.util.Date. 951782400000)
   :inst-julian-1000 (java.util.Date. -30604608000000)
   :uuid-zero (java.util.UUID. 0 0)
   :uuid-max (java.util.UUID. -1 -1)
   :uuid-sample (java.util.UUID/fromString "f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
   :bigint-0 (bigint 0)
   :bigint-1 (bigint 1)
   :bigint-neg1 (bigint -1)
   :bigint-128 (bigint 128)
   :bigint-neg128 (bigint -128)
   :bigint-255 (bigint 255)
   :bigint-2p63 (bigint (.shiftLeft BigInteger/ONE 63))
   :bigint-neg2p63m1 (bigint (.subtract (.negate (.shiftLeft BigInteger/ONE 63)) BigInteger/ONE))
   :bigint-2p200 two-pow-200
   :bigdec-1.50 (bd "150" 2)
   :bigdec-0e-10 (bd "0" 10)
   :bigdec-1e+50 (bd "1" -50)
   :bigdec-0 (bd "0" 0)
   :bigdec-neg1.5 (bd "-15" 1)
   :bigdec-micro (bd "1" 6)
   :bigdec-1e-7 (bd "1" 7)
   :bigdec-1.23e-7 (bd "123" 9)
   :bigdec-1.0e+2 (bd "10" -1)
   :bigdec-100 (bd "100" 0)
   :bigdec-0.00 (bd "0" 2)
   :bigdec-long (bd "123456789123456789" 9)
   :ratio-22-7 (/ 22 7)
   :ratio-neg (/ -1 3)
   :ratio-big (/ 100000000000000000000N 3)
   :bytes-empty (byte-array 0)
   :bytes-some (byte-array [0 1 2 -1 -2 -128 127])
   :vec-empty []
   :list-empty '()
   :set-empty #{}
   :map-empty {}
   :vec-nested [1 [2 [3]]]
   :list-mixed (list 1 "a" :b nil [])
   :set-mixed #{1 "1" :one [1]}
   :map-coll-keys {[1 2] :v, #{:s} "set", {:m 1} '(1), nil nil}
   :vec-of-lists ['(1) '()]
   :map-namespaced {:chunk/id 0 :chunk/x 1}
   :deep-100 (nth (iterate vector 0) 100)
   :vec-long (mapv #(* % 1000003) (range 60))
   :map-12 (into {} (for [i (range 12)] [(keyword (str "k" i)) i]))
   :manifest
   {:backup/version "1.0.0"
    :format/version "1.0.0"
    :stats/tx-range [nil nil]
    :database/branch :db
    :format/encryption nil
    :backup/completed true
    :_debug {:generated-by "datacamp" :edn-format true}
    :chunks (vec (for [i (range 3)]
                   {:chunk/id i
                    :chunk/tx-range [(+ 536870913 i) (+ 536870942 i)]
                    :chunk/max-eid 536870942
                    :chunk/datom-count 4472
                    :chunk/size-bytes 23366
                    :chunk/checksum "effa4230ed39208716796e993f6909b21db997e41c10a09207be668ff2ea7448"
                    :chunk/s3-etag nil
                    :chunk/s3-key (str "chunks/datoms-" i ".fressian.gz")}))
    :backup/created-at (java.util.Date. 1795674416608)
    :timing {:duration-seconds 0.075}
    :state/completed-chunks #{0 1 2}
    :state/failed-chunks {}
    :big/dec (bd "150" 2)}})

(defn same?
  "Equal, and of the same classes throughout (Long vs BigInt, vector vs list, BigDecimal
  scale, Double.equals for NaN and -0.0, byte arrays by content)."
  [a b]
  (cond
    (and (instance? Double a) (instance? Double b)) (.equals ^Double a b)
    (and (instance? BigDecimal a) (instance? BigDecimal b))
    (and (= (.scale ^BigDecimal a) (.scale ^BigDecimal b))
         (= (.unscaledValue ^BigDecimal a) (.unscaledValue ^BigDecimal b)))
    (and (bytes? a) (bytes? b)) (java.util.Arrays/equals ^bytes a ^bytes b)
    (or (vector? a) (seq? a))
    (and (= (vector? a) (vector? b)) (= (seq? a) (seq? b))
         (= (count a) (count b)) (every? true? (map same? a b)))
    (map? a)
    (and (map? b) (= (count a) (count b))
         (every? (fn [[k v]] (some (fn [[k2 v2]] (and (same? k k2) (same? v v2))) b)) a))
    (set? a)
    (and (set? b) (= (count a) (count b)) (every? (fn [x] (some #(same? x %) b)) a))
    :else (and (= (class a) (class b)) (= a b))))

(defn check-rust-printed [file]
  (let [text (slurp file)
        forms (edn/read-string
               {:readers {'datacamp/bytes (fn [^String s] (.decode (java.util.Base64/getDecoder) s))}}
               (str "[" text "\n]"))
        pairs (partition 2 forms)
        failures (remove (fn [[label v]] (and (contains? expected label)
                                              (same? v (expected label))))
                         pairs)
        seen (frequencies (map first pairs))
        missing (remove #(= 2 (seen %)) (keys expected))]
    (doseq [[label v] failures]
      (println "MISMATCH" label "read" (pr-str v) (class v) "expected" (pr-str (expected label))))
    (doseq [label missing]
      (println "MISSING" label "seen" (seen label 0) "times, expected 2"))
    (println (format "rust-printed.edn: %d forms read by clojure.edn, %d labels; %d passed, %d failed"
                     (count pairs) (count seen) (- (count pairs) (count failures))
                     (+ (count failures) (count missing))))
    (+ (count failures) (count missing))))

(let [out (io/file dir "clojure-printed.edn")]
  (write-clojure-printed out)
  (println (format "clojure-printed.edn: %d printed values, 1 pprint form, %d reader inputs (%d rejected)"
                   (count printed) (count reader-inputs)
                   (count (filter #(try (edn/read-string %) false (catch Throwable _ true)) reader-inputs)))))
(let [failed (check-rust-printed (io/file dir "rust-printed.edn"))]
  (shutdown-agents)
  (System/exit (if (zero? failed) 0 1)))

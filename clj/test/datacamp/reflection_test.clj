(ns datacamp.reflection-test
  "Every namespace of the library, the demo and the REPL compiles without a reflection
  warning. `*warn-on-reflection*` is set in each namespace rather than project-wide (which
  also flags the code lein injects into `lein run`), so this test is what keeps it honest:
  it loads each source file again with the warnings on and collects what they print."
  (:require [clojure.java.io :as io]
            [clojure.string :as str]
            [clojure.test :refer [deftest is testing]]
            [datacamp.fixtures :as fx]))

(set! *warn-on-reflection* true)

(defn- sources
  "The .clj files under the project's `dirs`."
  [& dirs]
  (sort (for [d dirs
              ^java.io.File f (file-seq (io/file (fx/project-dir) d))
              :when (and (.isFile f) (str/ends-with? (.getName f) ".clj"))]
          (str f))))

(deftest no-reflection-warnings
  (let [files (sources "clj/src" "clj/demo")]
    (is (< 5 (count files)))
    (doseq [f files]
      (testing f
        (let [err (java.io.StringWriter.)]
          (binding [*err* err
                    *warn-on-reflection* true]
            (load-file f))
          (is (not (str/includes? (str err) "Reflection warning")) (str err)))))))

(ns datacamp.build
  "Prepares the library for deps.edn users: compiles the Java classes and the native core."
  (:require [clojure.java.shell :refer [sh]]))

(defn prep
  "Run `make jar-classes` (javac + cargo build --release); throw if it fails."
  [_]
  (let [{:keys [exit out err]} (sh "make" "jar-classes")]
    (print out)
    (when-not (zero? exit)
      (throw (ex-info (str "make jar-classes failed:\n" err) {:exit exit})))))

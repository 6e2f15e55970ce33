(ns leiningen.native-lib
  "Leiningen task (found through .lein-classpath): build the native library that the jar
  bundles, or fail loudly. Runs as a prep task of every lein command (project.clj's
  :prep-tasks), so `lein jar` never packs a jar without it."
  (:require [clojure.java.io :as io]
            [clojure.java.shell :as sh]
            [leiningen.core.main :as main]))

(def ^:private library
  "Where `make native` puts the library that `lein jar` bundles."
  "target/native-resources/native/linux-x86_64/libdatacamp.so")

(defn native-lib
  "Build the native library with `make native` (a no-op when it is up to date); abort with
  what to do when that fails."
  [project & _]
  (let [root (:root project)
        {:keys [exit out err]} (try (sh/sh "make" "--no-print-directory" "native" :dir root)
                                    (catch java.io.IOException e {:exit -1 :err (str e)}))]
    (when-not (zero? exit)
      (main/abort (str out err "\n"
                       "lein: the native library (" library ") could not be built, and the jar "
                       "would be useless without it.\n"
                       "Install a Rust toolchain (rustc >= 1.94.1, https://rustup.rs) and run `bin/setup`, "
                       "then `make jar`.")))
    (when-not (.isFile (io/file root library))
      (main/abort (str "lein: `make native` did not produce " library)))))

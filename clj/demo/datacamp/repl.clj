(ns datacamp.repl
  "Where `make repl` starts: the API, the Datahike stand-in and fixture databases one call
  away, offline (a clojure.main REPL: no nREPL needed).

      (def conn (fixture-conn \"kitchen-sink\"))        ; a database dumped from real Datahike
      (def r (backup/backup-to-directory conn {:path \"/tmp/backups\"} :database-id \"ks\"
                                         :progress-fn prn))
      (backup/list-backups {:path \"/tmp/backups\"} \"ks\")
      (backup/verify-backup {:path \"/tmp/backups\"} (:backup-id r) :database-id \"ks\" :deep? true)
      (backup/restore-from-directory (empty-conn \"kitchen-sink\") {:path \"/tmp/backups\"}
                                     (:backup-id r) :database-id \"ks\")
      (meta/read-manifest {:path \"/tmp/backups\"} \"ks\" (:backup-id r))

  With real Datahike on the classpath (`lein with-profile -dev,+datahike …`), connect to
  your own database with `d/connect` instead."
  (:require [clojure.pprint :refer [pprint]]
            [datacamp.core :as backup]
            [datacamp.fixtures :as fx]
            [datacamp.metadata :as meta]
            [datacamp.utils :as utils]
            [datahike.api :as d]))

(set! *warn-on-reflection* true)

(def fixtures
  "The fixture databases (tests/fixtures, dumped from a real Datahike 0.6.1613)."
  ["kitchen-sink" "large" "schema-on-read" "attribute-refs" "no-history"])

(defn fixture-conn
  "Given a fixture name (see `fixtures`), return a stand-in connection to a copy of it."
  [name]
  (fx/fixture-conn name))

(defn empty-conn
  "Given a fixture name, return a connection to a new empty database with its config (a
  restore target)."
  [name]
  (fx/empty-conn name))

(defn banner
  "Print what this REPL offers."
  []
  (println "Datacamp REPL (offline, Datahike stand-in). In this namespace:")
  (println "  backup/…  datacamp.core    meta/…  datacamp.metadata    utils/format-bytes")
  (println "  d/…       datahike.api     pprint")
  (println "  (fixture-conn \"kitchen-sink\")   a connection to a fixture database;" (pr-str fixtures))
  (println "  (empty-conn \"kitchen-sink\")     an empty database with its config, to restore into")
  (println "  (doc datacamp.repl)              examples"))

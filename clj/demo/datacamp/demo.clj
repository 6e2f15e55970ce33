(ns datacamp.demo
  "The main job, end to end: back up a sample database to a directory, list the backups,
  verify the new one (deeply). Uses a real Datahike when it is on the classpath, otherwise
  the test stand-in loaded with a bundled real-Datahike fixture."
  (:require [clojure.java.io :as io]
            [clojure.pprint :refer [pprint]]
            [datacamp.core :as backup]))

(defn- standin?
  "True when the Datahike on the classpath is the test stand-in."
  []
  (some? (io/resource "datacamp/fixtures.clj")))

(defn- sample-conn
  "A connection to the sample database and a description of it."
  []
  (if (standin?)
    [((requiring-resolve 'datacamp.fixtures/fixture-conn) "kitchen-sink")
     "the kitchen-sink fixture (a real Datahike 0.6.1613 database) on the Datahike stand-in"]
    (let [create (requiring-resolve 'datahike.api/create-database)
          connect (requiring-resolve 'datahike.api/connect)
          transact (requiring-resolve 'datahike.api/transact)
          cfg {:store {:backend :mem :id "datacamp-demo"} :keep-history? true}]
      (create cfg)
      (let [conn (connect cfg)]
        (transact conn {:tx-data [{:db/ident :person/name :db/valueType :db.type/string
                                   :db/cardinality :db.cardinality/one :db/unique :db.unique/identity}
                                  {:db/ident :person/age :db/valueType :db.type/long
                                   :db/cardinality :db.cardinality/one}]})
        (transact conn {:tx-data (for [i (range 1000)] {:person/name (str "person-" i) :person/age (mod i 90)})})
        (transact conn {:tx-data (for [i (range 0 1000 3)] {:person/name (str "person-" i) :person/age 99})})
        [conn "a fresh in-memory Datahike database (1,000 people)"]))))

(defn -main
  "Back up the sample database to the directory given (default ./backups), list, verify."
  [& [dir]]
  (let [dir (or dir "./backups")
        target {:path dir}
        [conn what] (sample-conn)]
    (println "Backing up" what "to" dir)
    (let [result (backup/backup-to-directory conn target :database-id "demo")
          _ (pprint result)
          listed (backup/list-backups target "demo")
          _ (println "\nBackups of \"demo\" (newest first):")
          _ (doseq [b listed]
              (println " " (:backup-id b) (if (:completed? b) "complete" "INCOMPLETE")
                       (:datom-count b) "datoms" (:size-bytes b) "bytes"))
          report (backup/verify-backup target (:backup-id result) :database-id "demo" :deep? true)]
      (println "\nVerify (deep):")
      (pprint report)
      (shutdown-agents)
      (System/exit (if (and (:success result) (:success report)) 0 1)))))

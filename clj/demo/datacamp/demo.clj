(ns datacamp.demo
  "The main job, end to end: back up a sample database to a directory, list the backups,
  verify the new one (deeply). Uses a real Datahike when it is on the classpath, otherwise
  the test stand-in loaded with a bundled real-Datahike fixture."
  (:require [clojure.java.io :as io]
            [clojure.pprint :refer [pprint]]
            [datacamp.core :as backup]))

(set! *warn-on-reflection* true)

(defn- standin?
  "True when the Datahike on the classpath is the test stand-in."
  []
  (some? (io/resource "datacamp/fixtures.clj")))

(defn- empty-target-conn
  "A connection to a new, empty database configured like `conn`'s, to restore into."
  [conn]
  (if (standin?)
    ((requiring-resolve 'datacamp.fixtures/empty-conn) "kitchen-sink")
    (let [cfg (assoc (:config @conn) :store {:backend :mem :id "datacamp-demo-restored"})]
      ((requiring-resolve 'datahike.api/create-database) cfg)
      ((requiring-resolve 'datahike.api/connect) cfg))))

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
  "Back up the sample database to the directory given (default ./backups), list, verify,
  and restore it into a new empty database."
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
      (let [target-conn (empty-target-conn conn)
            restored (backup/restore-from-directory target-conn target (:backup-id result)
                                                    :database-id "demo")
            datoms (requiring-resolve 'datahike.api/datoms)
            history (requiring-resolve 'datahike.api/history)
            comparable (fn [d] (let [[e a v tx added] (seq d)]
                                 [e a (cond (bytes? v) (vec v)
                                            (and (double? v) (Double/isNaN v)) ::nan
                                            :else v)
                                  tx added]))
            same? (= (map comparable (datoms (history @conn) :eavt))
                     (map comparable (datoms (history @target-conn) :eavt)))]
        (println "\nRestore into a new empty database:")
        (pprint restored)
        (println "restored history identical to the source:" same?)
        (shutdown-agents)
        (System/exit (if (and (:success result) (:success report) (:success restored) same?) 0 1))))))

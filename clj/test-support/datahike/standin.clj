(ns datahike.standin
  "Which Datahike the test stand-in imitates: 0.6 (0.6.1613, the default) or
  0.7 (0.7.1660).

  Choose per test with `(binding [datahike.standin/*version* \"0.7\"] ...)`, or
  for a whole JVM with the system property `datahike.standin.version=0.7`
  (`:jvm-opts [\"-Ddatahike.standin.version=0.7\"]`). The mode is read when a
  config is loaded (`create-database`, `connect`, `delete-database`,
  `database-exists?`) and when a new database value is made, so bind it around
  all of them.

  What differs (../shared/DATAHIKE.md: \"Datahike 0.7.x … every store config
  needs a UUID `:id`, the in-memory backend is `:memory` (0.6: `:mem` with a
  string `:id`); the datom and load-entities behaviour … is the same\"):
  - 0.6: backends `:mem` (string `:id`, random when missing) and `:file`
    (`:path`); `load-config` adds the host address as `:scope` to the store.
  - 0.7: backends `:memory` and `:file` (plus `:path`), both with a REQUIRED
    `java.util.UUID` `:id`; no `:scope` is added (replikativ/datahike
    doc/store-id-refactoring.md, \"Remove `:scope` completely\", \"No
    auto-generation (user controls identity)\"); a db prints its store id as
    that UUID; `(:meta db)` carries `:datahike/version \"0.7.1660\"`.
  Everything else (datoms, transactions, load-entities, listeners, the other
  config defaults) is the 0.6 behaviour in both modes: the 0.7 differences
  beyond the store config were not measured and are not imitated.")

(set! *warn-on-reflection* true)

(def ^:dynamic *version*
  "The Datahike version family to imitate, \"0.6\" or \"0.7\"; nil (the default)
  means: the system property `datahike.standin.version`, else \"0.6\"."
  nil)

(def ^:private datahike-versions
  {"0.6" "0.6.1613"
   "0.7" "0.7.1660"})

(defn version
  "The imitated version family, \"0.6\" or \"0.7\" (see `*version*`); throws
  ex-info for any other value."
  []
  (let [v (or *version* (System/getProperty "datahike.standin.version") "0.6")]
    (if (contains? datahike-versions v)
      v
      (throw (ex-info (str "datahike.standin: unknown version " (pr-str v) ", expected \"0.6\" or \"0.7\".")
                      {:error :standin/unsupported :version v})))))

(defn v07?
  "True when the stand-in imitates Datahike 0.7."
  []
  (= "0.7" (version)))

(defn datahike-version
  "The full Datahike version string the stand-in reports in `(:meta db)`:
  \"0.6.1613\" or \"0.7.1660\"."
  []
  (datahike-versions (version)))

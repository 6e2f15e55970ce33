(ns datacamp.chain-test
  "Backup chains through the real JNI path on the stand-in, against a local directory and
  S3 (moto), see `datacamp.backends`: a full backup plus incrementals of a workload a real
  Datahike ran (`datacamp.workload`, tests/fixtures/tx-reports.edn: card-one and noHistory
  replacements, card-many, retractEntity of components, a schema change, tx-meta, byte
  arrays, phantom re-assertions); every link's restore compared with the restore of a full
  backup at the same point; each incremental's content compared with the real history;
  points in time (every tx of the kitchen-sink fixture, every tx of the chain); broken
  chains; refusals; retention."
  (:require [clojure.edn :as edn]
            [clojure.string :as str]
            [clojure.test :refer [is testing]]
            [datacamp.backends :as bk :refer [defbackend-test]]
            [datacamp.core :as backup]
            [datacamp.fixtures :as fx]
            [datacamp.test-util :as u]
            [datacamp.workload :as w]
            [datahike.api :as d]))

(set! *warn-on-reflection* true)

(def ^:private tx0 536870912)

(defn- typed-set [datoms] (set (map (comp u/typed u/datom-vec) datoms)))

(defn- history-set [db] (typed-set (d/datoms (d/history db) :eavt)))

(defn- current-set [db] (typed-set (d/datoms db :eavt)))

(defn- eav [ds] (set (map #(subvec (vec %) 0 3) ds)))

(defn- as-of-eav
  "The [e a v] of the datoms live in `db` right after transaction `t`."
  [db t]
  (eav (typed-set (d/datoms (d/as-of db t) :eavt))))

(defn- phantoms
  "The assertions in `history` (typed [e a v tx added] vectors) with tx <= t that re-assert a
  value already current and that no retraction up to t made visible: Datahike's history at
  t does not show them (DATAHIKE.md, \"phantom re-assertions\")."
  [history t]
  (set (for [[_ group] (group-by #(subvec % 0 3) (filter #(<= (nth % 3) t) history))
             :let [sorted (sort-by (juxt #(nth % 3) #(if (nth % 4) 1 0)) group)]
             [prev x] (partition 2 1 sorted)
             :when (and (nth prev 4) (nth x 4)
                        (not-any? #(and (not (nth % 4)) (<= (nth x 3) (nth % 3) t)) group))]
         x)))

(defn- reassertions
  "The assertions in `history` that assert a value already current (the previous datom of
  the same [e a v] is an assertion): the only history a chain may lack (DATAHIKE.md)."
  [history]
  (set (for [[_ group] (group-by #(subvec % 0 3) history)
             [prev x] (partition 2 1 (sort-by (juxt #(nth % 3) #(if (nth % 4) 1 0)) group))
             :when (and (nth prev 4) (nth x 4))]
         x)))

(def ^:private counter (atom 0))

(defn- empty-conn
  "A new empty stand-in database with `config`."
  [config]
  (let [cfg (assoc config :store {:backend :mem :id (str "chain-restore-" (swap! counter inc))})]
    (d/delete-database cfg)
    (d/create-database cfg)
    (d/connect cfg)))

(defn- restore-into
  "Restore backup `id` of `db-id` from `t` into a new db with `config`; return [conn result]."
  [b t db-id id config & opts]
  (let [conn (empty-conn config)]
    [conn (apply bk/restore b conn t id :database-id db-id opts)]))

(defn- thrown [f]
  (try (f) nil (catch clojure.lang.ExceptionInfo e (assoc (ex-data e) ::message (ex-message e)))))

(defn- stored-datoms
  "The datoms of backup `id` as stored, read back with data.fressian (manifest order)."
  [b t db-id id]
  (let [manifest (edn/read-string (bk/read-string-at b t (bk/backup-key db-id id "manifest.edn")))]
    (vec (mapcat #(:datoms (u/read-chunk (bk/read-bytes b t (bk/backup-key db-id id (:chunk/key %)))))
                 (:chunks manifest)))))

;; ------------------------------------------------------------------ the workload chain

(def ^:private cuts
  "A full backup after the first 5 steps, then an incremental after 10, 14, 18 and all 23."
  [5 10 14 18 23])

(defn- build-chain
  "Replay the workload into a fresh db, backing up at each cut: a link of the chain
  \"w\" (the first full, then incrementals) and a full reference backup \"full-N\". Return
  `{:conn … :links [{:cut n :tx T :db db-value :result r :full full-result} …]}`."
  [b t]
  (let [conn (w/fresh-conn)]
    (loop [prev 0 [cut & more] cuts links []]
      (if-not cut
        {:conn conn :links links}
        (do (w/replay! conn prev cut)
            (let [r (if (empty? links)
                      (bk/backup b conn t :database-id "w" :chunk-size 600)
                      (bk/backup b conn t :database-id "w" :chunk-size 600 :incremental? true))
                  full (bk/backup b conn t :database-id (str "full-" cut))]
              (recur (long cut) more (conj links {:cut cut :tx (w/tx-of (dec cut)) :db @conn
                                           :result r :full full}))))))))

(defbackend-test a-chain-restores-every-link-like-a-full-backup [b]
  (let [t (bk/fresh-target b)
        {:keys [links]} (build-chain b t)
        ids (mapv (comp :backup-id :result) links)
        config (:config @w/reports)]
    (testing "the results and the listing say type, parent, base, tx range and instants"
      (doseq [[i {:keys [result tx cut]}] (map-indexed vector links)
              :let [prev (when (pos? i) (nth links (dec i)))]]
        (is (= (if (zero? i) :full :incremental) (:type result)))
        (is (= (:backup-id (:result prev)) (:parent result)))
        (is (= (when prev (first ids)) (:base result)))
        (is (= (:tx prev) (:after-tx result)))
        (is (= tx (:max-tx result)))
        (is (= (w/instant-of (dec cut)) (second (:instant-range result))))
        (is (= (w/instant-of (if prev (:cut prev) 0)) (first (:instant-range result)))))
      (let [listed (backup/list-backups t "w")]
        (is (= (reverse ids) (mapv :backup-id listed)) "newest first")
        (is (= (map (comp #(select-keys % [:type :parent :base :after-tx :max-tx :tx-range :instant-range]) :result) (reverse links))
               (map #(select-keys % [:type :parent :base :after-tx :max-tx :tx-range :instant-range]) listed)))))
    (testing "every link restores its whole chain like a full backup at the same point"
      (doseq [[i {:keys [tx cut full db]}] (map-indexed vector links)]
        (testing (str "link " i " (after step " cut ")")
          (let [[chain-conn r] (restore-into b t "w" (nth ids i) config)
                [full-conn _] (restore-into b t (str "full-" cut) (:backup-id full) config)
                ch (history-set @chain-conn)
                fh (history-set @full-conn)]
            (is (= (subvec ids 0 (inc i)) (:chain r)))
            (is (= 1 (:load-entities-calls r)) "one load stream")
            (is (= tx (:restored-to-tx r)))
            (is (= (w/instant-of (dec cut)) (:restored-to-instant r)))
            (is (= (history-set db) fh) "the full backup restores the source's history")
            (is (every? fh ch) "nothing in the chain that the full restore lacks")
            (is (every? (reassertions fh) (remove ch fh))
                "the chain lacks only re-assertions of a value already current (phantoms)")
            (is (= (current-set @full-conn) (current-set @chain-conn)) "same current datoms, ids and tx ids")
            (is (= (:max-eid @full-conn) (:max-eid @chain-conn)))
            (is (= (:max-tx @full-conn) (:max-tx @chain-conn)))
            (doseq [at (range (inc tx0) (inc tx))]
              (is (= (as-of-eav @full-conn at) (as-of-eav @chain-conn at)) (str "as-of " at)))
            (when (= cut 23)
              (is (= #{[21 :person/id "p2" 536870917 true]} (set (remove ch fh)))
                  "the phantom of step 4 (re-asserted before the base, retracted at step 20)"))
            (d/release chain-conn)
            (d/release full-conn)))))))

(defbackend-test incremental-content-is-the-real-history-of-its-window [b]
  (let [t (bk/fresh-target b)
        {:keys [links]} (build-chain b t)
        real (:steps @w/reports)
        final-history (set (map u/typed (:final-history @w/reports)))
        in-views (set (map u/typed (mapcat :history-view-of-tx real)))]
    (doseq [[prev link] (partition 2 1 links)
            :let [[after through] [(:tx prev) (:tx link)]
                  window (filter #(< after (:tx %) (inc through)) real)
                  first-tx (:tx (first window))
                  content (mapv u/typed (stored-datoms b t "w" (:backup-id (:result link))))
                  ;; a :db/noHistory value current at the parent's basis and removed in the
                  ;; window (the delta has the removal, history has nothing): a retraction
                  ;; in the window's first transaction
                  removed (set (for [s window
                                     [e a v tx added] (:before-after-delta s)
                                     :when (and (= a :person/nick) (not added))
                                     :let [asserted (some (fn [[e' a' v' tx' added']]
                                                            (when (and (= [e a v] [e' a' v']) added') tx'))
                                                          (:final-history @w/reports))]
                                     :when (not (and asserted (< after asserted)))]
                                 (u/typed [e a v first-tx false])))]]
      (testing (str "window (" after ", " through "]")
        (is (apply <= (map #(nth % 3) content)) "transactions ascend")
        (is (= (into (set (filter #(< after (nth % 3) (inc through)) final-history)) removed)
               (set content))
            "the real history of the window, plus the removed :db/noHistory values")
        (is (= (count content) (count (set content))))
        (doseq [s window
                :let [tx (:tx s)
                      view (set (map u/typed (:history-view-of-tx s)))
                      held (set (filter #(= tx (nth % 3)) content))]]
          (is (every? #(or (removed %) (not (in-views %))) (remove view held))
              (str "step " (:step s) ": beyond its history view, only removals and phantoms"))
          (is (every? #(= :person/nick (nth % 1)) (remove held view))
              (str "step " (:step s) ": missing only :db/noHistory values replaced later")))))
    (testing "the known corners"
      (let [content (fn [i] (set (map u/typed (stored-datoms b t "w" (:backup-id (:result (nth links i)))))))]
        (is (contains? (content 1) [23 :person/nick "nick3" (w/tx-of 5) false]) "noHistory replaced")
        (is (contains? (content 1) [31 :person/nick "nick7" (w/tx-of 5) false]) "retractEntity of a noHistory value")
        (is (contains? (content 2) [37 :person/nick "nick10" (w/tx-of 10) false]) "explicit noHistory retraction")
        (is (contains? (content 2) [33 :person/name "Person 8" (w/tx-of 10) true])
            "the phantom of step 10 (made visible by step 12)")
        (is (some #(and (= [21 :person/photo] (subvec % 0 2)) (false? (nth % 4))) (content 4))
            "the byte-array retraction")
        (is (some #(= [42 :db/ident :person/score] (subvec % 0 3)) (content 3)) "schema added in an incremental")))))

(defbackend-test points-in-time-on-a-chain [b]
  (let [t (bk/fresh-target b)
        {:keys [links conn]} (build-chain b t)
        tip (:backup-id (:result (last links)))
        final @conn
        fh (vec (history-set final))
        config (:config @w/reports)
        base-phantom [21 :person/id "p2" 536870917 true]
        no-nick (fn [ds] (set (remove #(= :person/nick (nth % 1)) ds)))]
    (doseq [k (range 23)
            :let [at (w/tx-of k)]]
      (testing (str "as of step " k " (tx " at ")")
        (let [[c r] (restore-into b t "w" tip config :as-of-tx at)]
          (is (= at (:restored-to-tx r)))
          (is (= (w/instant-of k) (:restored-to-instant r)))
          (is (= (no-nick (as-of-eav final at)) (no-nick (eav (current-set @c)))) "the source's as-of view")
          (is (= (no-nick (disj (set (remove (phantoms fh at) (filter #(<= (nth % 3) at) fh))) base-phantom))
                 (no-nick (history-set @c)))
              "the source's history up to the point (without phantoms)")
          (d/release c))
        (let [[c r] (restore-into b t "w" tip config :as-of-time (w/instant-of k))]
          (is (= at (:restored-to-tx r)) "by instant")
          (d/release c))))
    (testing "bytes read: only the chunks up to the point"
      (let [[c r] (restore-into b t "w" tip config :as-of-tx (w/tx-of 6))]
        (is (= (subvec (:chain r) 0 2) (:links r)) "links after the point are not read")
        (is (< 0 (:bytes-read r) (reduce + (map (comp :total-size-bytes :result) links))))
        (d/release c)))
    (testing "points outside the chain"
      (doseq [[opt v] [[:as-of-tx tx0] [:as-of-tx (inc (w/tx-of 22))]
                       [:as-of-time #inst "2000-01-01"] [:as-of-time (java.util.Date. (long (+ 1000 (inst-ms (w/instant-of 22)))))]]]
        (let [c (empty-conn config)
              data (thrown #(bk/restore b c t tip :database-id "w" opt v))]
          (is (= :datacamp/invalid-argument (:datacamp/error data)) (str opt))
          (is (str/includes? (::message data) (str "transactions " (w/tx-of 0))) (::message data))
          (is (str/includes? (::message data) (str (w/tx-of 22))))
          (is (= 0 (count (d/datoms @c :eavt))) "the target is untouched")
          (d/release c))))))

;; ------------------------------------------------------------------ kitchen-sink

(defbackend-test point-in-time-at-every-tx-of-kitchen-sink [b]
  (let [fixture (fx/load-fixture "kitchen-sink")
        t (bk/fresh-target b)
        r (bk/backup b (fx/fixture-conn "kitchen-sink") t :database-id "ks" :chunk-size 20000)
        manifest (edn/read-string (bk/read-string-at b t (bk/backup-key "ks" (:backup-id r) "manifest.edn")))
        source (fx/fixture-db "kitchen-sink")
        history (mapv (comp u/typed u/datom-vec) (:history fixture))
        txs (sort (distinct (map #(nth % 3) history)))]
    (is (< 3 (:chunk-count r)))
    (doseq [at txs]
      (testing (str "as of " at)
        (let [[c res] (restore-into b t "ks" (:backup-id r) (:config fixture) :as-of-tx at)]
          (is (= at (:restored-to-tx res)))
          (is (= (typed-set (d/datoms (d/as-of source at) :eavt)) (current-set @c))
              "the fixture db's as-of view: the same datoms, ids and tx ids")
          (is (= (set (remove (phantoms history at) (filter #(<= (nth % 3) at) history)))
                 (history-set @c))
              "the fixture's history up to the point")
          (is (= (reduce + (for [ch (:chunks manifest) :when (<= (first (:chunk/tx-range ch)) at)]
                             (:chunk/size-bytes ch)))
                 (:bytes-read res))
              "only the chunks starting at or before the point are read")
          (d/release c))))))

;; ------------------------------------------------------------------ broken chains

(defn- short-chain
  "A full backup of the workload after 5 steps and incrementals after 10 and 16, in `t`."
  [b t]
  (let [conn (w/fresh-conn)]
    (mapv (fn [[from to]]
            (w/replay! conn from to)
            (:backup-id (if (zero? from)
                          (bk/backup b conn t :database-id "w")
                          (bk/backup b conn t :database-id "w" :incremental? true))))
          [[0 5] [5 10] [10 16]])))

(defbackend-test broken-chains-are-named-and-refused-before-the-target-is-touched [b]
  (let [t (bk/fresh-target b)
        [base mid tip] (short-chain b t)
        config (:config @w/reports)
        mkey (bk/backup-key "w" mid "manifest.edn")
        attempt (fn []
                  (let [c (empty-conn config)
                        data (thrown #(bk/restore b c t tip :database-id "w"))
                        n (count (d/datoms @c :eavt))]
                    (d/release c)
                    [data n]))
        verify #(backup/verify-backup t tip :database-id "w")]
    (is (:success (verify)))
    (is (= [base mid tip] (:chain (verify))))
    (testing "an edited parent: its basis no longer meets the next link"
      (let [text (bk/read-string-at b t mkey)]
        (bk/write-bytes! b t mkey (.getBytes (str/replace text (str ":stats/max-tx " (w/tx-of 9))
                                                          (str ":stats/max-tx " (dec (w/tx-of 9))))
                                             "UTF-8"))
        (let [[data n] (attempt)
              v (verify)]
          (is (= :datacamp/corrupt (:datacamp/error data)))
          (is (str/includes? (::message data) (str "parent " mid " ends at " (dec (w/tx-of 9)))) (::message data))
          (is (= 0 n) "nothing loaded")
          (is (false? (:success v)))
          (is (some #(str/includes? % (str "backup " tip " covers the transactions after " (w/tx-of 9))) (:problems v))
              (pr-str v)))
        (bk/write-bytes! b t mkey (.getBytes text "UTF-8"))))
    (testing "a deleted link"
      (let [saved (into {} (for [k (bk/keys-under b t (bk/backup-key "w" mid ""))] [k (bk/read-bytes b t k)]))]
        (doseq [k (keys saved)] (bk/delete! b t k))
        (let [[data n] (attempt)
              v (verify)]
          (is (= :datacamp/corrupt (:datacamp/error data)))
          (is (str/includes? (::message data) (str "parent " mid " is missing")) (::message data))
          (is (= 0 n))
          (is (some #(str/includes? % (str mid " is missing")) (:problems v)) (pr-str v)))
        (doseq [[k bs] saved] (bk/write-bytes! b t k bs))))
    (testing "a link's chunk gone"
      (let [k (bk/backup-key "w" base "chunks/datoms-0.fressian.gz")
            bs (bk/read-bytes b t k)]
        (bk/delete! b t k)
        (let [[data n] (attempt)
              v (verify)]
          (is (= :datacamp/corrupt (:datacamp/error data)))
          (is (str/includes? (::message data) "chunk 0 is missing"))
          (is (= 0 n))
          (is (some #(str/includes? % (str "link " base ": chunk 0 is missing")) (:problems v)) (pr-str v)))
        (bk/write-bytes! b t k bs)))
    (is (:success (backup/verify-backup t tip :database-id "w" :deep? true)) "repaired")))

(defbackend-test incrementals-are-refused-when-they-cannot-continue [b]
  (let [t (bk/fresh-target b)
        conn (w/conn-at 10)
        refused (fn [c & opts] (thrown #(apply bk/backup b c t :database-id "w" opts)))]
    (testing "no backup to continue"
      (let [data (refused conn :incremental? true)]
        (is (= :datacamp/invalid-argument (:datacamp/error data)))
        (is (:datacamp/hint data))))
    (let [r (bk/backup b conn t :database-id "w")]
      (testing "a database without history"
        (let [data (refused (fx/fixture-conn "no-history") :incremental? true)]
          (is (= :datacamp/invalid-argument (:datacamp/error data)))
          (is (str/includes? (::message data) "history"))
          (is (= "take a full backup instead" (:datacamp/hint data))))
        (is (= :datacamp/invalid-argument (:datacamp/error (refused conn :incremental? true :history? false)))))
      (testing "another Datahike database under the same database id"
        (let [data (refused (w/conn-at 12) :parent (:backup-id r))]
          (is (= :datacamp/invalid-argument (:datacamp/error data)))
          (is (str/includes? (::message data) "another Datahike database") (::message data))))
      (testing "a parent ahead of the database"
        (let [name (str "ahead-" (System/nanoTime))
              ahead (w/conn-at name 12)
              p (bk/backup b ahead t :database-id "w")
              behind (w/conn-at name 8)
              data (refused behind :parent (:backup-id p))]
          (is (= :datacamp/invalid-argument (:datacamp/error data)))
          (is (str/includes? (::message data) "is ahead of this database") (::message data))))
      (testing "an unknown parent"
        (is (= :datacamp/not-found (:datacamp/error (refused conn :parent "no-such-backup")))))
      (testing "nothing new: a tiny, valid incremental"
        (let [i (bk/backup b conn t :database-id "w" :parent (:backup-id r))]
          (is (= :incremental (:type i)))
          (is (= 0 (:datom-count i) (:chunk-count i)))
          (is (= (:max-tx r) (:after-tx i) (:max-tx i)))
          (is (:success (backup/verify-backup t (:backup-id i) :database-id "w" :deep? true))))))))

;; ------------------------------------------------------------------ retention

(defbackend-test prune-keeps-what-kept-backups-depend-on [b]
  (let [t (bk/fresh-target b)
        [f1 i1a i1b] (short-chain b t)
        conn (w/conn-at 18)
        f2 (:backup-id (bk/backup b conn t :database-id "w"))
        _ (w/replay! conn 18 20)
        i2a (:backup-id (bk/backup b conn t :database-id "w" :incremental? true))
        ids #(set (map :backup-id (backup/list-backups t "w")))]
    (testing "a dry run (the default) deletes nothing"
      (let [r (backup/prune-backups t "w" :keep-last 2)]
        (is (true? (:dry-run? r)))
        (is (= [i1b i1a f1] (:deleted r)) "dependents first")
        (is (= #{f1 i1a i1b f2 i2a} (ids)))))
    (testing "keep-last 3 keeps i1b and therefore its whole chain"
      (let [r (backup/prune-backups t "w" :keep-last 3 :dry-run? false)
            reasons (into {} (map (juxt :backup-id :reasons) (:kept r)))]
        (is (= [] (:deleted r)))
        (is (= [[:dependency-of (str i1b)]] (reasons i1a)))
        (is (= #{:keep-last} (set (reasons i2a))))))
    (testing "an incomplete backup is untouched and protects its chain"
      (bk/delete! b t (bk/backup-key "w" i1b "complete.marker"))
      (let [r (backup/prune-backups t "w" :keep-last 1 :dry-run? false)]
        (is (= [i1b] (:incomplete r)))
        (is (= [] (:deleted r)) "i1a and f1 are what i1b depends on; f2 is i2a's base")
        (is (= #{f1 i1a i1b f2 i2a} (ids))))
      (bk/write-bytes! b t (bk/backup-key "w" i1b "complete.marker") (.getBytes "complete" "UTF-8")))
    (testing "keep-last 2 deletes the older chain, the newer still restores"
      (let [r (backup/prune-backups t "w" :keep-last 2 :dry-run? false)]
        (is (= [i1b i1a f1] (:deleted r)))
        (is (< 0 (:objects-deleted r)))
        (is (= #{f2 i2a} (ids)))
        (doseq [id [f1 i1a i1b]] (is (bk/backup-gone? b t "w" id)))
        (is (:success (backup/verify-backup t i2a :database-id "w" :deep? true)))
        (let [[c res] (restore-into b t "w" i2a (:config @w/reports))]
          (is (= (w/tx-of 19) (:restored-to-tx res)))
          (is (= (eav (current-set @conn)) (eav (current-set @c))))
          (d/release c))))
    (testing "refusals"
      (is (= :datacamp/invalid-argument (:datacamp/error (thrown #(backup/prune-backups t "w")))))
      (is (= :datacamp/invalid-argument (:datacamp/error (thrown #(backup/prune-backups t "w" :keep-last -1))))))))

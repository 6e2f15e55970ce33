(ns datacamp.utils
  "Helpers the original datacamp documents for its users.

  `format-bytes`: a byte count as people read it, e.g. in the Quick Start's
  `(println \"Size:\" (datacamp.utils/format-bytes (:total-size-bytes result)))`.")

(set! *warn-on-reflection* true)

(def ^:private units
  "Binary units as the original datacamp names them (1 KB = 1024 bytes)."
  ["KB" "MB" "GB"])

(defn format-bytes
  "Given a byte count, return it as a string people read: \"512 B\" below 1024, else two
  decimals of the largest unit up to GB (1024-based): \"2.53 MB\", \"1.50 GB\",
  \"2048.00 GB\". Throws `:datacamp/invalid-argument` for anything but a non-negative
  number."
  [bytes]
  (when-not (and (number? bytes) (not (neg? bytes)))
    (throw (ex-info (str "format-bytes needs a non-negative number of bytes, got " (pr-str bytes))
                    {:datacamp/error :datacamp/invalid-argument :bytes bytes})))
  (if (< bytes 1024)
    (str bytes " B")
    (loop [x (/ (double bytes) 1024.0) [unit & more] units]
      (if (and (>= x 1024.0) (seq more))
        (recur (/ x 1024.0) more)
        (format "%.2f %s" x unit)))))

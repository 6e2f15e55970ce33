package datacamp.jni;

/**
 * The native entry points of the Datacamp core (declarations only; see src/jni/ in the crate).
 *
 * <p>Options and results cross as EDN strings (small, once per call); datoms cross as
 * primitive-array columns (see {@link DatomBatch} and src/wire.rs). Every method throws
 * {@link DatacampException} on failure; a Rust panic also arrives as that exception.
 * Handles returned by the {@code *Open} methods are owned by a {@link NativeHandle}.
 */
public final class Native {
    private Native() {}

    static {
        NativeLoader.load();
    }

    /** Ensure the native library is loaded (a no-op after the first call). */
    public static void init() {}

    /** Return the native core's version string. */
    public static native String version();

    /**
     * Given the target (EDN map, e.g. {@code {:path "/b"}}) and the backup options (EDN map),
     * open a backup session and return its handle. Validates everything before writing.
     */
    public static native long backupOpen(String targetEdn, String optionsEdn);

    /**
     * Push one batch of {@code n} datoms (columns as described in src/wire.rs) into session
     * {@code handle}. {@code newAttrs[0..newAttrsLen)} holds the attributes first used in
     * this batch, tagged; {@code vbytes[0..vbytesLen)} the non-scalar value payloads.
     */
    public static native void backupPush(long handle, int n, long[] e, int[] a, long[] tx,
                                         boolean[] added, byte[] vtag, long[] vnum,
                                         byte[] vbytes, int vbytesLen,
                                         byte[] newAttrs, int newAttrsLen);

    /** Finish session {@code handle}: write the remaining chunks and the manifest; return the result as EDN. */
    public static native String backupFinish(long handle);

    /** Abort session {@code handle}, leaving a backup that lists as incomplete. */
    public static native void backupAbort(long handle);

    /** Free session {@code handle} (aborting it if still open). Safe to call once per handle. */
    public static native void backupFree(long handle);

    /**
     * Return the state of one backup as EDN: {@code {:state :complete|:incomplete|:missing
     * :config …}} (the recorded options and snapshot that resuming needs).
     */
    public static native String backupStatus(String targetEdn, String databaseId, String backupId);

    /** List the backups of {@code databaseId} under the target; return an EDN vector. */
    public static native String listBackups(String targetEdn, String databaseId);

    /** Verify one backup; return the EDN report ({@code optionsEdn}: {@code :encryption}). */
    public static native String verifyBackup(String targetEdn, String databaseId,
                                             String backupId, boolean deep, String optionsEdn);

    /**
     * Decode the stored (gzip) bytes of one chunk with the native decoder. Returns
     * {@code Object[]{Long chunkId, long[] e, int[] a, long[] tx, boolean[] added, byte[] vtag,
     * long[] vnum, byte[] vbytes, byte[] newAttrs}}: the chunk's datoms as one batch whose
     * attribute table starts empty (feed it to a fresh {@link ValueDecoder}).
     */
    public static native Object[] decodeChunk(byte[] stored);

    /**
     * Open a restore of one backup ({@code optionsEdn} names {@code :database-id} and
     * {@code :backup-id}); return its handle. Fails if the backup is missing or incomplete.
     */
    public static native long restoreOpen(String targetEdn, String optionsEdn);

    /**
     * Return what restore session {@code handle}'s backup says about itself, as EDN (for a
     * chain or a point in time also the links and the plan); {@code :restored-to-tx} and
     * {@code :restored-to-instant} tell how far the datoms handed out so far reach.
     */
    public static native String restoreInfo(long handle);

    /**
     * Return the next batch of restore session {@code handle} in the layout of
     * {@link #decodeChunk} (element 0: the chunk the batch's last datom came from), or null
     * at the end. Attribute ids continue across the batches of one session.
     */
    public static native Object[] restoreNext(long handle);

    /** Free restore session {@code handle}. Safe to call once per handle. */
    public static native void restoreFree(long handle);

    /** Re-wrap the data keys of a database's encrypted backups ({@code {:old-key … :new-key …}}); return the EDN report. */
    public static native String rewrapBackupKeys(String targetEdn, String databaseId, String optionsEdn);

    /** Rebuild the damaged manifest of a finished backup from its checkpoint; return the EDN report. */
    public static native String repairManifest(String targetEdn, String databaseId, String backupId);

    /**
     * Apply a retention policy ({@code optionsEdn}: {@code :keep-last :keep-daily :keep-weekly
     * :keep-monthly :dry-run?}) to the complete backups of {@code databaseId}, never deleting a
     * backup that a kept one depends on; return the EDN report of what was kept and deleted.
     */
    public static native String pruneBackups(String targetEdn, String databaseId, String optionsEdn);

    /**
     * Return the progress counters of backup session {@code handle} as EDN ({@code {:stage
     * :reading|:sorting|:writing|:committing|:done :datoms-received … :chunks-stored …
     * :datoms-stored … :bytes-stored …}}); callable from any thread, also while another
     * thread finishes the session.
     */
    public static native String backupProgress(long handle);

    /**
     * Check the keys of {@code optionsEdn} (an EDN map) against those operation {@code op}
     * ({@code "backup"}, {@code "resume"}, {@code "restore"}, {@code "verify"},
     * {@code "cleanup"}) accepts; throw naming an unknown key and the closest known one.
     */
    public static native void checkOptions(String op, String optionsEdn);

    /**
     * Read and parse one EDN metadata file of the target (size-limited) and return it as
     * EDN: with {@code databaseId} and {@code backupId}, {@code name} is one of that backup's
     * metadata files ({@code manifest.edn}, {@code config.edn}, {@code checkpoint.edn}); with
     * both null, a key relative to the target's root.
     */
    public static native String readMetadata(String targetEdn, String databaseId,
                                             String backupId, String name);

    /** Remove incomplete backups older than {@code olderThanMillis}; return EDN of what was removed. */
    public static native String cleanupIncomplete(String targetEdn, String databaseId,
                                                  long olderThanMillis);

    // ------------------------------------------------------------------ continuous capture

    /**
     * Open a continuous capture session (target and options as EDN: database facts, flush
     * interval, spool…): takes the database's capture lock, stores what a killed session
     * left in the spool, decides which chain to continue and starts the new log; returns
     * its handle.
     */
    public static native long logOpen(String targetEdn, String optionsEdn);

    /** Return how capture session {@code handle} started, as EDN ({@code :log-id :plan …}). */
    public static native String logInfo(long handle);

    /**
     * Append live transactions to capture session {@code handle}: a batch of {@code n}
     * datoms in columns (as {@link #backupPush}) and {@code markCount} transaction marks,
     * six longs each: {@code before, after, datoms, committedMs, instantMs} (Long.MIN_VALUE:
     * none) and flags (bit 0: caught up). Returns 0 when taken, 1 when refused (spool full).
     */
    public static native int logPush(long handle, int n, long[] e, int[] a, long[] tx,
                                     boolean[] added, byte[] vtag, long[] vnum,
                                     byte[] vbytes, int vbytesLen,
                                     byte[] newAttrs, int newAttrsLen,
                                     int markCount, long[] marks);

    /** Seal the open segment of session {@code handle} if its flush interval passed; return whether it did. */
    public static native boolean logTick(long handle);

    /**
     * Begin a catch-up of session {@code handle} up to transaction {@code through} (the
     * :max-tx of the database value whose history is pushed next); {@code orderEdn} (or
     * null) holds that value's {@code :ref-attrs :tx-instant-attr :skip-tx0?}. Returns the
     * transaction the catch-up starts after.
     */
    public static native long logCatchUpBegin(long handle, long through, String orderEdn);

    /** Push one batch of the catch-up's history walk (EAVT order; columns as {@link #backupPush}). */
    public static native void logCatchUpPush(long handle, int n, long[] e, int[] a, long[] tx,
                                             boolean[] added, byte[] vtag, long[] vnum,
                                             byte[] vbytes, int vbytesLen,
                                             byte[] newAttrs, int newAttrsLen);

    /** Append the caught-up transactions to the log; return EDN {@code {:txs :datoms :datoms-read :refused?}}. */
    public static native String logCatchUpFinish(long handle);

    /** Drop the catch-up in progress of session {@code handle}. */
    public static native void logCatchUpAbort(long handle);

    /**
     * Start a new chain's log in session {@code handle}: its base is the full backup
     * {@code backupId}, its segments start after {@code after}; with {@code dual} the
     * current log keeps taking segments until retired. Returns the new log id as EDN.
     */
    public static native String logNewChain(long handle, String backupId, long after,
                                            boolean dual, String reason);

    /** Stop sending segments to log {@code logId}; it is closed once it holds everything captured. */
    public static native void logRetire(long handle, String logId, String reason);

    /** Return the status of capture session {@code handle} as EDN. */
    public static native String logStatus(long handle);

    /** Seal and wait at most {@code timeoutMs} until everything captured is durable; return the status. */
    public static native String logFlush(long handle, long timeoutMs);

    /** Flush (at most {@code timeoutMs}), close the logs and release the lock; return the final status. */
    public static native String logClose(long handle, long timeoutMs, String reason);

    /** Free capture session {@code handle} (closing it at once if still open). Safe once per handle. */
    public static native void logFree(long handle);
}

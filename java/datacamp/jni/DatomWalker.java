package datacamp.jni;

import clojure.lang.ISeq;
import clojure.lang.RT;

/**
 * Walks a Clojure seqable of datoms and pushes them into a native backup session in
 * columnar batches: one JNI call per batch, never per datom.
 *
 * <p>A datom is anything {@code clojure.lang.RT#nth} reads as {@code [e a v tx added]}:
 * Datahike's {@code datahike.datom.Datom} (which implements {@code Indexed}) or a vector.
 * The seq is walked lazily, so heap use is bounded by one batch whatever the database size.
 */
public final class DatomWalker {
    private DatomWalker() {}

    /**
     * Given a seqable of datoms, a native backup session handle and a batch size, push every
     * datom and return how many were pushed. Throws {@link DatacampException} when a value
     * cannot be encoded or the session fails; stops with an exception if the thread is
     * interrupted.
     */
    public static long pushAll(Object datoms, long handle, int batchSize) {
        return pushAll(datoms, handle, batchSize, false);
    }

    /**
     * As {@link #pushAll(Object, long, int)}, into a backup session, or with
     * {@code catchUp} into the catch-up running in native capture session {@code handle}
     * ({@link DatomBatch#pushToCatchUp}).
     */
    public static long pushAll(Object datoms, long handle, int batchSize, boolean catchUp) {
        DatomBatch batch = new DatomBatch(batchSize);
        long n = 0;
        for (ISeq s = RT.seq(datoms); s != null; s = s.next()) {
            Object d = s.first();
            long e = ((Number) RT.nth(d, 0)).longValue();
            Object a = RT.nth(d, 1);
            Object v = RT.nth(d, 2);
            long tx = ((Number) RT.nth(d, 3)).longValue();
            boolean added = RT.booleanCast(RT.nth(d, 4));
            if (batch.add(e, a, v, tx, added)) {
                push(batch, handle, catchUp);
                if (Thread.interrupted()) {
                    throw new DatacampException("interrupted", "push datoms", null, null,
                            "the backup thread was interrupted");
                }
            }
            n++;
        }
        if (batch.count() > 0) {
            push(batch, handle, catchUp);
        }
        return n;
    }

    private static void push(DatomBatch batch, long handle, boolean catchUp) {
        if (catchUp) {
            batch.pushToCatchUp(handle);
        } else {
            batch.pushTo(handle);
        }
    }
}

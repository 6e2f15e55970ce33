package datacamp.jni;

import clojure.lang.ISeq;
import clojure.lang.RT;

/**
 * Walks a Clojure seqable of datoms and pushes them into a native backup session in
 * columnar batches: one JNI call per batch, never per datom.
 *
 * <p>A datom is anything {@code clojure.lang.RT#nth} reads as {@code [e a v tx added]}:
 * Datahike's {@code datahike.datom.Datom} (which implements {@code Indexed}) or a vector.
 * The seq is walked lazily and its head is kept by no frame, so heap use is bounded by one
 * batch whatever the database size.
 */
public final class DatomWalker {
    private DatomWalker() {}

    /**
     * Given a one-element array holding a seqable of datoms, a native backup session handle
     * and a batch size, take the seqable out of the array (leaving null) and push every
     * datom; return how many were pushed. Throws {@link DatacampException} when a value
     * cannot be encoded or the session fails; stops with an exception if the thread is
     * interrupted.
     *
     * <p>The seqable comes in an array so that no caller's frame keeps the head of the seq
     * while it is walked (a parameter would): the heap then holds one batch of datoms,
     * whatever the database's size. The caller must not keep the seqable either.
     */
    public static long pushAll(Object[] holder, long handle, int batchSize) {
        return walk(take(holder), handle, batchSize, false);
    }

    /**
     * As {@link #pushAll(Object[], long, int)}, into a backup session, or with
     * {@code catchUp} into the catch-up running in native capture session {@code handle}
     * ({@link DatomBatch#pushToCatchUp}).
     */
    public static long pushAll(Object[] holder, long handle, int batchSize, boolean catchUp) {
        return walk(take(holder), handle, batchSize, catchUp);
    }

    /** Return {@code holder[0]}, leaving null in its place. */
    private static Object take(Object[] holder) {
        Object datoms = holder[0];
        holder[0] = null;
        return datoms;
    }

    private static long walk(Object datoms, long handle, int batchSize, boolean catchUp) {
        DatomBatch batch = new DatomBatch(batchSize);
        long n = 0;
        ISeq s = RT.seq(datoms);
        datoms = null; // from here on only the walking local refers to the seq
        for (; s != null; s = s.next()) {
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

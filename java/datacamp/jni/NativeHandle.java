package datacamp.jni;

import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongConsumer;
import java.util.function.LongFunction;

/**
 * The owner of one native session handle (an opaque non-zero {@code long}).
 *
 * <p>{@link #close()} frees the handle exactly once, however often and from however many
 * threads it is called. If the owner is garbage-collected without being closed, a
 * {@link Cleaner} frees the handle as a safety net (the cleaning action holds only the
 * handle and the freeing function, never this object). Relying on that is a bug in the
 * caller: close explicitly (e.g. {@code with-open}).
 *
 * <p><b>Reachability.</b> After {@code long h = handle.get()} the JIT may consider this
 * object dead, and the Cleaner could free {@code h} while a native call still uses it.
 * Prefer {@link #apply(LongFunction)} / {@link #run(LongConsumer)} (or
 * {@link DatomBatch#pushTo(NativeHandle)}), which keep this object reachable until the call
 * returns, or keep it reachable yourself with {@link Reference#reachabilityFence(Object)}.
 *
 * <p>Closing concurrently with a call that uses the handle is the caller's responsibility to
 * prevent (the native side would see a freed handle).
 */
public final class NativeHandle implements AutoCloseable {
    private static final Cleaner CLEANER = Cleaner.create();

    /** The cleaning state: must not reference the NativeHandle. */
    private static final class State implements Runnable {
        final AtomicLong handle;
        final LongConsumer free;

        State(long handle, LongConsumer free) {
            this.handle = new AtomicLong(handle);
            this.free = free;
        }

        @Override
        public void run() {
            long h = handle.getAndSet(0L);
            if (h != 0L) {
                free.accept(h);
            }
        }
    }

    private final State state;
    private final Cleaner.Cleanable cleanable;

    /**
     * Given a non-zero native handle and the function that frees it, return its owner.
     *
     * @param handle the native handle (0 is reserved for "closed")
     * @param free   called exactly once with {@code handle}, by {@link #close()} or the Cleaner
     * @throws IllegalArgumentException if {@code handle} is 0
     * @throws NullPointerException     if {@code free} is null
     */
    public NativeHandle(long handle, LongConsumer free) {
        if (handle == 0L) {
            throw new IllegalArgumentException("native handle must not be 0");
        }
        if (free == null) {
            throw new NullPointerException("free");
        }
        this.state = new State(handle, free);
        this.cleanable = CLEANER.register(this, state);
    }

    /**
     * Return the native handle.
     *
     * @return the handle (never 0)
     * @throws IllegalStateException if this handle has been closed
     */
    public long get() {
        long h = state.handle.get();
        if (h == 0L) {
            throw new IllegalStateException("native handle already closed");
        }
        return h;
    }

    /**
     * Return whether this handle has been closed (or freed by the Cleaner).
     *
     * @return true once closed
     */
    public boolean isClosed() {
        return state.handle.get() == 0L;
    }

    /**
     * Call {@code op} with the handle and return its result, keeping this object reachable
     * until {@code op} returns (so the Cleaner cannot free the handle mid-call).
     *
     * @param op  the operation, typically a native call
     * @param <T> the result type
     * @return what {@code op} returned
     * @throws IllegalStateException if this handle has been closed
     */
    public <T> T apply(LongFunction<T> op) {
        try {
            return op.apply(get());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Call {@code op} with the handle, keeping this object reachable until {@code op}
     * returns (so the Cleaner cannot free the handle mid-call).
     *
     * @param op the operation, typically a native call
     * @throws IllegalStateException if this handle has been closed
     */
    public void run(LongConsumer op) {
        try {
            op.accept(get());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Free the handle if it is still open; later calls (and the Cleaner) do nothing.
     * An exception from the freeing function propagates, but the handle counts as freed.
     */
    @Override
    public void close() {
        cleanable.clean();
    }

    /**
     * Return a description with the handle value (0 when closed), for logs.
     *
     * @return a description
     */
    @Override
    public String toString() {
        return "NativeHandle[" + state.handle.get() + "]";
    }
}

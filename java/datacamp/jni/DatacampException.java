package datacamp.jni;

/**
 * The one exception type of Datacamp's Java side and of the native core.
 *
 * <p>It carries the same fields as the Rust {@code datacamp::error::Error}: a coarse
 * {@link #getKind() kind} (which becomes the {@code :datacamp/error} keyword on the Clojure
 * side and decides retries), the {@link #getOp() operation} that failed, the
 * {@link #getKey() key or path} concerned, a {@link #getHint() hint} a person can act on,
 * and the bare {@link #getDetail() detail} message.
 *
 * <p><b>JNI contract.</b> The native core constructs this class through the constructor
 * {@link #DatacampException(String, String, String, String, String)}, i.e. JNI signature
 * {@code (Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;Ljava/lang/String;)V}.
 * That constructor is stable; the native side should pass the bare message
 * ({@code Error::message}), not the {@code Display} form, because {@link #getMessage()}
 * composes op, key and hint itself.
 */
public class DatacampException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** Kind: a caller's argument or option is not acceptable (nothing was written). */
    public static final String INVALID_ARGUMENT = "invalid-argument";
    /** Kind: a file, object or backup does not exist. */
    public static final String NOT_FOUND = "not-found";
    /** Kind: stored bytes do not decode or do not match their checksum. */
    public static final String CORRUPT = "corrupt";
    /** Kind: a local I/O failure (disk full, permission denied, …). */
    public static final String IO = "io";
    /** Kind: a failure that may succeed when retried (network, throttling, 5xx). */
    public static final String TRANSIENT = "transient";
    /** Kind: a value that the format cannot represent. */
    public static final String UNSUPPORTED_VALUE = "unsupported-value";
    /** Kind: the operation conflicts with existing state (backup exists, lock held, …). */
    public static final String CONFLICT = "conflict";
    /** Kind: a bug, an invariant did not hold (including caught Rust panics). */
    public static final String INTERNAL = "internal";

    /** The coarse kind (never null). */
    private final String kind;
    /** The operation that failed (never null). */
    private final String op;
    /** The key or path concerned, or null. */
    private final String key;
    /** The hint, or null. */
    private final String hint;
    /** The bare message (never null). */
    private final String detail;

    /**
     * Given the kind, the operation, the key (or null), the hint (or null) and the bare
     * message, return a new exception. A null kind becomes {@link #INTERNAL}, a null op
     * {@code "unknown operation"}, a null message the empty string. This is the constructor
     * the native core calls; its signature will not change.
     *
     * @param kind    one of the kind constants of this class, e.g. {@code "io"}
     * @param op      what was being done, e.g. {@code "write chunk"}
     * @param key     the file path or object key concerned, or null
     * @param hint    what the user can do about it, or null
     * @param message the bare human-readable detail
     */
    public DatacampException(String kind, String op, String key, String hint, String message) {
        this(kind, op, key, hint, message, null);
    }

    /**
     * As {@link #DatacampException(String, String, String, String, String)}, with a cause.
     *
     * @param kind    the kind
     * @param op      the operation
     * @param key     the key or path, or null
     * @param hint    the hint, or null
     * @param message the bare detail
     * @param cause   the underlying cause, or null
     */
    public DatacampException(String kind, String op, String key, String hint, String message,
                             Throwable cause) {
        super(compose(kind == null ? INTERNAL : kind, op == null ? "unknown operation" : op,
                      key, hint, message == null ? "" : message), cause);
        this.kind = kind == null ? INTERNAL : kind;
        this.op = op == null ? "unknown operation" : op;
        this.key = key;
        this.hint = hint;
        this.detail = message == null ? "" : message;
    }

    private static String compose(String kind, String op, String key, String hint, String message) {
        StringBuilder sb = new StringBuilder(op.length() + message.length() + 32);
        sb.append(op).append(": ").append(message);
        if (key != null) sb.append(" (").append(key).append(')');
        if (hint != null) sb.append("; ").append(hint);
        sb.append(" [").append(kind).append(']');
        return sb.toString();
    }

    /**
     * Return the coarse kind, e.g. {@code "io"} or {@code "unsupported-value"} (never null).
     *
     * @return the kind
     */
    public String getKind() {
        return kind;
    }

    /**
     * Return the operation that failed, e.g. {@code "encode datom"} (never null).
     *
     * @return the operation
     */
    public String getOp() {
        return op;
    }

    /**
     * Return the file path or object key concerned, or null.
     *
     * @return the key or null
     */
    public String getKey() {
        return key;
    }

    /**
     * Return the hint a person can act on, or null.
     *
     * @return the hint or null
     */
    public String getHint() {
        return hint;
    }

    /**
     * Return the bare message as given to the constructor (never null). {@link #getMessage()}
     * instead returns the composed form {@code "op: detail (key); hint [kind]"}.
     *
     * @return the bare detail message
     */
    public String getDetail() {
        return detail;
    }
}

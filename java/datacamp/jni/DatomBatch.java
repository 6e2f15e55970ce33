package datacamp.jni;

import clojure.lang.BigInt;
import clojure.lang.IPersistentList;
import clojure.lang.IPersistentVector;
import clojure.lang.ISeq;
import clojure.lang.Keyword;
import clojure.lang.Ratio;
import clojure.lang.Sequential;
import clojure.lang.Symbol;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Date;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;

/**
 * The columnar encoder for the backup direction: the Clojure wrapper {@link #add adds} datoms,
 * and each full batch crosses JNI in one call ({@link #pushTo(long)}). The layout is the
 * contract of {@code src/wire.rs}; tags are in {@link Wire}.
 *
 * <p><b>Columns.</b> For datom {@code i < count()}: {@code e()[i]}, {@code a()[i]} (attribute
 * id), {@code tx()[i]}, {@code added()[i]}, {@code vtag()[i]} and {@code vnum()[i]} (the payload
 * of scalar tags, 0 otherwise). The payloads of non-scalar values are concatenated in datom
 * order in {@code vbytes()[0..vbytesLength())}, each in the tagged encoding without its tag
 * byte. Arrays are reused across batches: only the first {@code count()} (resp. length)
 * entries are meaningful, and {@code vbytes()}/{@code newAttrs()} may be replaced by larger
 * arrays when they grow, so fetch them after the last {@code add}.
 *
 * <p><b>Attributes.</b> Attributes are interned to ids 0, 1, 2 … in order of first use. The
 * table lives as long as this object, across {@link #clear()}, and mirrors the native
 * session's table: the attributes first used in the current batch are appended, tagged
 * (KEYWORD, or LONG for {@code :attribute-refs?} databases), to {@code newAttrs()}. Hence a
 * DatomBatch must feed exactly one session (or call {@link #resetAttributes()} for a new one).
 * Accepted attributes: {@link Keyword}, {@link Long}, {@link Integer}, {@link Short},
 * {@link Byte} (integers are interned as {@code Long}, so {@code 5} and {@code 5L} share an id).
 *
 * <p><b>Values</b> (checked in this order, most common first):
 * <table>
 *   <caption>Java class to wire tag</caption>
 *   <tr><td>Long, Integer, Short, Byte</td><td>LONG</td></tr>
 *   <tr><td>String</td><td>STRING (UTF-8; an unpaired surrogate is rejected)</td></tr>
 *   <tr><td>clojure.lang.Keyword / Symbol</td><td>KEYWORD / SYMBOL</td></tr>
 *   <tr><td>Double / Float</td><td>DOUBLE / FLOAT (raw bits: NaN payloads and -0.0 kept)</td></tr>
 *   <tr><td>Boolean, null</td><td>TRUE / FALSE, NIL</td></tr>
 *   <tr><td>java.util.Date (incl. java.sql.Timestamp: millis only)</td><td>INST</td></tr>
 *   <tr><td>java.util.UUID</td><td>UUID</td></tr>
 *   <tr><td>clojure.lang.BigInt, java.math.BigInteger</td><td>BIGINT (both decode as BigInt)</td></tr>
 *   <tr><td>java.math.BigDecimal</td><td>BIGDEC (scale kept)</td></tr>
 *   <tr><td>clojure.lang.Ratio</td><td>RATIO</td></tr>
 *   <tr><td>Character</td><td>CHAR</td></tr>
 *   <tr><td>byte[]</td><td>BYTES</td></tr>
 *   <tr><td>clojure.lang.IPersistentVector</td><td>VECTOR</td></tr>
 *   <tr><td>java.util.Map (Clojure maps, records, HashMap …)</td><td>MAP (entry order = iteration order)</td></tr>
 *   <tr><td>java.util.Set (Clojure sets, HashSet …)</td><td>SET (element order = iteration order)</td></tr>
 *   <tr><td>IPersistentList, ISeq, other Sequential collections (lists, lazy seqs, conses, queues)</td><td>LIST</td></tr>
 *   <tr><td>any other java.util.List (ArrayList, Arrays$ArrayList …)</td><td>VECTOR</td></tr>
 *   <tr><td>any other java.util.Collection</td><td>LIST</td></tr>
 * </table>
 * <p><b>List-vs-vector rule:</b> Clojure's own types decide (vector → VECTOR, list/seq →
 * LIST). A non-Clojure {@code java.util.List} becomes VECTOR: that is what such values almost
 * always were (Fressian reads Clojure vectors back as {@code java.util.List}, and Datahike
 * tuples must be vectors; see tests/fixtures/README.txt). Anything else is rejected with
 * {@link DatacampException} kind {@code "unsupported-value"} naming the class and the datom.
 * Collections nest at most {@value #MAX_DEPTH} levels.
 *
 * <p>Not thread-safe. A failed {@link #add} leaves the batch exactly as it was before.
 */
public final class DatomBatch {
    /** The default soft limit of {@code vbytes}, 4 MiB: {@link #add} reports "full" beyond it. */
    public static final int DEFAULT_BYTE_BUDGET = 4 << 20;
    /**
     * The deepest collection nesting {@link #add} accepts (the top-level value is depth 0):
     * the native codecs' limit ({@code codec::MAX_DEPTH} in the crate), so that a backup
     * refuses what a restore could not read.
     */
    public static final int MAX_DEPTH = 100;

    private static final int MAX_ARRAY = Integer.MAX_VALUE - 16;
    private static final String OP = "encode datom";
    private static final String TYPES_HINT =
        "storable values are nil, booleans, integers, doubles, floats, strings, keywords, symbols, "
        + "chars, dates, UUIDs, big integers, big decimals, ratios, byte arrays, and vectors, lists, "
        + "sets and maps of these";

    private final int capacity;
    private final int byteBudget;

    private final long[] e;
    private final int[] a;
    private final long[] tx;
    private final boolean[] added;
    private final byte[] vtag;
    private final long[] vnum;
    private byte[] vbytes;
    private int vlen;
    private byte[] newAttrs;
    private int newAttrsLen;
    private int count;

    private final HashMap<Object, Integer> attrIds = new HashMap<>();
    private final ArrayList<Object> attrList = new ArrayList<>();
    private Object lastAttr;
    private int lastAttrId = -1;

    /** The payload of the scalar just encoded at the top level (see encode). */
    private long scalar;

    /**
     * Given the maximum number of datoms per batch, return an empty batch with the
     * {@link #DEFAULT_BYTE_BUDGET default byte budget}.
     *
     * @param capacity the number of datoms after which {@link #add} reports "full" (&gt; 0)
     * @throws IllegalArgumentException if {@code capacity <= 0}
     */
    public DatomBatch(int capacity) {
        this(capacity, DEFAULT_BYTE_BUDGET);
    }

    /**
     * Given the maximum number of datoms per batch and the soft limit of the value bytes,
     * return an empty batch. The byte budget is soft: one large value may exceed it (the
     * buffer grows as needed); {@link #add} then reports "full".
     *
     * @param capacity   the number of datoms after which {@link #add} reports "full" (&gt; 0)
     * @param byteBudget the {@code vbytes} length from which {@link #add} reports "full" (&gt; 0)
     * @throws IllegalArgumentException if an argument is not positive
     */
    public DatomBatch(int capacity, int byteBudget) {
        if (capacity <= 0) throw new IllegalArgumentException("capacity must be positive: " + capacity);
        if (byteBudget <= 0) throw new IllegalArgumentException("byteBudget must be positive: " + byteBudget);
        this.capacity = capacity;
        this.byteBudget = byteBudget;
        this.e = new long[capacity];
        this.a = new int[capacity];
        this.tx = new long[capacity];
        this.added = new boolean[capacity];
        this.vtag = new byte[capacity];
        this.vnum = new long[capacity];
        this.vbytes = new byte[(int) Math.min(byteBudget, Math.max(1024L, capacity * 16L))];
        this.newAttrs = new byte[256];
    }

    // ------------------------------------------------------------------ adding

    /**
     * Append datom {@code [e a v tx added]}; return whether the batch is now full (count
     * reached capacity, or {@code vbytes} reached the byte budget) and must be pushed or
     * cleared before the next add.
     *
     * @param e     the entity id
     * @param a     the attribute: a Keyword, or an integer id ({@code :attribute-refs?})
     * @param v     the value (see the class doc for the accepted classes)
     * @param tx    the transaction id, positive
     * @param added true for an assertion, false for a retraction
     * @return true when the batch is full
     * @throws DatacampException     kind {@code "unsupported-value"} for a value or attribute
     *                               that cannot be encoded (the message names the datom),
     *                               {@code "invalid-argument"} for {@code tx <= 0}; the batch
     *                               is unchanged
     * @throws IllegalStateException if the batch already holds {@code capacity} datoms
     */
    public boolean add(long e, Object a, Object v, long tx, boolean added) {
        final int i = count;
        if (i >= capacity) {
            throw new IllegalStateException("DatomBatch is full (" + capacity + " datoms): push or clear it first");
        }
        if (tx <= 0) {
            throw new DatacampException(DatacampException.INVALID_ARGUMENT, OP, null,
                "pass the positive tx id and the added flag separately",
                "tx must be positive, got " + tx + " in datom " + datomString(e, a, v, tx, added));
        }
        int aid;
        if (a == lastAttr && a != null) {
            aid = lastAttrId;
        } else {
            Object key = attrKey(a, e, v, tx, added);
            Integer id = attrIds.get(key);
            aid = id == null ? -1 : id;
        }
        final int mark = vlen;
        final byte tag;
        try {
            scalar = 0L;
            tag = encode(v, true, 0);
        } catch (DatacampException ex) {
            vlen = mark;
            throw new DatacampException(ex.getKind(), ex.getOp(), ex.getKey(), ex.getHint(),
                ex.getDetail() + " in datom " + datomString(e, a, v, tx, added), ex.getCause());
        } catch (RuntimeException | Error ex) {
            vlen = mark;
            throw ex;
        }
        if (aid < 0) {
            try {
                aid = intern(attrKey(a, e, v, tx, added));
            } catch (DatacampException ex) {
                vlen = mark;
                throw new DatacampException(ex.getKind(), ex.getOp(), ex.getKey(), ex.getHint(),
                    ex.getDetail() + " in datom " + datomString(e, a, v, tx, added), ex.getCause());
            }
        }
        lastAttr = a;
        lastAttrId = aid;
        this.e[i] = e;
        this.a[i] = aid;
        this.tx[i] = tx;
        this.added[i] = added;
        this.vtag[i] = tag;
        this.vnum[i] = scalar;
        count = i + 1;
        return count >= capacity || vlen >= byteBudget;
    }

    /**
     * Push this batch into native backup session {@code handle} with one
     * {@link Native#backupPush} call, then {@link #clear()} it. An empty batch is not pushed.
     * If the native call throws, the batch is left unchanged and the session must be
     * aborted (its attribute table may no longer match this batch's).
     *
     * @param handle a native backup session handle
     * @throws DatacampException from the native side
     */
    public void pushTo(long handle) {
        if (count == 0) {
            return;
        }
        Native.backupPush(handle, count, e, a, tx, added, vtag, vnum, vbytes, vlen, newAttrs, newAttrsLen);
        clear();
    }

    /**
     * Push this batch into native capture session {@code handle} as one catch-up batch of
     * the history walk ({@link Native#logCatchUpPush}), then {@link #clear()} it; as
     * {@link #pushTo(long)} otherwise.
     *
     * @param handle a native capture session handle with a catch-up running
     * @throws DatacampException from the native side
     */
    public void pushToCatchUp(long handle) {
        if (count == 0) {
            return;
        }
        Native.logCatchUpPush(handle, count, e, a, tx, added, vtag, vnum, vbytes, vlen, newAttrs, newAttrsLen);
        clear();
    }

    /**
     * Push this batch into native capture session {@code handle} as live transactions
     * ({@link Native#logPush}): {@code marks[0 .. 6 * markCount)} describes them in order,
     * six longs each ({@code before, after, datoms, committedMs, instantMs, flags}; the
     * datom counts add up to {@link #count()}). Then {@link #clear()} it, also when the
     * session refused the transactions.
     *
     * @param handle    a native capture session handle
     * @param markCount the number of transactions
     * @param marks     their marks
     * @return 0 when the session took them, 1 when it refused them (its spool is full)
     * @throws DatacampException from the native side (the batch is left unchanged)
     */
    public int pushToLog(long handle, int markCount, long[] marks) {
        int r = Native.logPush(handle, count, e, a, tx, added, vtag, vnum, vbytes, vlen, newAttrs, newAttrsLen,
                               markCount, marks);
        clear();
        return r;
    }

    /**
     * As {@link #pushTo(long)} with {@code handle.get()}, keeping {@code handle} reachable
     * during the native call (see {@link NativeHandle}).
     *
     * @param handle the owner of a native backup session
     * @throws IllegalStateException if {@code handle} is closed
     * @throws DatacampException     from the native side
     */
    public void pushTo(NativeHandle handle) {
        handle.run(this::pushTo);
    }

    /**
     * Forget the datoms, the value bytes and the new-attribute list of this batch; keep the
     * arrays and the attribute table (ids stay valid for the next batch of the same session).
     */
    public void clear() {
        count = 0;
        vlen = 0;
        newAttrsLen = 0;
    }

    /**
     * {@link #clear()}, and also forget the attribute table, for use with a new session.
     */
    public void resetAttributes() {
        clear();
        attrIds.clear();
        attrList.clear();
        lastAttr = null;
        lastAttrId = -1;
    }

    // ------------------------------------------------------------------ accessors

    /** @return the number of datoms in this batch */
    public int count() { return count; }

    /** @return the maximum number of datoms per batch */
    public int capacity() { return capacity; }

    /** @return the soft limit of {@link #vbytesLength()} */
    public int byteBudget() { return byteBudget; }

    /** @return whether the batch is full (count reached capacity or vbytes the byte budget) */
    public boolean isFull() { return count >= capacity || vlen >= byteBudget; }

    /** @return the entity column (first {@link #count()} entries meaningful) */
    public long[] e() { return e; }

    /** @return the attribute-id column (first {@link #count()} entries meaningful) */
    public int[] a() { return a; }

    /** @return the transaction-id column (first {@link #count()} entries meaningful) */
    public long[] tx() { return tx; }

    /** @return the added column (first {@link #count()} entries meaningful) */
    public boolean[] added() { return added; }

    /** @return the value-tag column (first {@link #count()} entries meaningful) */
    public byte[] vtag() { return vtag; }

    /** @return the scalar-payload column (first {@link #count()} entries meaningful) */
    public long[] vnum() { return vnum; }

    /** @return the value bytes (first {@link #vbytesLength()} meaningful; replaced when it grows) */
    public byte[] vbytes() { return vbytes; }

    /** @return the number of meaningful bytes in {@link #vbytes()} */
    public int vbytesLength() { return vlen; }

    /** @return the tagged attributes first used in this batch (first {@link #newAttrsLength()} bytes) */
    public byte[] newAttrs() { return newAttrs; }

    /** @return the number of meaningful bytes in {@link #newAttrs()} */
    public int newAttrsLength() { return newAttrsLen; }

    /** @return the number of interned attributes (across batches) */
    public int attributeCount() { return attrList.size(); }

    /**
     * Return the attribute interned as {@code id} (a Keyword or a Long).
     *
     * @param id an attribute id
     * @return the attribute
     * @throws IndexOutOfBoundsException if no such id
     */
    public Object attribute(int id) { return attrList.get(id); }

    // ------------------------------------------------------------------ attributes

    private static Object attrKey(Object a, long e, Object v, long tx, boolean added) {
        if (a instanceof Keyword || a instanceof Long) return a;
        if (a instanceof Integer || a instanceof Short || a instanceof Byte) {
            return Long.valueOf(((Number) a).longValue());
        }
        throw new DatacampException(DatacampException.UNSUPPORTED_VALUE, OP, null,
            "attributes are keywords, or integer ids in :attribute-refs? databases",
            "cannot encode attribute of class " + className(a) + " in datom " + datomString(e, a, v, tx, added));
    }

    private int intern(Object key) {
        Integer known = attrIds.get(key);
        if (known != null) return known;
        int mark = newAttrsLen;
        if (key instanceof Long) {
            ensureAttrs(9);
            newAttrs[newAttrsLen] = Wire.LONG;
            Wire.I64.set(newAttrs, newAttrsLen + 1, ((Long) key).longValue());
            newAttrsLen += 9;
        } else {
            Keyword k = (Keyword) key;
            String ns = k.getNamespace();
            String name = k.getName();
            ensureAttrs(9 + 3L * name.length() + (ns == null ? 0 : 3L * ns.length()));
            newAttrs[newAttrsLen] = Wire.KEYWORD;
            int p = newAttrsLen + 1;
            p = putNamed(newAttrs, p, ns, name);
            if (p < 0) {
                newAttrsLen = mark;
                throw surrogate(~p, "attribute " + k);
            }
            newAttrsLen = p;
        }
        int id = attrList.size();
        attrIds.put(key, id);
        attrList.add(key);
        return id;
    }

    private void ensureAttrs(long n) {
        long need = newAttrsLen + n;
        if (need > newAttrs.length) {
            if (need > MAX_ARRAY) throw tooLarge();
            newAttrs = Arrays.copyOf(newAttrs, (int) Math.max(need, Math.min(MAX_ARRAY, 2L * newAttrs.length)));
        }
    }

    // ------------------------------------------------------------------ values

    /**
     * Encode {@code v}. At the top level ({@code top}), a scalar writes nothing and leaves its
     * payload in {@link #scalar}; a non-scalar writes its payload without tag. Inside
     * collections every value is written tagged. Returns the tag.
     */
    private byte encode(Object v, boolean top, int depth) {
        if (v instanceof Long) {
            return putScalar8(Wire.LONG, ((Long) v).longValue(), top);
        }
        if (v instanceof String) {
            if (!top) putTag(Wire.STRING);
            putString((String) v);
            return Wire.STRING;
        }
        if (v instanceof Keyword) {
            if (!top) putTag(Wire.KEYWORD);
            Keyword k = (Keyword) v;
            putNamedChecked(k.getNamespace(), k.getName());
            return Wire.KEYWORD;
        }
        if (v instanceof Double) {
            return putScalar8(Wire.DOUBLE, Double.doubleToRawLongBits(((Double) v).doubleValue()), top);
        }
        if (v instanceof Boolean) {
            byte t = ((Boolean) v).booleanValue() ? Wire.TRUE : Wire.FALSE;
            if (!top) putTag(t);
            return t;
        }
        if (v == null) {
            if (!top) putTag(Wire.NIL);
            return Wire.NIL;
        }
        if (v instanceof Date) {
            return putScalar8(Wire.INST, ((Date) v).getTime(), top);
        }
        if (v instanceof UUID) {
            if (!top) putTag(Wire.UUID);
            UUID u = (UUID) v;
            ensure(16);
            Wire.I64.set(vbytes, vlen, u.getMostSignificantBits());
            Wire.I64.set(vbytes, vlen + 8, u.getLeastSignificantBits());
            vlen += 16;
            return Wire.UUID;
        }
        if (v instanceof Integer || v instanceof Short || v instanceof Byte) {
            return putScalar8(Wire.LONG, ((Number) v).longValue(), top);
        }
        if (v instanceof Float) {
            int bits = Float.floatToRawIntBits(((Float) v).floatValue());
            if (top) {
                scalar = bits; // sign-extended; the receiver uses the low 32 bits
            } else {
                ensure(5);
                vbytes[vlen] = Wire.FLOAT;
                Wire.I32.set(vbytes, vlen + 1, bits);
                vlen += 5;
            }
            return Wire.FLOAT;
        }
        if (v instanceof BigDecimal) {
            if (!top) putTag(Wire.BIGDEC);
            BigDecimal d = (BigDecimal) v;
            ensure(4);
            Wire.I32.set(vbytes, vlen, d.scale());
            vlen += 4;
            putBig(d.unscaledValue());
            return Wire.BIGDEC;
        }
        if (v instanceof BigInt) {
            if (!top) putTag(Wire.BIGINT);
            putBig(((BigInt) v).toBigInteger());
            return Wire.BIGINT;
        }
        if (v instanceof BigInteger) {
            if (!top) putTag(Wire.BIGINT);
            putBig((BigInteger) v);
            return Wire.BIGINT;
        }
        if (v instanceof Ratio) {
            if (!top) putTag(Wire.RATIO);
            Ratio r = (Ratio) v;
            putBig(r.numerator);
            putBig(r.denominator);
            return Wire.RATIO;
        }
        if (v instanceof Character) {
            char c = ((Character) v).charValue();
            if (top) {
                scalar = c;
            } else {
                ensure(3);
                vbytes[vlen] = Wire.CHAR;
                Wire.I16.set(vbytes, vlen + 1, (short) c);
                vlen += 3;
            }
            return Wire.CHAR;
        }
        if (v instanceof Symbol) {
            if (!top) putTag(Wire.SYMBOL);
            Symbol s = (Symbol) v;
            putNamedChecked(s.getNamespace(), s.getName());
            return Wire.SYMBOL;
        }
        if (v instanceof byte[]) {
            if (!top) putTag(Wire.BYTES);
            byte[] b = (byte[]) v;
            ensure(4L + b.length);
            Wire.I32.set(vbytes, vlen, b.length);
            System.arraycopy(b, 0, vbytes, vlen + 4, b.length);
            vlen += 4 + b.length;
            return Wire.BYTES;
        }
        // Collections.
        if (!(v instanceof Collection || v instanceof Map || v instanceof IPersistentVector || v instanceof ISeq)) {
            throw unsupported(v, depth);
        }
        if (depth >= MAX_DEPTH) {
            throw new DatacampException(DatacampException.UNSUPPORTED_VALUE, OP, null, null,
                "value nests collections deeper than " + MAX_DEPTH + " levels");
        }
        final byte tag;
        if (v instanceof IPersistentVector) {
            tag = Wire.VECTOR;
        } else if (v instanceof Map) {
            tag = Wire.MAP;
        } else if (v instanceof Set) {
            tag = Wire.SET;
        } else if (v instanceof IPersistentList || v instanceof ISeq || v instanceof Sequential) {
            tag = Wire.LIST;
        } else if (v instanceof List) {
            tag = Wire.VECTOR; // non-Clojure java.util.List: see the class doc
        } else {
            tag = Wire.LIST;   // any other java.util.Collection
        }
        if (!top) putTag(tag);
        ensure(4);
        final int countAt = vlen;
        vlen += 4;
        int n = 0;
        if (tag == Wire.MAP) {
            for (Map.Entry<?, ?> en : ((Map<?, ?>) v).entrySet()) {
                encode(en.getKey(), false, depth + 1);
                encode(en.getValue(), false, depth + 1);
                n++;
            }
        } else if (v instanceof Iterable) {
            for (Object x : (Iterable<?>) v) {
                encode(x, false, depth + 1);
                n++;
            }
        } else if (v instanceof IPersistentVector) {
            IPersistentVector pv = (IPersistentVector) v;
            for (int k = 0, m = pv.count(); k < m; k++) {
                encode(pv.nth(k), false, depth + 1);
                n++;
            }
        } else {
            for (ISeq s = ((ISeq) v).seq(); s != null; s = s.next()) {
                encode(s.first(), false, depth + 1);
                n++;
            }
        }
        Wire.I32.set(vbytes, countAt, n);
        return tag;
    }

    private byte putScalar8(byte tag, long x, boolean top) {
        if (top) {
            scalar = x;
        } else {
            ensure(9);
            vbytes[vlen] = tag;
            Wire.I64.set(vbytes, vlen + 1, x);
            vlen += 9;
        }
        return tag;
    }

    private void putTag(byte tag) {
        ensure(1);
        vbytes[vlen++] = tag;
    }

    private void putBig(BigInteger b) {
        byte[] bytes = b.toByteArray();
        ensure(4L + bytes.length);
        Wire.I32.set(vbytes, vlen, bytes.length);
        System.arraycopy(bytes, 0, vbytes, vlen + 4, bytes.length);
        vlen += 4 + bytes.length;
    }

    /** Strings up to this many chars reserve 3 bytes per char; longer ones are measured first. */
    private static final int MEASURE_ABOVE = 4096;

    private void putString(String s) {
        int n = s.length();
        if (n <= MEASURE_ABOVE) {
            ensure(4L + 3L * n);
        } else {
            long len = utf8Length(s);
            if (len < 0) throw surrogate((int) ~len, "string");
            ensure(4L + len);
        }
        int end = putUtf8(s, vbytes, vlen + 4);
        if (end < 0) throw surrogate(~end, "string");
        Wire.I32.set(vbytes, vlen, end - vlen - 4);
        vlen = end;
    }

    private void putNamedChecked(String ns, String name) {
        ensure(8L + 3L * name.length() + (ns == null ? 0 : 3L * ns.length()));
        int end = putNamed(vbytes, vlen, ns, name);
        if (end < 0) throw surrogate(~end, "keyword or symbol");
        vlen = end;
    }

    /**
     * Write the KEYWORD/SYMBOL payload at {@code dst[p..]} (room must be reserved); return the
     * end, or {@code ~index} of an unpaired surrogate.
     */
    private static int putNamed(byte[] dst, int p, String ns, String name) {
        if (ns == null) {
            Wire.I32.set(dst, p, -1);
            p += 4;
        } else {
            int end = putUtf8(ns, dst, p + 4);
            if (end < 0) return end;
            Wire.I32.set(dst, p, end - p - 4);
            p = end;
        }
        int end = putUtf8(name, dst, p + 4);
        if (end < 0) return end;
        Wire.I32.set(dst, p, end - p - 4);
        return end;
    }

    /**
     * Write {@code s} as UTF-8 at {@code dst[p..]} (room for 3 bytes per char must be
     * reserved, or the exact length); return the end offset, or {@code ~i} if the char at
     * index {@code i} is an unpaired surrogate.
     */
    static int putUtf8(String s, byte[] dst, int p) {
        final int n = s.length();
        int i = 0;
        for (; i < n; i++) { // ASCII fast path
            char c = s.charAt(i);
            if (c >= 0x80) break;
            dst[p++] = (byte) c;
        }
        for (; i < n; i++) {
            char c = s.charAt(i);
            if (c < 0x80) {
                dst[p++] = (byte) c;
            } else if (c < 0x800) {
                dst[p++] = (byte) (0xC0 | (c >> 6));
                dst[p++] = (byte) (0x80 | (c & 0x3F));
            } else if (Character.isSurrogate(c)) {
                char d;
                if (Character.isHighSurrogate(c) && i + 1 < n && Character.isLowSurrogate(d = s.charAt(i + 1))) {
                    int cp = Character.toCodePoint(c, d);
                    dst[p++] = (byte) (0xF0 | (cp >> 18));
                    dst[p++] = (byte) (0x80 | ((cp >> 12) & 0x3F));
                    dst[p++] = (byte) (0x80 | ((cp >> 6) & 0x3F));
                    dst[p++] = (byte) (0x80 | (cp & 0x3F));
                    i++;
                } else {
                    return ~i;
                }
            } else {
                dst[p++] = (byte) (0xE0 | (c >> 12));
                dst[p++] = (byte) (0x80 | ((c >> 6) & 0x3F));
                dst[p++] = (byte) (0x80 | (c & 0x3F));
            }
        }
        return p;
    }

    /** Return the UTF-8 length of {@code s}, or {@code ~i} for an unpaired surrogate at index i. */
    static long utf8Length(String s) {
        final int n = s.length();
        long len = n;
        for (int i = 0; i < n; i++) {
            char c = s.charAt(i);
            if (c >= 0x80) {
                if (c < 0x800) {
                    len += 1;
                } else if (Character.isSurrogate(c)) {
                    if (Character.isHighSurrogate(c) && i + 1 < n && Character.isLowSurrogate(s.charAt(i + 1))) {
                        len += 2; // 4 bytes for 2 chars
                        i++;
                    } else {
                        return ~(long) i;
                    }
                } else {
                    len += 2;
                }
            }
        }
        return len;
    }

    private void ensure(long n) {
        long need = vlen + n;
        if (need > vbytes.length) {
            if (need > MAX_ARRAY) throw tooLarge();
            vbytes = Arrays.copyOf(vbytes, (int) Math.max(need, Math.min(MAX_ARRAY, 2L * vbytes.length)));
        }
    }

    // ------------------------------------------------------------------ errors

    private static DatacampException surrogate(int index, String what) {
        return new DatacampException(DatacampException.UNSUPPORTED_VALUE, OP, null,
            "UTF-8 cannot represent a lone UTF-16 surrogate; fix the string in the source database",
            what + " contains an unpaired surrogate at char index " + index);
    }

    private static DatacampException tooLarge() {
        return new DatacampException(DatacampException.UNSUPPORTED_VALUE, OP, null,
            "a single datom value must encode to less than 2 GiB",
            "value too large to encode");
    }

    private static DatacampException unsupported(Object v, int depth) {
        return new DatacampException(DatacampException.UNSUPPORTED_VALUE, OP, null, TYPES_HINT,
            "cannot encode value of class " + className(v) + (depth > 0 ? " (nested in the value)" : ""));
    }

    private static String className(Object o) {
        return o == null ? "nil" : o.getClass().getName();
    }

    /** Return {@code [e a v tx added]} for messages, with long values shortened. */
    static String datomString(long e, Object a, Object v, long tx, boolean added) {
        StringBuilder sb = new StringBuilder(128);
        sb.append('[').append(e).append(' ');
        show(a, sb, sb.length() + SHOW_BUDGET);
        sb.append(' ');
        show(v, sb, sb.length() + SHOW_BUDGET);
        return sb.append(' ').append(tx).append(' ').append(added).append(']').toString();
    }

    /** The approximate number of chars {@link #show} spends on one value. */
    private static final int SHOW_BUDGET = 200;

    /**
     * Append a readable, bounded rendering of {@code o} to {@code sb}: stops (with "…") once
     * {@code sb} reaches {@code limit} chars, so huge or infinite collections are safe.
     */
    private static void show(Object o, StringBuilder sb, int limit) {
        if (sb.length() >= limit) {
            sb.append('…');
            return;
        }
        if (o == null) {
            sb.append("nil");
        } else if (o instanceof String) {
            String str = (String) o;
            sb.append('"');
            int i = 0;
            for (int n = str.length(); i < n && sb.length() < limit; i++) {
                char c = str.charAt(i);
                if (Character.isHighSurrogate(c) && i + 1 < n && Character.isLowSurrogate(str.charAt(i + 1))) {
                    sb.append(c).append(str.charAt(++i));
                } else if (Character.isSurrogate(c)) {
                    sb.append(String.format("\\u%04X", (int) c)); // unpaired: show it escaped
                } else {
                    sb.append(c);
                }
            }
            sb.append(i < str.length() ? "…\"" : "\"");
        } else if (o instanceof Character) {
            sb.append('\\').append(((Character) o).charValue());
        } else if (o instanceof byte[]) {
            sb.append("#bytes[").append(((byte[]) o).length).append(']');
        } else if (o instanceof Map) {
            showAll(((Map<?, ?>) o).entrySet(), "{", "}", true, sb, limit);
        } else if (o instanceof Set) {
            showAll((Set<?>) o, "#{", "}", false, sb, limit);
        } else if ((o instanceof IPersistentVector && o instanceof Iterable) || (o instanceof List && !(o instanceof ISeq)
                                                      && !(o instanceof IPersistentList))) {
            showAll((Iterable<?>) o, "[", "]", false, sb, limit);
        } else if (o instanceof Iterable) {
            showAll((Iterable<?>) o, "(", ")", false, sb, limit);
        } else {
            String str;
            try {
                str = String.valueOf(o);
            } catch (RuntimeException | StackOverflowError ex) {
                str = "#object[" + o.getClass().getName() + "]";
            }
            sb.append(str, 0, Math.min(str.length(), Math.max(8, limit - sb.length())));
            if (sb.length() >= limit) sb.append('…');
        }
    }

    private static void showAll(Iterable<?> xs, String open, String close, boolean entries,
                                StringBuilder sb, int limit) {
        sb.append(open);
        boolean first = true;
        try {
            for (Object x : xs) {
                if (!first) sb.append(entries ? ", " : " ");
                first = false;
                if (sb.length() >= limit) {
                    sb.append('…');
                    break;
                }
                if (entries) {
                    Map.Entry<?, ?> en = (Map.Entry<?, ?>) x;
                    show(en.getKey(), sb, limit);
                    sb.append(' ');
                    show(en.getValue(), sb, limit);
                } else {
                    show(x, sb, limit);
                }
            }
        } catch (RuntimeException ex) {
            sb.append("…");
        }
        sb.append(close);
    }
}

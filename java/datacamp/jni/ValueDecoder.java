package datacamp.jni;

import clojure.lang.BigInt;
import clojure.lang.IPersistentVector;
import clojure.lang.Keyword;
import clojure.lang.LazilyPersistentVector;
import clojure.lang.PersistentArrayMap;
import clojure.lang.PersistentHashMap;
import clojure.lang.PersistentHashSet;
import clojure.lang.PersistentList;
import clojure.lang.PersistentVector;
import clojure.lang.Ratio;
import clojure.lang.Symbol;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Date;
import java.util.HashMap;
import java.util.UUID;

/**
 * The decoder for the restore direction: given a batch in the columnar layout of
 * {@code src/wire.rs} (as the native core fills it, or as a {@link DatomBatch} holds it),
 * produce the datoms as Clojure data {@code [e a v tx added]} for Datahike's
 * {@code load-entities}.
 *
 * <p><b>Attributes.</b> Each batch's {@code newAttrs} bytes (tagged values, normally KEYWORD
 * or LONG) are appended to this decoder's attribute table when the batch is
 * {@link #setBatch set}; the {@code a} column indexes that table. So one decoder reads the
 * batches of one restore session, in order.
 *
 * <p><b>Classes produced.</b> LONG → {@link Long}; DOUBLE → {@link Double}; FLOAT →
 * {@link Float}; STRING → {@link String}; KEYWORD → {@link Keyword#intern(String, String)};
 * SYMBOL → {@link Symbol}; INST → {@link Date}; UUID → {@link UUID}; BIGINT →
 * {@link BigInt}; BIGDEC → {@link BigDecimal} (scale kept); RATIO → {@link Ratio}; CHAR →
 * {@link Character}; BYTES → {@code byte[]}; VECTOR → {@link PersistentVector}; LIST →
 * {@link PersistentList} (the empty list is {@code PersistentList.EMPTY}); SET →
 * {@link PersistentHashSet}; MAP → {@link PersistentArrayMap} up to 8 entries, else
 * {@link PersistentHashMap} (as Clojure's reader does). Duplicate set elements or map keys
 * (by Clojure equality) collapse, the last map value winning.
 *
 * <p><b>Sharing equal values.</b> Datahike 0.6 compares a retraction's value with the
 * asserted one using {@code compare}, which throws for byte arrays, maps, sets and lists
 * unless both are the same object (see tests/fixtures/README.txt). With
 * {@code shareValues} enabled, top-level values of tag BYTES, VECTOR, LIST, SET and MAP with
 * identical encoded bytes are returned as the same object for the decoder's whole life. That
 * keeps one copy (plus its bytes) of every distinct such value in memory: enable it for
 * history restores, where retractions occur.
 *
 * <p>Access is random (by index) and cheap in any order: the payload offsets are found once
 * per batch. Errors in the bytes raise {@link DatacampException} kind {@code "corrupt"}.
 * Not thread-safe; the arrays passed to {@link #setBatch} must not change while in use.
 */
public final class ValueDecoder {
    private static final String OP = "decode datom batch";

    private final boolean shareValues;
    private final HashMap<PayloadKey, Object> shared;
    private final ArrayList<Object> attrs = new ArrayList<>();

    private int n;
    private long[] e;
    private int[] a;
    private long[] tx;
    private boolean[] added;
    private byte[] vtag;
    private long[] vnum;
    private byte[] vbytes;
    private int vlen;

    /** starts[i] = offset in vbytes of datom i's payload, valid for i &lt; known. */
    private int[] starts = new int[16];
    private int known;

    /** The read cursor. */
    private byte[] buf;
    private int pos;
    private int limit;

    /** Return a decoder that does not share equal values. */
    public ValueDecoder() {
        this(false);
    }

    /**
     * Return a decoder; with {@code shareValues}, equal top-level collection and byte-array
     * values are returned as one object (see the class doc).
     *
     * @param shareValues whether to share equal BYTES/VECTOR/LIST/SET/MAP values
     */
    public ValueDecoder(boolean shareValues) {
        this.shareValues = shareValues;
        this.shared = shareValues ? new HashMap<>() : null;
    }

    // ------------------------------------------------------------------ attributes

    /**
     * Append the tagged values in {@code newAttrs[0..len)} to the attribute table.
     *
     * @param newAttrs the tagged attributes
     * @param len      the number of meaningful bytes
     * @throws DatacampException kind {@code "corrupt"} if the bytes do not decode
     */
    public void addAttributes(byte[] newAttrs, int len) {
        if (len == 0) return;
        if (newAttrs == null || len < 0 || len > newAttrs.length) {
            throw corrupt("newAttrs length " + len + " does not fit its array");
        }
        byte[] saveBuf = buf;
        int savePos = pos, saveLimit = limit;
        int before = attrs.size();
        try {
            buf = newAttrs;
            pos = 0;
            limit = len;
            while (pos < limit) {
                attrs.add(readTagged(0));
            }
        } catch (DatacampException ex) {
            attrs.subList(before, attrs.size()).clear();
            throw ex;
        } finally {
            buf = saveBuf;
            pos = savePos;
            limit = saveLimit;
        }
    }

    /** @return the number of attributes in the table */
    public int attributeCount() {
        return attrs.size();
    }

    /**
     * Return attribute {@code id} of the table (a Keyword, or a Long for attribute-refs).
     *
     * @param id an attribute id
     * @return the attribute
     * @throws DatacampException kind {@code "corrupt"} if there is no such id
     */
    public Object attribute(int id) {
        if (id < 0 || id >= attrs.size()) {
            throw corrupt("attribute id " + id + " is not in the table of " + attrs.size() + " attributes");
        }
        return attrs.get(id);
    }

    /** Forget the attribute table and the shared values (for a new session). */
    public void reset() {
        attrs.clear();
        if (shared != null) shared.clear();
        n = 0;
        known = 0;
    }

    // ------------------------------------------------------------------ batches

    /**
     * Install a batch of {@code n} datoms (columns as in src/wire.rs) and append its new
     * attributes to the table. The arrays are used in place, not copied.
     *
     * @param n           the number of datoms
     * @param e           entity ids
     * @param a           attribute ids
     * @param tx          transaction ids
     * @param added       assertion flags
     * @param vtag        value tags
     * @param vnum        scalar payloads
     * @param vbytes      non-scalar payloads, concatenated in datom order
     * @param vbytesLen   meaningful bytes of {@code vbytes}
     * @param newAttrs    tagged attributes first used in this batch
     * @param newAttrsLen meaningful bytes of {@code newAttrs}
     * @throws DatacampException kind {@code "corrupt"} if the sizes are inconsistent or the
     *                           new attributes do not decode
     */
    public void setBatch(int n, long[] e, int[] a, long[] tx, boolean[] added, byte[] vtag,
                         long[] vnum, byte[] vbytes, int vbytesLen, byte[] newAttrs, int newAttrsLen) {
        if (n < 0 || e.length < n || a.length < n || tx.length < n || added.length < n
            || vtag.length < n || vnum.length < n) {
            throw corrupt("batch of " + n + " datoms has a shorter column");
        }
        if (vbytesLen < 0 || (vbytesLen > 0 && (vbytes == null || vbytesLen > vbytes.length))) {
            throw corrupt("vbytes length " + vbytesLen + " does not fit its array");
        }
        addAttributes(newAttrs, newAttrsLen);
        this.n = n;
        this.e = e;
        this.a = a;
        this.tx = tx;
        this.added = added;
        this.vtag = vtag;
        this.vnum = vnum;
        this.vbytes = vbytes == null ? new byte[0] : vbytes;
        this.vlen = vbytesLen;
        if (starts.length < n + 1) {
            starts = new int[Math.max(n + 1, 2 * starts.length)];
        }
        starts[0] = 0;
        known = 1;
    }

    /**
     * Install the current contents of {@code batch} (see
     * {@link #setBatch(int, long[], int[], long[], boolean[], byte[], long[], byte[], int, byte[], int)}).
     *
     * @param batch a batch; it must not change while this decoder reads it
     */
    public void setBatch(DatomBatch batch) {
        setBatch(batch.count(), batch.e(), batch.a(), batch.tx(), batch.added(), batch.vtag(),
                 batch.vnum(), batch.vbytes(), batch.vbytesLength(), batch.newAttrs(), batch.newAttrsLength());
    }

    /** @return the number of datoms in the current batch */
    public int count() {
        return n;
    }

    /**
     * Return the value of datom {@code i}.
     *
     * @param i a datom index, {@code 0 <= i < count()}
     * @return the value as Clojure data
     * @throws IndexOutOfBoundsException if {@code i} is out of range
     * @throws DatacampException         kind {@code "corrupt"} if the bytes do not decode
     */
    public Object value(int i) {
        if (i < 0 || i >= n) {
            throw new IndexOutOfBoundsException("datom " + i + " of " + n);
        }
        final byte tag = vtag[i];
        final long num = vnum[i];
        switch (tag) {
            case Wire.NIL: return null;
            case Wire.TRUE: return Boolean.TRUE;
            case Wire.FALSE: return Boolean.FALSE;
            case Wire.LONG: return Long.valueOf(num);
            case Wire.DOUBLE: return Double.valueOf(Double.longBitsToDouble(num));
            case Wire.FLOAT: return Float.valueOf(Float.intBitsToFloat((int) num));
            case Wire.INST: return new Date(num);
            case Wire.CHAR: return Character.valueOf((char) num);
            default: break;
        }
        final int start = startOf(i);
        PayloadKey key = null;
        if (shareValues && (tag == Wire.BYTES || tag >= Wire.VECTOR)) {
            key = new PayloadKey(tag, Arrays.copyOfRange(vbytes, start, startOf(i + 1)));
            Object v = shared.get(key);
            if (v != null) return v;
        }
        buf = vbytes;
        limit = vlen;
        pos = start;
        try {
            Object v = readPayload(tag, 0);
            if (key != null) shared.put(key, v);
            return v;
        } catch (DatacampException ex) {
            throw new DatacampException(ex.getKind(), ex.getOp(), ex.getKey(), ex.getHint(),
                ex.getDetail() + " (datom " + i + ", vbytes offset " + pos + ")", ex.getCause());
        }
    }

    /**
     * Fill {@code out[0..5)} with datom {@code i}: {@code Long e}, the attribute, the value,
     * {@code Long tx}, {@code Boolean added}.
     *
     * @param i   a datom index
     * @param out an array of length at least 5
     * @throws DatacampException kind {@code "corrupt"} if the datom does not decode
     */
    public void datomInto(int i, Object[] out) {
        Object v = value(i);
        out[0] = Long.valueOf(e[i]);
        out[1] = attribute(a[i]);
        out[2] = v;
        out[3] = Long.valueOf(tx[i]);
        out[4] = Boolean.valueOf(added[i]);
    }

    /**
     * Return datom {@code i} as the vector {@code [e a v tx added]}.
     *
     * @param i a datom index
     * @return a new persistent vector of 5 elements
     * @throws DatacampException kind {@code "corrupt"} if the datom does not decode
     */
    public IPersistentVector datom(int i) {
        Object[] out = new Object[5];
        datomInto(i, out);
        return LazilyPersistentVector.createOwning(out);
    }

    /**
     * Return all datoms of the current batch as a vector of {@code [e a v tx added]} vectors,
     * in batch order.
     *
     * @return a persistent vector of {@link #count()} datom vectors
     * @throws DatacampException kind {@code "corrupt"} if a datom does not decode
     */
    public IPersistentVector datoms() {
        Object[] all = new Object[n];
        for (int i = 0; i < n; i++) {
            all[i] = datom(i);
        }
        return n == 0 ? PersistentVector.EMPTY : LazilyPersistentVector.createOwning(all);
    }

    /**
     * Decode one tagged value from {@code bytes[offset..limit)} (as written inside
     * collections or in {@code newAttrs}). Not affected by the current batch or sharing.
     *
     * @param bytes  the bytes
     * @param offset where the tag byte is
     * @param limit  the end of the readable range
     * @return the value
     * @throws DatacampException kind {@code "corrupt"} if the bytes do not decode
     */
    public static Object decodeTagged(byte[] bytes, int offset, int limit) {
        if (offset < 0 || limit > bytes.length || offset > limit) {
            throw corrupt("range " + offset + ".." + limit + " does not fit an array of " + bytes.length);
        }
        ValueDecoder d = new ValueDecoder();
        d.buf = bytes;
        d.pos = offset;
        d.limit = limit;
        return d.readTagged(0);
    }

    /** Return the payload offset of datom i (i == n: the end), skipping payloads as needed. */
    private int startOf(int i) {
        if (i < known) return starts[i];
        buf = vbytes;
        limit = vlen;
        pos = starts[known - 1];
        try {
            while (known <= i) {
                byte tag = vtag[known - 1];
                if (!Wire.isScalar(tag)) skipPayload(tag, 0);
                starts[known++] = pos;
            }
        } catch (DatacampException ex) {
            throw new DatacampException(ex.getKind(), ex.getOp(), ex.getKey(), ex.getHint(),
                ex.getDetail() + " (datom " + (known - 1) + ", vbytes offset " + pos + ")", ex.getCause());
        }
        return starts[i];
    }

    // ------------------------------------------------------------------ reading

    private Object readTagged(int depth) {
        need(1);
        return readPayload(buf[pos++], depth);
    }

    private Object readPayload(int tag, int depth) {
        switch (tag) {
            case Wire.NIL: return null;
            case Wire.TRUE: return Boolean.TRUE;
            case Wire.FALSE: return Boolean.FALSE;
            case Wire.LONG: return Long.valueOf(readI64());
            case Wire.DOUBLE: return Double.valueOf(Double.longBitsToDouble(readI64()));
            case Wire.FLOAT: return Float.valueOf(Float.intBitsToFloat(readI32()));
            case Wire.STRING: return readString();
            case Wire.KEYWORD: {
                String ns = readNs();
                return Keyword.intern(ns, readString());
            }
            case Wire.SYMBOL: {
                String ns = readNs();
                return Symbol.intern(ns, readString());
            }
            case Wire.INST: return new Date(readI64());
            case Wire.UUID: {
                long msb = readI64();
                return new UUID(msb, readI64());
            }
            case Wire.BIGINT: return BigInt.fromBigInteger(readBig());
            case Wire.BIGDEC: {
                int scale = readI32();
                return new BigDecimal(readBig(), scale);
            }
            case Wire.RATIO: {
                BigInteger num = readBig();
                BigInteger den = readBig();
                if (den.signum() == 0) throw corrupt("ratio with zero denominator");
                return new Ratio(num, den);
            }
            case Wire.CHAR: {
                need(2);
                char c = (char) (short) Wire.I16.get(buf, pos);
                pos += 2;
                return Character.valueOf(c);
            }
            case Wire.BYTES: {
                int len = readLen();
                byte[] b = Arrays.copyOfRange(buf, pos, pos + len);
                pos += len;
                return b;
            }
            case Wire.VECTOR: {
                Object[] items = readElements(readCount(1), depth);
                return items.length == 0 ? PersistentVector.EMPTY : LazilyPersistentVector.createOwning(items);
            }
            case Wire.LIST: {
                Object[] items = readElements(readCount(1), depth);
                return items.length == 0 ? PersistentList.EMPTY : PersistentList.create(Arrays.asList(items));
            }
            case Wire.SET: {
                Object[] items = readElements(readCount(1), depth);
                return items.length == 0 ? PersistentHashSet.EMPTY : PersistentHashSet.create(items);
            }
            case Wire.MAP: {
                int count = readCount(2);
                Object[] kvs = readElements(2 * count, depth);
                if (count == 0) return PersistentArrayMap.EMPTY;
                return count <= 8 ? PersistentArrayMap.createAsIfByAssoc(kvs) : PersistentHashMap.create(kvs);
            }
            default:
                throw corrupt("unknown value tag " + tag);
        }
    }

    private Object[] readElements(int count, int depth) {
        if (depth >= DatomBatch.MAX_DEPTH) {
            throw corrupt("collections nested deeper than " + DatomBatch.MAX_DEPTH + " levels");
        }
        Object[] items = new Object[count];
        for (int k = 0; k < count; k++) {
            items[k] = readTagged(depth + 1);
        }
        return items;
    }

    private void skipTagged(int depth) {
        need(1);
        skipPayload(buf[pos++], depth);
    }

    private void skipPayload(int tag, int depth) {
        switch (tag) {
            case Wire.NIL: case Wire.TRUE: case Wire.FALSE: return;
            case Wire.LONG: case Wire.DOUBLE: case Wire.INST: skip(8); return;
            case Wire.FLOAT: skip(4); return;
            case Wire.CHAR: skip(2); return;
            case Wire.UUID: skip(16); return;
            case Wire.STRING: case Wire.BIGINT: case Wire.BYTES: skip(readLen()); return;
            case Wire.KEYWORD: case Wire.SYMBOL: {
                int nsLen = readI32();
                if (nsLen != -1) {
                    if (nsLen < 0) throw corrupt("negative namespace length " + nsLen);
                    skip(nsLen);
                }
                skip(readLen());
                return;
            }
            case Wire.BIGDEC: skip(4); skip(readLen()); return;
            case Wire.RATIO: skip(readLen()); skip(readLen()); return;
            case Wire.VECTOR: case Wire.LIST: case Wire.SET: case Wire.MAP: {
                int count = readCount(tag == Wire.MAP ? 2 : 1);
                if (tag == Wire.MAP) count *= 2;
                if (depth >= DatomBatch.MAX_DEPTH) {
                    throw corrupt("collections nested deeper than " + DatomBatch.MAX_DEPTH + " levels");
                }
                for (int k = 0; k < count; k++) skipTagged(depth + 1);
                return;
            }
            default:
                throw corrupt("unknown value tag " + tag);
        }
    }

    private void need(int k) {
        if (limit - pos < k) {
            throw corrupt("truncated value: need " + k + " bytes, " + (limit - pos) + " left");
        }
    }

    private void skip(int k) {
        need(k);
        pos += k;
    }

    private long readI64() {
        need(8);
        long x = (long) Wire.I64.get(buf, pos);
        pos += 8;
        return x;
    }

    private int readI32() {
        need(4);
        int x = (int) Wire.I32.get(buf, pos);
        pos += 4;
        return x;
    }

    /** Read a u32 byte length and check that that many bytes follow. */
    private int readLen() {
        int len = readI32();
        if (len < 0 || len > limit - pos) {
            throw corrupt("length " + Integer.toUnsignedLong(len) + " exceeds the " + (limit - pos) + " bytes left");
        }
        return len;
    }

    /** Read a u32 element count; each element needs at least {@code perElement} bytes. */
    private int readCount(int perElement) {
        int count = readI32();
        if (count < 0 || (long) count * perElement > limit - pos) {
            throw corrupt("count " + Integer.toUnsignedLong(count) + " exceeds the " + (limit - pos) + " bytes left");
        }
        return count;
    }

    private String readString() {
        int len = readLen();
        String s = new String(buf, pos, len, StandardCharsets.UTF_8);
        pos += len;
        return s;
    }

    private String readNs() {
        int len = readI32();
        if (len == -1) return null;
        if (len < 0 || len > limit - pos) {
            throw corrupt("namespace length " + len + " exceeds the " + (limit - pos) + " bytes left");
        }
        String s = new String(buf, pos, len, StandardCharsets.UTF_8);
        pos += len;
        return s;
    }

    private BigInteger readBig() {
        int len = readLen();
        if (len == 0) throw corrupt("empty big integer");
        BigInteger b = new BigInteger(buf, pos, len);
        pos += len;
        return b;
    }

    private static DatacampException corrupt(String message) {
        return new DatacampException(DatacampException.CORRUPT, OP, null, null, message);
    }

    /** A tag and encoded payload, compared by content. */
    private static final class PayloadKey {
        private final byte tag;
        private final byte[] bytes;
        private final int hash;

        PayloadKey(byte tag, byte[] bytes) {
            this.tag = tag;
            this.bytes = bytes;
            this.hash = 31 * Arrays.hashCode(bytes) + tag;
        }

        @Override
        public int hashCode() {
            return hash;
        }

        @Override
        public boolean equals(Object o) {
            if (!(o instanceof PayloadKey)) return false;
            PayloadKey k = (PayloadKey) o;
            return k.tag == tag && k.hash == hash && Arrays.equals(k.bytes, bytes);
        }
    }
}

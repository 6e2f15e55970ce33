package datacamp.bench;

import clojure.lang.ASeq;
import clojure.lang.IPersistentMap;
import clojure.lang.ISeq;
import clojure.lang.Indexed;
import clojure.lang.Keyword;
import clojure.lang.RT;

import java.io.BufferedOutputStream;
import java.io.DataOutputStream;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Date;
import java.util.HashMap;
import java.util.UUID;

/**
 * A benchmark source as fast as Datahike's own index walk: the datoms of a database are
 * written once into a compact file ({@link #write}), memory-mapped ({@link #open}, outside
 * the JVM heap, so a 5M-datom database walks under {@code -Xmx192m}), and walked as a lazy
 * seq of {@link Datom}s ({@link #seq}) that {@code RT.nth} reads as {@code [e a v tx added]},
 * as Datahike's {@code datahike.datom.Datom}.
 *
 * <p>Why: the synthetic generator walks at about 1M datoms/s, Datahike 0.6.1613's history
 * walk at 4-5M datoms/s (measured outside this repository); a benchmark whose source is 4-5
 * times slower than the real one hides the backup's own cost.
 *
 * <p>What a walk costs here: one seq node and one Datom per datom, plus the value object
 * (a String decoded from UTF-8, a Date, a UUID, a boxed Long or Double); keywords are
 * shared. Datahike's walk allocates the seq nodes and (from its store) the datoms too.
 *
 * <p>File format (little-endian): magic {@code "DCSRC001"}, u64 datom count, u32 keyword
 * count, each keyword as u32 length + UTF-8 {@code ns/name} (no colon); then per datom:
 * a header byte (bits 0-3 the value tag, bit 7 {@code added}), the attribute's keyword
 * index (varint), the entity id as a zigzag varint delta from the previous datom's, the tx
 * as a zigzag varint delta from {@link #TX0}, the value payload (LONG/INST/DOUBLE 8 bytes,
 * STRING varint length + UTF-8, KEYWORD varint index, UUID 16 bytes, NIL/TRUE/FALSE none).
 */
public final class MaterializedSource {
    /** Datahike's first tx id. */
    public static final long TX0 = 536870912L;

    private static final byte[] MAGIC = "DCSRC001".getBytes(StandardCharsets.US_ASCII);

    private static final int NIL = 0, TRUE = 1, FALSE = 2, LONG = 3, DOUBLE = 4, STRING = 5,
        KEYWORD = 6, INST = 7, UUID_TAG = 8;

    private final MappedByteBuffer buf;
    private final long count;
    private final Keyword[] keywords;
    private final int bodyStart;
    private final long bytes;

    private MaterializedSource(MappedByteBuffer buf, long count, Keyword[] keywords, int bodyStart, long bytes) {
        this.buf = buf;
        this.count = count;
        this.keywords = keywords;
        this.bodyStart = bodyStart;
        this.bytes = bytes;
    }

    // ------------------------------------------------------------------ writing

    /**
     * Write the datoms of {@code datoms} (a seqable of {@code [e a v tx added]}, attributes
     * keywords; values nil, booleans, longs, doubles, strings, keywords, dates, UUIDs) to
     * {@code file}, through a temporary file renamed at the end. Returns the datom count.
     *
     * @throws IllegalArgumentException for a value of another class
     */
    public static long write(Object datoms, File file) throws IOException {
        File tmp = new File(file.getPath() + ".tmp");
        HashMap<Keyword, Integer> ids = new HashMap<>();
        ArrayList<Keyword> table = new ArrayList<>();
        File body = new File(file.getPath() + ".body");
        long n = 0;
        try (DataOutputStream out = new DataOutputStream(new BufferedOutputStream(new FileOutputStream(body), 1 << 20))) {
            long prevE = 0;
            byte[] scratch = new byte[16];
            for (ISeq s = RT.seq(datoms); s != null; s = s.next()) {
                Object d = s.first();
                long e = ((Number) RT.nth(d, 0)).longValue();
                Keyword a = (Keyword) RT.nth(d, 1);
                Object v = RT.nth(d, 2);
                long tx = ((Number) RT.nth(d, 3)).longValue();
                boolean added = RT.booleanCast(RT.nth(d, 4));
                int tag = tagOf(v);
                out.writeByte(tag | (added ? 0x80 : 0));
                varint(out, intern(a, ids, table));
                varint(out, zigzag(e - prevE));
                prevE = e;
                varint(out, zigzag(tx - TX0));
                switch (tag) {
                    case LONG: out.writeLong(Long.reverseBytes(((Number) v).longValue())); break;
                    case DOUBLE: out.writeLong(Long.reverseBytes(Double.doubleToRawLongBits((Double) v))); break;
                    case INST: out.writeLong(Long.reverseBytes(((Date) v).getTime())); break;
                    case UUID_TAG:
                        out.writeLong(Long.reverseBytes(((UUID) v).getMostSignificantBits()));
                        out.writeLong(Long.reverseBytes(((UUID) v).getLeastSignificantBits()));
                        break;
                    case KEYWORD: varint(out, intern((Keyword) v, ids, table)); break;
                    case STRING: {
                        byte[] utf8 = ((String) v).getBytes(StandardCharsets.UTF_8);
                        varint(out, utf8.length);
                        out.write(utf8);
                        break;
                    }
                    default: break;
                }
                n++;
            }
        }
        try (DataOutputStream out = new DataOutputStream(new BufferedOutputStream(new FileOutputStream(tmp), 1 << 20));
             java.io.InputStream in = new java.io.BufferedInputStream(new java.io.FileInputStream(body), 1 << 20)) {
            out.write(MAGIC);
            out.writeLong(Long.reverseBytes(n));
            out.writeInt(Integer.reverseBytes(table.size()));
            for (Keyword k : table) {
                byte[] name = k.sym.toString().getBytes(StandardCharsets.UTF_8);
                out.writeInt(Integer.reverseBytes(name.length));
                out.write(name);
            }
            in.transferTo(out);
        } finally {
            body.delete();
        }
        if (!tmp.renameTo(file)) {
            throw new IOException("cannot rename " + tmp + " to " + file);
        }
        return n;
    }

    private static int tagOf(Object v) {
        if (v == null) return NIL;
        if (v instanceof Boolean) return ((Boolean) v) ? TRUE : FALSE;
        if (v instanceof Long || v instanceof Integer) return LONG;
        if (v instanceof Double) return DOUBLE;
        if (v instanceof String) return STRING;
        if (v instanceof Keyword) return KEYWORD;
        if (v instanceof Date) return INST;
        if (v instanceof UUID) return UUID_TAG;
        throw new IllegalArgumentException("MaterializedSource cannot hold a " + v.getClass().getName());
    }

    private static int intern(Keyword k, HashMap<Keyword, Integer> ids, ArrayList<Keyword> table) {
        Integer id = ids.get(k);
        if (id == null) {
            id = table.size();
            ids.put(k, id);
            table.add(k);
        }
        return id;
    }

    private static long zigzag(long x) {
        return (x << 1) ^ (x >> 63);
    }

    private static void varint(DataOutputStream out, long x) throws IOException {
        while ((x & ~0x7FL) != 0) {
            out.writeByte((int) ((x & 0x7F) | 0x80));
            x >>>= 7;
        }
        out.writeByte((int) x);
    }

    // ------------------------------------------------------------------ reading

    /** Map {@code file} (written by {@link #write}) read-only. */
    public static MaterializedSource open(File file) throws IOException {
        try (RandomAccessFile raf = new RandomAccessFile(file, "r"); FileChannel ch = raf.getChannel()) {
            long size = ch.size();
            if (size > Integer.MAX_VALUE) {
                throw new IOException(file + " is larger than 2 GiB");
            }
            MappedByteBuffer buf = ch.map(FileChannel.MapMode.READ_ONLY, 0, size);
            buf.order(ByteOrder.LITTLE_ENDIAN);
            byte[] magic = new byte[MAGIC.length];
            buf.get(0, magic);
            if (!java.util.Arrays.equals(magic, MAGIC)) {
                throw new IOException(file + " is not a materialised source");
            }
            long count = buf.getLong(8);
            int k = buf.getInt(16);
            Keyword[] keywords = new Keyword[k];
            int p = 20;
            for (int i = 0; i < k; i++) {
                int len = buf.getInt(p);
                byte[] name = new byte[len];
                buf.get(p + 4, name);
                keywords[i] = Keyword.intern(new String(name, StandardCharsets.UTF_8));
                p += 4 + len;
            }
            return new MaterializedSource(buf, count, keywords, p, size);
        }
    }

    /** @return the number of datoms */
    public long count() { return count; }

    /** @return the size of the mapped file in bytes */
    public long bytes() { return bytes; }

    /** Touch every page of the mapping (so a measured walk does not count page faults). */
    public long preload() {
        buf.load();
        long x = 0;
        for (int p = 0; p < bytes; p += 4096) x += buf.get(p);
        return x;
    }

    /** @return a fresh lazy seq of the datoms, in the order they were written (nil when empty) */
    public ISeq seq() {
        if (count == 0) return null;
        Cursor c = new Cursor(this);
        return new Node(c.next(), c, null);
    }

    /** Decodes datoms one after another; each {@link Node} takes the next one at most once. */
    private static final class Cursor {
        final MaterializedSource src;
        final MappedByteBuffer buf;
        final Keyword[] keywords;
        int pos;
        long prevE;
        long left;
        byte[] scratch = new byte[256];

        Cursor(MaterializedSource src) {
            this.src = src;
            this.buf = src.buf;
            this.keywords = src.keywords;
            this.pos = src.bodyStart;
            this.left = src.count;
        }

        long varint() {
            long x = 0;
            int shift = 0;
            while (true) {
                byte b = buf.get(pos++);
                x |= (long) (b & 0x7F) << shift;
                if (b >= 0) return x;
                shift += 7;
            }
        }

        static long unzigzag(long x) {
            return (x >>> 1) ^ -(x & 1);
        }

        Datom next() {
            left--;
            int h = buf.get(pos++);
            Keyword a = keywords[(int) varint()];
            long e = prevE + unzigzag(varint());
            prevE = e;
            long tx = TX0 + unzigzag(varint());
            Object v;
            switch (h & 0x0F) {
                case NIL: v = null; break;
                case TRUE: v = Boolean.TRUE; break;
                case FALSE: v = Boolean.FALSE; break;
                case LONG: v = buf.getLong(pos); pos += 8; break;
                case DOUBLE: v = Double.longBitsToDouble(buf.getLong(pos)); pos += 8; break;
                case INST: v = new Date(buf.getLong(pos)); pos += 8; break;
                case UUID_TAG: v = new UUID(buf.getLong(pos), buf.getLong(pos + 8)); pos += 16; break;
                case KEYWORD: v = keywords[(int) varint()]; break;
                case STRING: {
                    int len = (int) varint();
                    if (scratch.length < len) scratch = new byte[Math.max(len, 2 * scratch.length)];
                    buf.get(pos, scratch, 0, len);
                    pos += len;
                    v = new String(scratch, 0, len, StandardCharsets.UTF_8);
                    break;
                }
                default: throw new IllegalStateException("bad tag " + (h & 0x0F) + " at " + (pos - 1));
            }
            return new Datom(e, a, v, tx, (h & 0x80) != 0);
        }
    }

    /** One node of the lazy seq: its datom, and the next node once asked for. */
    private static final class Node extends ASeq {
        private final Datom d;
        private final Cursor c;
        private Object rest; // null: not taken yet; this: end

        Node(Datom d, Cursor c, IPersistentMap meta) {
            super(meta);
            this.d = d;
            this.c = c;
        }

        @Override public Object first() { return d; }

        @Override public ISeq next() {
            Object r = rest;
            if (r == null) {
                synchronized (this) {
                    r = rest;
                    if (r == null) {
                        r = c.left > 0 ? new Node(c.next(), c, null) : this;
                        rest = r;
                    }
                }
            }
            return r == this ? null : (ISeq) r;
        }

        @Override public Node withMeta(IPersistentMap meta) {
            return new Node(d, c, meta);
        }
    }

    /** A datom {@code [e a v tx added]} readable by {@code RT.nth} (as Datahike's Datom). */
    public static final class Datom implements Indexed {
        /** Entity id. */
        public final long e;
        /** Attribute. */
        public final Keyword a;
        /** Value. */
        public final Object v;
        /** Transaction id. */
        public final long tx;
        /** Assertion or retraction. */
        public final boolean added;

        Datom(long e, Keyword a, Object v, long tx, boolean added) {
            this.e = e;
            this.a = a;
            this.v = v;
            this.tx = tx;
            this.added = added;
        }

        @Override public Object nth(int i) {
            switch (i) {
                case 0: return e;
                case 1: return a;
                case 2: return v;
                case 3: return tx;
                case 4: return added;
                default: throw new IndexOutOfBoundsException(i);
            }
        }

        @Override public Object nth(int i, Object notFound) {
            return i >= 0 && i < 5 ? nth(i) : notFound;
        }

        @Override public int count() { return 5; }

        @Override public String toString() {
            return "[" + e + " " + a + " " + RT.printString(v) + " " + tx + " " + added + "]";
        }
    }
}

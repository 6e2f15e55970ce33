package datacamp.jni;

import clojure.lang.BigInt;
import clojure.lang.Cons;
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
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Timestamp;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Date;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Plain-Java tests (no JUnit) of the Java side of the JNI boundary: {@link DatomBatch}
 * (exact columns and bytes per src/wire.rs), {@link ValueDecoder} (round trips with exact
 * classes), {@link NativeHandle}, {@link NativeLoader} errors and {@link DatacampException}.
 * Never touches {@link Native} (whose class initializer loads the native library).
 * Exits 1 on any failure; prints "N passed, M failed".
 */
public final class DatomBatchTest {
    private static int passed;
    private static int failed;

    private DatomBatchTest() {}

    /**
     * Run all tests; exit with status 1 if any failed.
     *
     * @param args ignored
     * @throws Exception on an unexpected error
     */
    public static void main(String[] args) throws Exception {
        run("columns", DatomBatchTest::columns);
        run("exactBytes", DatomBatchTest::exactBytes);
        run("newAttrs", DatomBatchTest::newAttrs);
        run("roundTrip", DatomBatchTest::roundTrip);
        run("surrogates", DatomBatchTest::surrogates);
        run("unsupported", DatomBatchTest::unsupported);
        run("attributes", DatomBatchTest::attributes);
        run("fullness", DatomBatchTest::fullness);
        run("decoderAccess", DatomBatchTest::decoderAccess);
        run("decoderSharing", DatomBatchTest::decoderSharing);
        run("decoderCorrupt", DatomBatchTest::decoderCorrupt);
        run("reencode", DatomBatchTest::reencode);
        run("nativeHandle", DatomBatchTest::nativeHandle);
        run("nativeLoader", DatomBatchTest::nativeLoader);
        run("exception", DatomBatchTest::exception);
        check("tests never loaded the native library", !NativeLoader.isLoaded());
        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }

    // ------------------------------------------------------------------ helpers

    /** A test group. */
    private interface Group {
        void run() throws Exception;
    }

    private static void run(String name, Group g) {
        try {
            g.run();
        } catch (Exception | Error ex) {
            failed++;
            System.out.println("FAIL " + name + ": unexpected " + ex);
            ex.printStackTrace(System.out);
        }
    }

    private static void check(String name, boolean ok) {
        if (ok) {
            passed++;
        } else {
            failed++;
            System.out.println("FAIL " + name);
        }
    }

    private static void checkEq(String name, Object expected, Object actual) {
        boolean ok = expected == null ? actual == null : expected.equals(actual);
        if (ok) {
            passed++;
        } else {
            failed++;
            System.out.println("FAIL " + name + ": expected <" + expected + "> got <" + actual + ">");
        }
    }

    private static void checkBytes(String name, byte[] expected, byte[] buf, int off, int len) {
        byte[] actual = Arrays.copyOfRange(buf, off, off + len);
        if (Arrays.equals(expected, actual)) {
            passed++;
        } else {
            failed++;
            System.out.println("FAIL " + name + ": expected " + hex(expected) + " got " + hex(actual));
        }
    }

    private static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) sb.append(String.format("%02x ", x & 0xff));
        return sb.toString().trim();
    }

    /** Parse "02 00 ff" into bytes. */
    private static byte[] h(String s) {
        String[] parts = s.trim().split("\\s+");
        byte[] b = new byte[parts.length];
        for (int i = 0; i < parts.length; i++) b[i] = (byte) Integer.parseInt(parts[i], 16);
        return b;
    }

    private static byte[] concat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) n += p.length;
        byte[] out = new byte[n];
        int k = 0;
        for (byte[] p : parts) {
            System.arraycopy(p, 0, out, k, p.length);
            k += p.length;
        }
        return out;
    }

    private static Keyword kw(String ns, String name) {
        return Keyword.intern(ns, name);
    }

    private static IPersistentVector vec(Object... xs) {
        return xs.length == 0 ? PersistentVector.EMPTY : LazilyPersistentVector.createOwning(xs.clone());
    }

    private static Object list(Object... xs) {
        return xs.length == 0 ? PersistentList.EMPTY : PersistentList.create(Arrays.asList(xs));
    }

    private static Object set(Object... xs) {
        return PersistentHashSet.create(xs);
    }

    private static Object map(Object... kvs) {
        return kvs.length <= 16 ? PersistentArrayMap.createAsIfByAssoc(kvs) : PersistentHashMap.create(kvs);
    }

    /** Deep equality that also requires identical classes everywhere and identical float bits. */
    private static boolean same(Object x, Object y) {
        if (x == null || y == null) return x == y;
        if (x.getClass() != y.getClass()) return false;
        if (x instanceof byte[]) return Arrays.equals((byte[]) x, (byte[]) y);
        if (x instanceof Double) {
            return Double.doubleToRawLongBits((Double) x) == Double.doubleToRawLongBits((Double) y);
        }
        if (x instanceof Float) return Float.floatToRawIntBits((Float) x) == Float.floatToRawIntBits((Float) y);
        if (x instanceof BigDecimal) return x.equals(y); // scale-sensitive
        if (x instanceof List) {
            List<?> a = (List<?>) x, b = (List<?>) y;
            if (a.size() != b.size()) return false;
            for (int i = 0; i < a.size(); i++) if (!same(a.get(i), b.get(i))) return false;
            return true;
        }
        if (x instanceof Set) {
            Set<?> a = (Set<?>) x, b = (Set<?>) y;
            if (a.size() != b.size()) return false;
            outer:
            for (Object p : a) {
                for (Object q : b) if (same(p, q)) continue outer;
                return false;
            }
            return true;
        }
        if (x instanceof Map) {
            Map<?, ?> a = (Map<?, ?>) x, b = (Map<?, ?>) y;
            if (a.size() != b.size()) return false;
            outer:
            for (Map.Entry<?, ?> p : a.entrySet()) {
                for (Map.Entry<?, ?> q : b.entrySet()) {
                    if (same(p.getKey(), q.getKey()) && same(p.getValue(), q.getValue())) continue outer;
                }
                return false;
            }
            return true;
        }
        return x.equals(y);
    }

    private static DatacampException expectDatacamp(Runnable r) {
        try {
            r.run();
        } catch (DatacampException ex) {
            return ex;
        }
        return null;
    }

    private static final Keyword ATTR = kw("t", "v");

    /** Encode v alone in a batch; return the batch. */
    private static DatomBatch one(Object v) {
        DatomBatch b = new DatomBatch(4);
        b.add(1, ATTR, v, 536870913L, true);
        return b;
    }

    // ------------------------------------------------------------------ tests

    static void columns() {
        DatomBatch b = new DatomBatch(16);
        Date d = new Date(1700000000123L);
        b.add(10, kw("db", "ident"), 42L, 536870913L, true);
        b.add(11, kw("db", "ident"), "héllo", 536870914L, false);
        b.add(12, kw("a", "b"), 1.5d, 536870913L, true);
        b.add(13, kw("a", "b"), -1.0f, 536870913L, true);
        b.add(14, kw("a", "b"), true, 536870913L, true);
        b.add(15, kw("a", "b"), false, 536870913L, true);
        b.add(16, kw("a", "b"), null, 536870913L, true);
        b.add(17, kw("a", "b"), d, 536870913L, true);
        b.add(18, kw("a", "b"), 'x', 536870913L, true);
        b.add(19, kw("a", "b"), 7, 536870913L, true); // Integer
        b.add(20, kw("a", "b"), (short) -3, 536870913L, true);
        b.add(21, kw("a", "b"), (byte) 5, 536870913L, true);
        checkEq("count", 12, b.count());
        long[] e = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21};
        check("e column", Arrays.equals(e, Arrays.copyOf(b.e(), 12)));
        check("a column", Arrays.equals(new int[] {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, Arrays.copyOf(b.a(), 12)));
        checkEq("tx column", 536870914L, b.tx()[1]);
        check("added column", b.added()[0] && !b.added()[1] && b.added()[2]);
        byte[] tags = {Wire.LONG, Wire.STRING, Wire.DOUBLE, Wire.FLOAT, Wire.TRUE, Wire.FALSE, Wire.NIL,
                       Wire.INST, Wire.CHAR, Wire.LONG, Wire.LONG, Wire.LONG};
        check("vtag column", Arrays.equals(tags, Arrays.copyOf(b.vtag(), 12)));
        long[] nums = {42L, 0L, Double.doubleToRawLongBits(1.5d), (long) Float.floatToRawIntBits(-1.0f),
                       0L, 0L, 0L, 1700000000123L, 'x', 7L, -3L, 5L};
        check("vnum column", Arrays.equals(nums, Arrays.copyOf(b.vnum(), 12)));
        checkEq("float vnum low 32 bits", 0xBF800000L, b.vnum()[3] & 0xFFFFFFFFL);
        checkEq("only the string has vbytes", 10, b.vbytesLength());
        checkBytes("string payload", h("06 00 00 00 68 c3 a9 6c 6c 6f"), b.vbytes(), 0, 10);
    }

    static void exactBytes() {
        // keyword :db/ident
        DatomBatch b = one(kw("db", "ident"));
        checkEq(":db/ident tag", Wire.KEYWORD, b.vtag()[0]);
        checkEq(":db/ident vnum", 0L, b.vnum()[0]);
        checkBytes(":db/ident", h("02 00 00 00 64 62 05 00 00 00 69 64 65 6e 74"), b.vbytes(), 0, b.vbytesLength());
        checkEq(":db/ident length", 15, b.vbytesLength());
        // keyword without namespace
        b = one(kw(null, "a"));
        checkBytes(":a", h("ff ff ff ff 01 00 00 00 61"), b.vbytes(), 0, b.vbytesLength());
        // symbol ns/bar
        b = one(Symbol.intern("ns", "bar"));
        checkEq("symbol tag", Wire.SYMBOL, b.vtag()[0]);
        checkBytes("ns/bar", h("02 00 00 00 6e 73 03 00 00 00 62 61 72"), b.vbytes(), 0, b.vbytesLength());
        // string "héllo"
        b = one("héllo");
        checkEq("string tag", Wire.STRING, b.vtag()[0]);
        checkBytes("héllo", h("06 00 00 00 68 c3 a9 6c 6c 6f"), b.vbytes(), 0, b.vbytesLength());
        // 3-byte and 4-byte UTF-8, empty string
        b = one("€😀");
        checkBytes("€😀", h("07 00 00 00 e2 82 ac f0 9f 98 80"), b.vbytes(), 0, b.vbytesLength());
        b = one("");
        checkBytes("empty string", h("00 00 00 00"), b.vbytes(), 0, b.vbytesLength());
        // vector [1 "a"]
        b = one(vec(1L, "a"));
        checkEq("vector tag", Wire.VECTOR, b.vtag()[0]);
        checkBytes("[1 \"a\"]", h("02 00 00 00 03 01 00 00 00 00 00 00 00 06 01 00 00 00 61"),
                   b.vbytes(), 0, b.vbytesLength());
        // BigDecimal 1.50M: scale 2, unscaled 150 = 00 96
        b = one(new BigDecimal("1.50"));
        checkEq("bigdec tag", Wire.BIGDEC, b.vtag()[0]);
        checkBytes("1.50M", h("02 00 00 00 02 00 00 00 00 96"), b.vbytes(), 0, b.vbytesLength());
        b = one(new BigDecimal("1E+50"));
        checkBytes("1E+50M", h("ce ff ff ff 01 00 00 00 01"), b.vbytes(), 0, b.vbytesLength());
        // BigInt 7N, BigInteger -1, Ratio 22/7
        b = one(BigInt.fromLong(7));
        checkEq("bigint tag", Wire.BIGINT, b.vtag()[0]);
        checkBytes("7N", h("01 00 00 00 07"), b.vbytes(), 0, b.vbytesLength());
        b = one(BigInteger.valueOf(-1));
        checkBytes("BigInteger -1", h("01 00 00 00 ff"), b.vbytes(), 0, b.vbytesLength());
        b = one(new Ratio(BigInteger.valueOf(22), BigInteger.valueOf(7)));
        checkEq("ratio tag", Wire.RATIO, b.vtag()[0]);
        checkBytes("22/7", h("01 00 00 00 16 01 00 00 00 07"), b.vbytes(), 0, b.vbytesLength());
        // UUID
        b = one(new UUID(0x0102030405060708L, 0x1112131415161718L));
        checkEq("uuid tag", Wire.UUID, b.vtag()[0]);
        checkBytes("uuid", h("08 07 06 05 04 03 02 01 18 17 16 15 14 13 12 11"), b.vbytes(), 0, b.vbytesLength());
        // byte[]
        b = one(new byte[] {1, 2, (byte) 0xff});
        checkEq("bytes tag", Wire.BYTES, b.vtag()[0]);
        checkBytes("bytes", h("03 00 00 00 01 02 ff"), b.vbytes(), 0, b.vbytesLength());
        // set #{:a}, map {:a 1}, list (nil true false)
        b = one(set(kw(null, "a")));
        checkEq("set tag", Wire.SET, b.vtag()[0]);
        checkBytes("#{:a}", h("01 00 00 00 07 ff ff ff ff 01 00 00 00 61"), b.vbytes(), 0, b.vbytesLength());
        b = one(map(kw(null, "a"), 1L));
        checkEq("map tag", Wire.MAP, b.vtag()[0]);
        checkBytes("{:a 1}", h("01 00 00 00 07 ff ff ff ff 01 00 00 00 61 03 01 00 00 00 00 00 00 00"),
                   b.vbytes(), 0, b.vbytesLength());
        b = one(list(null, true, false));
        checkEq("list tag", Wire.LIST, b.vtag()[0]);
        checkBytes("(nil true false)", h("03 00 00 00 00 01 02"), b.vbytes(), 0, b.vbytesLength());
        // scalars inside a collection are tagged with fixed-width payloads
        b = one(vec(2.0f, 'A', new Date(1L), 0.5d, 9, null));
        checkBytes("[2.0f \\A #inst 0.5 9 nil]",
                   concat(h("06 00 00 00"), h("05 00 00 00 40"), h("0e 41 00"), h("09 01 00 00 00 00 00 00 00"),
                          h("04 00 00 00 00 00 00 e0 3f"), h("03 09 00 00 00 00 00 00 00"), h("00")),
                   b.vbytes(), 0, b.vbytesLength());
        // nested composite elements are tagged too
        b = one(vec(vec(), new BigDecimal("1.50"), new byte[] {9}, new UUID(0, 1)));
        checkBytes("[[] 1.50M bytes uuid]",
                   concat(h("04 00 00 00"), h("10 00 00 00 00"), h("0c 02 00 00 00 02 00 00 00 00 96"),
                          h("0f 01 00 00 00 09"),
                          h("0a 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00")),
                   b.vbytes(), 0, b.vbytesLength());
        // payloads concatenate in datom order, scalars contribute nothing
        DatomBatch c = new DatomBatch(8);
        c.add(1, ATTR, "a", 1, true);
        c.add(2, ATTR, 5L, 1, true);
        c.add(3, ATTR, "bc", 1, true);
        checkBytes("concatenation", h("01 00 00 00 61 02 00 00 00 62 63"), c.vbytes(), 0, c.vbytesLength());
        // List-vs-vector rule
        checkEq("ArrayList -> VECTOR", Wire.VECTOR, one(new ArrayList<>(List.of(1L))).vtag()[0]);
        checkEq("Arrays.asList -> VECTOR", Wire.VECTOR, one(Arrays.asList(1L, 2L)).vtag()[0]);
        checkEq("Cons -> LIST", Wire.LIST, one(new Cons(1L, PersistentList.EMPTY)).vtag()[0]);
        checkEq("empty list -> LIST", Wire.LIST, one(PersistentList.EMPTY).vtag()[0]);
        checkEq("HashSet -> SET", Wire.SET, one(new HashSet<>(List.of(1L))).vtag()[0]);
        checkEq("HashMap -> MAP", Wire.MAP, one(new HashMap<>(Map.of(1L, 2L))).vtag()[0]);
        checkEq("java.util.ArrayDeque -> LIST", Wire.LIST, one(new java.util.ArrayDeque<>(List.of(1L))).vtag()[0]);
        checkEq("MapEntry -> VECTOR", Wire.VECTOR,
                one(clojure.lang.MapEntry.create(1L, 2L)).vtag()[0]);
    }

    static void newAttrs() {
        DatomBatch b = new DatomBatch(4);
        b.add(1, kw("db", "ident"), 1L, 1, true);
        checkBytes("newAttrs :db/ident", h("07 02 00 00 00 64 62 05 00 00 00 69 64 65 6e 74"),
                   b.newAttrs(), 0, b.newAttrsLength());
        DatomBatch r = new DatomBatch(4);
        r.add(1, 10L, 1L, 1, true);
        r.add(1, 11, 1L, 1, true);
        r.add(1, 10, 1L, 1, true); // Integer 10 == Long 10
        checkBytes("newAttrs long ids", h("03 0a 00 00 00 00 00 00 00 03 0b 00 00 00 00 00 00 00"),
                   r.newAttrs(), 0, r.newAttrsLength());
        check("Integer and Long ids share", Arrays.equals(new int[] {0, 1, 0}, Arrays.copyOf(r.a(), 3)));
        checkEq("attribute(1) is a Long", 11L, r.attribute(1));
    }

    static void roundTrip() {
        Keyword k = kw("ks", "x");
        StringBuilder big = new StringBuilder();
        for (int i = 0; i < 102403; i++) big.append((char) ('a' + i % 26));
        big.append("é😀");
        Object nine = map(1L, 1L, 2L, 2L, 3L, 3L, 4L, 4L, 5L, 5L, 6L, 6L, 7L, 7L, 8L, 8L, 9L, 9L);
        Object[] hundred = new Object[100];
        for (int i = 0; i < 100; i++) hundred[i] = (long) i;
        LinkedHashMap<Object, Object> jmap = new LinkedHashMap<>();
        jmap.put("k", Arrays.asList(1L, 2L));
        jmap.put(kw(null, "s"), new HashSet<>(List.of("x")));
        // {input, expected} pairs; expected null means "same as input"
        Object[][] cases = {
            {0L, null}, {Long.MIN_VALUE, null}, {Long.MAX_VALUE, null}, {-1L, null},
            {42, 42L}, {(short) 7, 7L}, {(byte) -8, -8L},
            {1.5d, null}, {-0.0d, null}, {Double.NaN, null}, {Double.longBitsToDouble(0x7ff8000000000123L), null},
            {Double.POSITIVE_INFINITY, null}, {Double.MIN_VALUE, null}, {Double.MAX_VALUE, null},
            {1.1f, null}, {-0.0f, null}, {Float.intBitsToFloat(0x7fc00123), null}, {Float.MAX_VALUE, null},
            {true, null}, {false, null}, {null, null},
            {"", null}, {"héllo", null}, {"emoji 👩‍👩‍👧 zwj, combining é, \u2028 \t\n\"\\", null}, {big.toString(), null},
            {k, null}, {kw(null, "plain"), null}, {kw("ü", "ß"), null}, {kw("a.b.c", "d->e"), null},
            {Symbol.intern("+"), null}, {Symbol.intern("ns", "bar"), null},
            {'x', null}, {'\uFFFF', null}, {'\uD800', null}, {'é', null},
            {new Date(-62135596800000L), null}, {new Date(0), null}, {new Timestamp(1234L), new Date(1234L)},
            {new UUID(0, 0), null}, {new UUID(-1, -1), null}, {UUID.randomUUID(), null},
            {BigInt.fromLong(7), null}, {BigInt.fromBigInteger(BigInteger.valueOf(3).pow(150).negate()), null},
            {BigInteger.TWO.pow(200), BigInt.fromBigInteger(BigInteger.TWO.pow(200))},
            {BigInteger.valueOf(5), BigInt.fromLong(5)},
            {new BigDecimal("1.50"), null}, {new BigDecimal("0E-10"), null}, {new BigDecimal("1E+50"), null},
            {new BigDecimal("-123456789012345678901234567890.123456789"), null},
            {new Ratio(BigInteger.valueOf(22), BigInteger.valueOf(7)), null},
            {new Ratio(BigInteger.valueOf(-1), BigInteger.TWO.pow(100)), null},
            {new byte[0], null}, {new byte[] {0, 1, -1, 127, -128}, null},
            {vec(), null}, {vec(1L, "a"), null}, {vec(hundred), null}, {vec(vec(vec(vec((Object) null)))), null},
            {list(), null}, {list(1L, 2.5d, 3.5f), null},
            {set(), null}, {set(1L, "a", kw(null, "k"), vec(1L)), null},
            {map(), null}, {map(kw(null, "a"), vec(1L, set(2L)), "k", list(3.5d, 4.5f)), null}, {nine, null},
            {map(null, null, vec(1L), set(), 1.5d, map()), null},
            {new ArrayList<>(List.of(1L, "a")), vec(1L, "a")},
            {Arrays.asList(kw("k", "w"), "F0"), vec(kw("k", "w"), "F0")},
            {new Cons(1L, new Cons(2L, PersistentList.EMPTY)), list(1L, 2L)},
            {new HashSet<>(List.of(1L, 2L)), set(1L, 2L)},
            {jmap, map("k", vec(1L, 2L), kw(null, "s"), set("x"))},
            {clojure.lang.MapEntry.create(1L, 2L), vec(1L, 2L)},
        };
        DatomBatch b = new DatomBatch(cases.length);
        for (int i = 0; i < cases.length; i++) {
            b.add(100 + i, i % 2 == 0 ? k : kw("ks", "y"), cases[i][0], 536870913L + i, i % 3 != 0);
        }
        ValueDecoder d = new ValueDecoder();
        d.setBatch(b);
        checkEq("decoded count", cases.length, d.count());
        for (int i = 0; i < cases.length; i++) {
            Object expected = cases[i][1] == null ? cases[i][0] : cases[i][1];
            Object actual = d.value(i);
            String what = cases[i][0] == null ? "nil" : cases[i][0].getClass().getSimpleName() + " #" + i;
            if (!same(expected, actual)) {
                failed++;
                System.out.println("FAIL round trip " + what + ": expected " + expected
                                   + (expected == null ? "" : " (" + expected.getClass() + ")") + " got " + actual
                                   + (actual == null ? "" : " (" + actual.getClass() + ")"));
            } else {
                passed++;
            }
        }
        // exact classes called out in the brief
        checkEq("PersistentVector class", PersistentVector.class, d.value(54).getClass());
        checkEq("100-element vector class", PersistentVector.class, d.value(55).getClass());
        checkEq("PersistentList class", PersistentList.class, d.value(58).getClass());
        check("empty list is PersistentList.EMPTY", d.value(57) == PersistentList.EMPTY);
        checkEq("9-entry map is a PersistentHashMap", PersistentHashMap.class, d.value(63).getClass());
        checkEq("small map is a PersistentArrayMap", PersistentArrayMap.class, d.value(62).getClass());
        checkEq("set class", PersistentHashSet.class, d.value(60).getClass());
        checkEq("bigdec scale", 10, ((BigDecimal) d.value(46)).scale());
        checkEq("Float stays Float", Float.class, d.value(14).getClass());
        checkEq("BigInteger becomes BigInt", BigInt.class, d.value(43).getClass());
        check("keywords are interned", d.value(25) == k);
        // whole datoms
        IPersistentVector dv = d.datom(1);
        checkEq("datom(1)", vec(101L, kw("ks", "y"), Long.MIN_VALUE, 536870914L, true), dv);
        Object[] out = new Object[5];
        d.datomInto(0, out);
        check("datomInto(0)", same(new Object[] {100L, k, 0L, 536870913L, false}[2], out[2]) && out[0].equals(100L)
              && out[1] == k && out[3].equals(536870913L) && out[4].equals(Boolean.FALSE));
        IPersistentVector all = d.datoms();
        checkEq("datoms() count", cases.length, all.count());
        checkEq("datoms() element", d.datom(23), all.nth(23));
        check("datoms() vectors", all instanceof PersistentVector && all.nth(0) instanceof PersistentVector);
    }

    static void surrogates() {
        String[] bad = {"a\uD800b", "\uDC00", "x\uD83D", "\uDE00\uD83D", "ok" + "y".repeat(5000) + "\uD800"};
        for (String s : bad) {
            DatomBatch b = new DatomBatch(4);
            b.add(1, ATTR, "fine", 1, true);
            int len = b.vbytesLength();
            DatacampException ex = expectDatacamp(() -> b.add(2, ATTR, s, 1, true));
            check("surrogate rejected (" + s.length() + " chars)", ex != null);
            if (ex != null) {
                checkEq("surrogate kind", "unsupported-value", ex.getKind());
                check("surrogate message names it", ex.getMessage().contains("unpaired surrogate"));
                check("surrogate message names the datom", ex.getMessage().contains("[2 :t/v"));
                check("message has no lone surrogate", DatomBatch.utf8Length(ex.getMessage()) >= 0);
                if (s.length() < 100) check("surrogate shown escaped", ex.getMessage().contains("\\uD"));
            }
            checkEq("batch unchanged after surrogate (count)", 1, b.count());
            checkEq("batch unchanged after surrogate (vbytes)", len, b.vbytesLength());
        }
        check("nested surrogate rejected", expectDatacamp(() -> one(vec("ok", set("\uD800")))) != null);
        check("surrogate in keyword value rejected", expectDatacamp(() -> one(kw("a", "\uDFFF"))) != null);
        check("surrogate in attribute rejected",
              expectDatacamp(() -> new DatomBatch(2).add(1, kw("a\uD800", "b"), 1L, 1, true)) != null);
        DatomBatch b = new DatomBatch(4);
        expectDatacamp(() -> b.add(1, kw("a\uD800", "b"), 1L, 1, true));
        checkEq("no attribute interned after failure", 0, b.attributeCount());
        checkEq("no newAttrs after failure", 0, b.newAttrsLength());
        check("valid pair accepted", one("\uD83D\uDE00").vbytesLength() == 8);
        checkEq("utf8Length", 4L + 3 + 2 + 1, DatomBatch.utf8Length("😀€éa"));
        check("utf8Length flags lone surrogate", DatomBatch.utf8Length("ab\uD800") == ~2L);
        checkEq("Character surrogate is fine (CHAR code unit)", Wire.CHAR, one('\uD800').vtag()[0]);
    }

    static void unsupported() {
        DatomBatch b = new DatomBatch(4);
        b.add(1, ATTR, "x", 1, true);
        DatacampException ex = expectDatacamp(() -> b.add(7, kw("a", "b"), new Object(), 536870913L, true));
        check("Object rejected", ex != null);
        if (ex != null) {
            checkEq("unsupported kind", "unsupported-value", ex.getKind());
            checkEq("unsupported op", "encode datom", ex.getOp());
            check("unsupported names the class", ex.getDetail().contains("cannot encode value of class java.lang.Object"));
            check("unsupported names the datom", ex.getDetail().contains("in datom [7 :a/b java.lang.Object@")
                  && ex.getDetail().endsWith(" 536870913 true]"));
            check("unsupported has a hint", ex.getHint() != null);
        }
        checkEq("batch unchanged (count)", 1, b.count());
        checkEq("batch unchanged (vbytes)", 5, b.vbytesLength());
        checkEq("attribute not interned", 1, b.attributeCount());
        DatacampException nested = expectDatacamp(() -> b.add(7, ATTR, vec(1L, map("k", new StringBuilder("sb"))), 5, true));
        check("nested unsupported rejected", nested != null && nested.getDetail().contains("java.lang.StringBuilder")
              && nested.getDetail().contains("nested"));
        checkEq("batch unchanged after nested failure", 5, b.vbytesLength());
        DatacampException inf = expectDatacamp(() -> one(clojure.lang.Repeat.create(new Object())));
        check("unsupported inside an infinite seq: bounded message", inf != null
              && inf.getDetail().length() < 600 && inf.getDetail().contains("(java.lang.Object@"));
        DatacampException longStr = expectDatacamp(() -> one(vec("x".repeat(100000), new Object())));
        check("long values shortened in the message", longStr != null && longStr.getDetail().length() < 600
              && longStr.getDetail().contains("[\"xxx"));
        check("int[] rejected", expectDatacamp(() -> one(new int[] {1})) != null);
        check("Object[] rejected", expectDatacamp(() -> one(new Object[] {1L})) != null);
        DatacampException tx = expectDatacamp(() -> b.add(1, ATTR, 1L, 0, true));
        check("tx 0 rejected", tx != null && "invalid-argument".equals(tx.getKind()));
        check("negative tx rejected", expectDatacamp(() -> b.add(1, ATTR, 1L, -536870913L, true)) != null);
        DatacampException attr = expectDatacamp(() -> b.add(1, "db/ident", 1L, 1, true));
        check("string attribute rejected", attr != null && "unsupported-value".equals(attr.getKind())
              && attr.getDetail().contains("attribute of class java.lang.String"));
        check("nil attribute rejected", expectDatacamp(() -> b.add(1, null, 1L, 1, true)) != null);
        // too deep nesting
        Object deep = 1L;
        for (int i = 0; i < DatomBatch.MAX_DEPTH + 1; i++) deep = vec(deep);
        Object tooDeep = deep;
        DatacampException d = expectDatacamp(() -> one(tooDeep));
        check("too deep rejected", d != null && d.getDetail().contains("deeper"));
        Object ok = 1L;
        for (int i = 0; i < DatomBatch.MAX_DEPTH; i++) ok = vec(ok);
        DatomBatch deepBatch = one(ok);
        ValueDecoder dec = new ValueDecoder();
        dec.setBatch(deepBatch);
        checkEq("MAX_DEPTH nesting round-trips", ok, dec.value(0));
        ArrayList<Object> selfRef = new ArrayList<>();
        selfRef.add(selfRef);
        check("self-referential list rejected", expectDatacamp(() -> one(selfRef)) != null);
    }

    static void attributes() {
        DatomBatch b = new DatomBatch(8);
        Keyword x = kw("a", "x"), y = kw("a", "y"), z = kw("a", "z");
        b.add(1, x, 1L, 1, true);
        b.add(1, y, 1L, 1, true);
        b.add(2, x, 1L, 1, true);
        check("ids in first batch", Arrays.equals(new int[] {0, 1, 0}, Arrays.copyOf(b.a(), 3)));
        ValueDecoder d = new ValueDecoder();
        d.setBatch(b);
        checkEq("decoder attrs after batch 1", 2, d.attributeCount());
        checkEq("decoder datom a", x, d.datom(2).nth(1));
        byte[] firstNew = Arrays.copyOf(b.newAttrs(), b.newAttrsLength());
        b.clear();
        checkEq("clear resets count", 0, b.count());
        checkEq("clear resets vbytes", 0, b.vbytesLength());
        checkEq("clear resets newAttrs", 0, b.newAttrsLength());
        checkEq("clear keeps attribute table", 2, b.attributeCount());
        b.add(3, y, 1L, 1, true);
        b.add(3, z, 1L, 1, true);
        check("ids in second batch", Arrays.equals(new int[] {1, 2}, Arrays.copyOf(b.a(), 2)));
        checkBytes("second batch newAttrs only :a/z", h("07 01 00 00 00 61 01 00 00 00 7a"),
                   b.newAttrs(), 0, b.newAttrsLength());
        checkEq("first batch newAttrs had two", 22, firstNew.length);
        d.setBatch(b);
        checkEq("decoder attrs after batch 2", 3, d.attributeCount());
        checkEq("decoder batch 2 datom 0", vec(3L, y, 1L, 1L, true), d.datom(0));
        checkEq("decoder batch 2 datom 1", vec(3L, z, 1L, 1L, true), d.datom(1));
        b.resetAttributes();
        checkEq("resetAttributes", 0, b.attributeCount());
        b.add(1, z, 1L, 1, true);
        checkEq("after reset :a/z is id 0", 0, b.a()[0]);
    }

    static void fullness() {
        DatomBatch b = new DatomBatch(3);
        check("not full after 1", !b.add(1, ATTR, 1L, 1, true));
        check("not full after 2", !b.add(2, ATTR, 1L, 1, true));
        check("full after 3", b.add(3, ATTR, 1L, 1, true));
        check("isFull", b.isFull());
        boolean threw = false;
        try {
            b.add(4, ATTR, 1L, 1, true);
        } catch (IllegalStateException ex) {
            threw = true;
        }
        check("add beyond capacity throws", threw);
        b.clear();
        check("usable after clear", !b.add(4, ATTR, 1L, 1, true));
        DatomBatch small = new DatomBatch(100, 16);
        check("under byte budget", !small.add(1, ATTR, "abc", 1, true));
        check("over byte budget reports full", small.add(2, ATTR, "0123456789abcdef", 1, true));
        DatomBatch grow = new DatomBatch(2, 1 << 20);
        byte[] mb = new byte[3 << 20];
        mb[mb.length - 1] = 7;
        check("large value exceeds budget, buffer grows", grow.add(1, ATTR, mb, 1, true));
        checkEq("large value length", 4 + (3 << 20), grow.vbytesLength());
        checkEq("large value last byte", (byte) 7, grow.vbytes()[grow.vbytesLength() - 1]);
        threw = false;
        try {
            new DatomBatch(0);
        } catch (IllegalArgumentException ex) {
            threw = true;
        }
        check("capacity 0 rejected", threw);
    }

    static void decoderAccess() {
        DatomBatch b = new DatomBatch(10);
        Object[] vs = {"s0", 1L, vec("v2"), null, "s4", set(5L), 6.0d, map("k", "v7"), new byte[] {8}, "s9"};
        for (int i = 0; i < vs.length; i++) b.add(i, ATTR, vs[i], 1, true);
        ValueDecoder d = new ValueDecoder();
        d.setBatch(b);
        int[] order = {7, 2, 9, 0, 7, 7, 5, 3, 8, 1, 4, 6};
        boolean ok = true;
        for (int i : order) ok &= same(vs[i], d.value(i));
        check("random-order access", ok);
        boolean threw = false;
        try {
            d.value(10);
        } catch (IndexOutOfBoundsException ex) {
            threw = true;
        }
        check("out of range index", threw);
        checkEq("decodeTagged", vec(1L, "a"),
                ValueDecoder.decodeTagged(h("10 02 00 00 00 03 01 00 00 00 00 00 00 00 06 01 00 00 00 61"), 0, 20));
        ValueDecoder empty = new ValueDecoder();
        empty.setBatch(new DatomBatch(1));
        checkEq("empty batch datoms()", PersistentVector.EMPTY, empty.datoms());
    }

    static void decoderSharing() {
        DatomBatch b = new DatomBatch(8);
        b.add(1, ATTR, map(kw(null, "a"), 1L), 1, true);
        b.add(1, ATTR, map(kw(null, "a"), 1L), 2, false);
        b.add(2, ATTR, new byte[] {1, 2}, 1, true);
        b.add(2, ATTR, new byte[] {1, 2}, 2, false);
        b.add(3, ATTR, list(1L), 1, true);
        b.add(3, ATTR, vec(1L), 2, false); // equal by Clojure =, but a different value
        ValueDecoder plain = new ValueDecoder();
        plain.setBatch(b);
        check("no sharing by default", plain.value(0) != plain.value(1));
        ValueDecoder sharing = new ValueDecoder(true);
        sharing.setBatch(b);
        check("equal maps shared", sharing.value(0) == sharing.value(1));
        check("equal byte[] shared", sharing.value(2) == sharing.value(3));
        check("list and vector not conflated", sharing.value(4) instanceof PersistentList
              && sharing.value(5) instanceof PersistentVector);
        Object first = sharing.value(0);
        DatomBatch b2 = new DatomBatch(2);
        b2.add(1, ATTR, map(kw(null, "a"), 1L), 3, true);
        sharing.setBatch(b2);
        check("shared across batches", sharing.value(0) == first);
    }

    static void decoderCorrupt() {
        DatomBatch b = new DatomBatch(4);
        b.add(1, ATTR, "hello", 1, true);
        b.add(2, ATTR, vec(1L, 2L), 1, true);
        ValueDecoder d = new ValueDecoder();
        // truncated vbytes
        d.setBatch(b.count(), b.e(), b.a(), b.tx(), b.added(), b.vtag(), b.vnum(), b.vbytes(),
                   b.vbytesLength() - 3, b.newAttrs(), b.newAttrsLength());
        checkEq("first datom still fine", "hello", d.value(0));
        DatacampException ex = expectDatacamp(() -> d.value(1));
        check("truncated -> corrupt", ex != null && "corrupt".equals(ex.getKind())
              && ex.getDetail().contains("datom 1"));
        // unknown tag
        byte[] tags = {99};
        ValueDecoder d2 = new ValueDecoder();
        d2.setBatch(1, new long[1], new int[1], new long[1], new boolean[1], tags, new long[1],
                    new byte[4], 4, b.newAttrs(), b.newAttrsLength());
        ex = expectDatacamp(() -> d2.value(0));
        check("unknown tag -> corrupt", ex != null && ex.getDetail().contains("unknown value tag 99"));
        // huge count
        ex = expectDatacamp(() -> ValueDecoder.decodeTagged(h("10 ff ff ff 7f 00"), 0, 6));
        check("huge count -> corrupt", ex != null && "corrupt".equals(ex.getKind()));
        ex = expectDatacamp(() -> ValueDecoder.decodeTagged(h("0b 00 00 00 00"), 0, 5));
        check("empty bigint -> corrupt", ex != null);
        // attribute id out of range
        ValueDecoder d3 = new ValueDecoder();
        d3.setBatch(1, new long[1], new int[] {5}, new long[1], new boolean[1], new byte[1], new long[1],
                    null, 0, null, 0);
        check("attribute id out of range -> corrupt", expectDatacamp(() -> d3.datom(0)) != null);
        check("bad newAttrs -> corrupt", expectDatacamp(() -> new ValueDecoder().addAttributes(h("07 02 00"), 3)) != null);
    }

    static void reencode() {
        // decode then encode again must reproduce the bytes exactly
        DatomBatch b = new DatomBatch(16);
        Object[] vs = {kw("db", "ident"), "héllo😀", vec(1L, "a", 1.5f, 'c'), new BigDecimal("-1.50"),
                       map(kw(null, "a"), list(set(1L), new byte[] {3}), "b", null), new Ratio(BigInteger.ONE, BigInteger.TWO),
                       Symbol.intern("s"), new UUID(5, 6), BigInt.fromLong(-300)};
        for (Object v : vs) b.add(1, ATTR, v, 1, true);
        ValueDecoder d = new ValueDecoder();
        d.setBatch(b);
        DatomBatch again = new DatomBatch(16);
        for (int i = 0; i < vs.length; i++) again.add(1, ATTR, d.value(i), 1, true);
        checkEq("re-encoded length", b.vbytesLength(), again.vbytesLength());
        checkBytes("re-encoded bytes", Arrays.copyOf(b.vbytes(), b.vbytesLength()), again.vbytes(), 0,
                   again.vbytesLength());
        check("re-encoded tags", Arrays.equals(Arrays.copyOf(b.vtag(), vs.length), Arrays.copyOf(again.vtag(), vs.length)));
    }

    static void nativeHandle() throws Exception {
        AtomicInteger calls = new AtomicInteger();
        long[] seen = new long[1];
        NativeHandle nh = new NativeHandle(77L, h -> {
            calls.incrementAndGet();
            seen[0] = h;
        });
        checkEq("get", 77L, nh.get());
        check("not closed", !nh.isClosed());
        checkEq("apply passes the handle", 78L, nh.apply(h -> h + 1));
        nh.close();
        checkEq("freed once", 1, calls.get());
        checkEq("freed the right handle", 77L, seen[0]);
        nh.close();
        checkEq("second close is a no-op", 1, calls.get());
        check("isClosed", nh.isClosed());
        String msg = null;
        try {
            nh.get();
        } catch (IllegalStateException ex) {
            msg = ex.getMessage();
        }
        check("get after close throws", msg != null && msg.contains("closed"));
        boolean threw = false;
        try {
            nh.run(h -> { });
        } catch (IllegalStateException ex) {
            threw = true;
        }
        check("run after close throws", threw);
        threw = false;
        try {
            new NativeHandle(0L, h -> { });
        } catch (IllegalArgumentException ex) {
            threw = true;
        }
        check("handle 0 rejected", threw);
        // concurrent close: still exactly once
        AtomicInteger many = new AtomicInteger();
        NativeHandle shared = new NativeHandle(5L, h -> many.incrementAndGet());
        Thread[] ts = new Thread[8];
        for (int i = 0; i < ts.length; i++) {
            ts[i] = new Thread(shared::close);
            ts[i].start();
        }
        for (Thread t : ts) t.join();
        checkEq("concurrent close frees once", 1, many.get());
        // the Cleaner frees an unreachable, unclosed handle
        AtomicInteger gc = new AtomicInteger();
        abandon(gc);
        for (int i = 0; i < 200 && gc.get() == 0; i++) {
            System.gc();
            Thread.sleep(20);
        }
        checkEq("Cleaner frees an abandoned handle once", 1, gc.get());
    }

    private static void abandon(AtomicInteger counter) {
        new NativeHandle(99L, h -> counter.incrementAndGet());
    }

    static void nativeLoader() throws Exception {
        String missing = "/nonexistent/dir/libdatacamp-missing.so";
        System.setProperty(NativeLoader.PATH_PROPERTY, missing);
        String msg = null;
        try {
            NativeLoader.load();
        } catch (UnsatisfiedLinkError ex) {
            msg = ex.getMessage();
        } finally {
            System.clearProperty(NativeLoader.PATH_PROPERTY);
        }
        check("missing explicit path fails", msg != null);
        if (msg != null) {
            check("message names the path", msg.contains(missing));
            check("message names the property", msg.contains("datacamp.native.path"));
            check("message says why", msg.contains("does not exist"));
        }
        check("not loaded after failure", !NativeLoader.isLoaded() && NativeLoader.loadedFrom() == null);

        // a file that exists but is no library
        Path junk = Files.createTempFile("datacamp-test-", ".so");
        Files.write(junk, "not a library".getBytes(StandardCharsets.UTF_8));
        msg = null;
        try {
            NativeLoader.loadWith(junk.toString(), "/native/none/x.so", null, "datacamp-test-missing");
        } catch (UnsatisfiedLinkError ex) {
            msg = ex.getMessage();
        }
        check("junk explicit path fails", msg != null && msg.contains(junk.toString()));
        check("explicit path is authoritative (nothing else tried)", msg != null && !msg.contains("loadLibrary"));
        Files.delete(junk);

        // nothing found anywhere: every place is listed
        msg = null;
        try {
            NativeLoader.loadWith(null, "/native/none-none/libdatacamp.so", null, "datacamp-test-missing");
        } catch (UnsatisfiedLinkError ex) {
            msg = ex.getMessage();
        }
        check("nothing found fails", msg != null);
        if (msg != null) {
            check("lists the resource", msg.contains("/native/none-none/libdatacamp.so") && msg.contains("not found"));
            check("lists loadLibrary", msg.contains("System.loadLibrary(\"datacamp-test-missing\")")
                  && msg.contains("java.library.path"));
            check("has a hint", msg.contains("hint:"));
        }

        // a resource that exists but is no library: extracted to the tmpdir, load fails, file removed
        Path dir = Files.createTempDirectory("datacamp-loader-test");
        msg = null;
        try {
            NativeLoader.loadWith(null, "/datacamp/jni/Wire.class", dir.toString(), "datacamp-test-missing");
        } catch (UnsatisfiedLinkError ex) {
            msg = ex.getMessage();
        }
        check("bad resource fails", msg != null && msg.contains("extracted to " + dir)
              && msg.contains("Wire-" + NativeLoader.version() + "-"));
        try (var files = Files.list(dir)) {
            checkEq("failed extraction cleaned up", 0L, files.count());
        }
        Files.delete(dir);

        // success path of the extraction, with a harmless JDK library (no JNI_OnLoad) as the resource
        Path sys = Path.of(System.getProperty("java.home"), "lib", System.mapLibraryName("syslookup"));
        Path classes = Path.of(DatomBatchTest.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        if (Files.isRegularFile(sys) && Files.isDirectory(classes)) {
            Path resDir = classes.resolve("native").resolve("test-only");
            Files.createDirectories(resDir);
            Files.copy(sys, resDir.resolve(sys.getFileName()), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            Path out = Files.createTempDirectory("datacamp-loader-ok");
            String stem = sys.getFileName().toString().replaceFirst("\\.[^.]*$", "");
            String ext = sys.getFileName().toString().substring(stem.length());
            // Copies left by killed JVMs: an old one (removed) and a fresh one (may be loading).
            Path stale = Files.write(out.resolve(stem + "-0.0.1-123" + ext), new byte[] {1});
            Files.setLastModifiedTime(stale, java.nio.file.attribute.FileTime.fromMillis(
                System.currentTimeMillis() - NativeLoader.STALE_AGE_MILLIS - 1000));
            Path fresh = Files.write(out.resolve(stem + "-0.0.1-456" + ext), new byte[] {1});
            Path other = Files.write(out.resolve("unrelated" + ext), new byte[] {1});
            Files.setLastModifiedTime(other, java.nio.file.attribute.FileTime.fromMillis(0));
            String from = NativeLoader.loadWith(null, "/native/test-only/" + sys.getFileName(), out.toString(),
                                                "datacamp-test-missing");
            check("extracted library loads", from.contains("extracted from /native/test-only/"));
            check("named with version and unique id", from.contains(stem + "-" + NativeLoader.version() + "-")
                  && from.contains(ext + " (extracted"));
            try (var files = Files.list(out)) {
                List<String> names = files.map(f -> f.getFileName().toString()).sorted()
                    .collect(java.util.stream.Collectors.toList());
                // Deleted once loaded (Linux/macOS), the stale copy removed, the rest left alone.
                checkEq("nothing extracted is left; the stale copy is gone",
                        List.of(fresh.getFileName().toString(), other.getFileName().toString()), names);
            }
            Files.delete(fresh);
            Files.delete(other);
            Files.delete(out);
            Files.delete(resDir.resolve(sys.getFileName()));
            Files.delete(resDir);
            Files.delete(classes.resolve("native"));
        } else {
            System.out.println("skip: extraction success test (no " + sys + ")");
        }

        String rp = NativeLoader.resourcePath();
        check("resource path shape", rp.startsWith("/native/") && rp.endsWith("/" + System.mapLibraryName("datacamp")));
        check("os/arch names", List.of("linux", "macos", "windows").contains(NativeLoader.os())
              && List.of("x86_64", "aarch64").contains(NativeLoader.arch()));
    }

    static void exception() {
        DatacampException ex = new DatacampException("io", "write chunk", "/b/c", "free disk space", "disk full");
        checkEq("kind", "io", ex.getKind());
        checkEq("op", "write chunk", ex.getOp());
        checkEq("key", "/b/c", ex.getKey());
        checkEq("hint", "free disk space", ex.getHint());
        checkEq("detail", "disk full", ex.getDetail());
        checkEq("message", "write chunk: disk full (/b/c); free disk space [io]", ex.getMessage());
        check("is a RuntimeException", ex instanceof RuntimeException);
        DatacampException nulls = new DatacampException(null, null, null, null, null);
        checkEq("null kind -> internal", "internal", nulls.getKind());
        check("null key and hint stay null", nulls.getKey() == null && nulls.getHint() == null);
        try {
            DatacampException.class.getConstructor(String.class, String.class, String.class, String.class, String.class);
            check("JNI constructor signature exists", true);
        } catch (NoSuchMethodException e) {
            check("JNI constructor signature exists", false);
        }
    }
}

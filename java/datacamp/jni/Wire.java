package datacamp.jni;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * The value type tags of the JVM ↔ Rust batch format (the contract is the module doc of
 * {@code src/wire.rs}; these constants must equal its table).
 *
 * <p>Scalar tags ({@link #isScalar(int)}) carry their payload in the {@code vnum} column at the
 * top level of a datom; every other tag's payload is in {@code vbytes}, in the tagged
 * encoding without its leading tag byte. Inside collections every element is written tagged
 * (tag byte first, scalars included). All integers in {@code vbytes} are little-endian.
 */
public final class Wire {
    private Wire() {}

    /** Little-endian i64 view of a byte[] (index in bytes). */
    static final VarHandle I64 = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);
    /** Little-endian i32 view of a byte[] (index in bytes). */
    static final VarHandle I32 = MethodHandles.byteArrayViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);
    /** Little-endian i16 view of a byte[] (index in bytes). */
    static final VarHandle I16 = MethodHandles.byteArrayViewVarHandle(short[].class, ByteOrder.LITTLE_ENDIAN);

    /** {@code nil}: no payload. */
    public static final byte NIL = 0;
    /** {@code true}: no payload. */
    public static final byte TRUE = 1;
    /** {@code false}: no payload. */
    public static final byte FALSE = 2;
    /** A 64-bit integer: i64. */
    public static final byte LONG = 3;
    /** A {@code java.lang.Double}: u64 raw bits ({@code Double.doubleToRawLongBits}). */
    public static final byte DOUBLE = 4;
    /** A {@code java.lang.Float}: u32 raw bits ({@code Float.floatToRawIntBits}). */
    public static final byte FLOAT = 5;
    /** A string: u32 byte length, UTF-8 bytes. */
    public static final byte STRING = 6;
    /** A keyword: i32 ns length (-1: no namespace), ns UTF-8, u32 length, name UTF-8. */
    public static final byte KEYWORD = 7;
    /** A symbol: as {@link #KEYWORD}. */
    public static final byte SYMBOL = 8;
    /** A {@code java.util.Date}: i64 epoch millis. */
    public static final byte INST = 9;
    /** A {@code java.util.UUID}: u64 most significant bits, u64 least significant bits. */
    public static final byte UUID = 10;
    /** A big integer: u32 length, two's-complement big-endian bytes. */
    public static final byte BIGINT = 11;
    /** A {@code BigDecimal}: i32 scale, u32 length, unscaled two's-complement bytes. */
    public static final byte BIGDEC = 12;
    /** A {@code clojure.lang.Ratio}: u32 length, numerator bytes, u32 length, denominator bytes. */
    public static final byte RATIO = 13;
    /** A {@code java.lang.Character}: u16 code unit. */
    public static final byte CHAR = 14;
    /** A {@code byte[]}: u32 length, bytes. */
    public static final byte BYTES = 15;
    /** A vector: u32 count, count tagged elements. */
    public static final byte VECTOR = 16;
    /** A list: u32 count, count tagged elements. */
    public static final byte LIST = 17;
    /** A set: u32 count, count tagged elements. */
    public static final byte SET = 18;
    /** A map: u32 entry count, then key, value, key, value … (tagged). */
    public static final byte MAP = 19;

    /**
     * Return whether the tag is scalar, i.e. carried in {@code vnum} at the top level of a
     * datom: NIL, TRUE, FALSE, LONG, DOUBLE, FLOAT, INST, CHAR.
     *
     * @param tag a tag byte
     * @return true for scalar tags
     */
    public static boolean isScalar(int tag) {
        switch (tag) {
            case NIL: case TRUE: case FALSE: case LONG: case DOUBLE: case FLOAT: case INST: case CHAR:
                return true;
            default:
                return false;
        }
    }

    /**
     * Return the tag's name as in the spec table (e.g. {@code "KEYWORD"}), or
     * {@code "UNKNOWN(n)"}.
     *
     * @param tag a tag byte
     * @return its name
     */
    public static String name(int tag) {
        switch (tag) {
            case NIL: return "NIL";
            case TRUE: return "TRUE";
            case FALSE: return "FALSE";
            case LONG: return "LONG";
            case DOUBLE: return "DOUBLE";
            case FLOAT: return "FLOAT";
            case STRING: return "STRING";
            case KEYWORD: return "KEYWORD";
            case SYMBOL: return "SYMBOL";
            case INST: return "INST";
            case UUID: return "UUID";
            case BIGINT: return "BIGINT";
            case BIGDEC: return "BIGDEC";
            case RATIO: return "RATIO";
            case CHAR: return "CHAR";
            case BYTES: return "BYTES";
            case VECTOR: return "VECTOR";
            case LIST: return "LIST";
            case SET: return "SET";
            case MAP: return "MAP";
            default: return "UNKNOWN(" + tag + ")";
        }
    }
}

//! EDN reading and writing over the shared [`Value`] type.
//!
//! The writer prints what `clojure.edn/read-string` reads back as the same value (same
//! Java class, same `BigDecimal` scale, vector vs list kept apart); the reader accepts what
//! `clojure.edn` accepts (Clojure 1.11's `EdnReader` plus the default `#inst` / `#uuid`
//! readers), including `pprint` output and namespaced maps (`#:chunk{:id 0}`), and rejects
//! what it rejects (duplicate map keys and set elements, odd map literals, bad tokens, …).
//!
//! Where the two sides cannot agree exactly:
//! - EDN has no `float`: a [`Value::Float`] prints as its shortest decimal (as Clojure prints
//!   a `Float`), which reads back as the nearest [`Value::Double`]; `as f32` recovers it.
//! - NaN payloads are not kept: every NaN prints as `##NaN`.
//! - [`Value::Bytes`] prints as `#datacamp/bytes "<base64>"`; `clojure.edn` needs a reader
//!   for that tag in `:readers` (metadata files never hold bytes).
//! - Names of keywords and symbols are printed as they are, unchecked: a name that is not a
//!   valid EDN symbol (spaces, leading digit, `nil`, …) does not read back as itself.
//! - A ratio is printed as `num/den` as stored; it reads back as itself only when reduced
//!   with a denominator above 1, which is what Clojure (and [`parse`]) always produce.
//! - Instants: before 1582-10-15 the Julian calendar is used, as `java.util.Date` and
//!   Clojure's `#inst` reader do. Clojure only reads years `0000`–`9999`; outside that range
//!   this module prints the astronomical year (`-0001`, `10000`) and reads it back, an
//!   extension of the syntax. It also accepts Julian leap days before 1583 (`1500-02-29`),
//!   which `clojure.instant` rejects although `java.util.Date` prints them.
//! - Lone surrogates: [`Value::Char`] may hold one and prints it as `\ud800`; this reader
//!   accepts that (Clojure rejects it). A string escape that leaves a lone surrogate is an
//!   error here, since a Rust `String` cannot hold it.
//!
//! Writing recurses over the value: values nested far deeper than anything [`parse`] accepts
//! ([`MAX_DEPTH`]) may exhaust the stack, as dropping or cloning them would.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use num_bigint::{BigInt, Sign};

use crate::error::{clip, Error, ErrorKind, Result};
use crate::model::{Name, Value};

/// The deepest nesting of collections, tags, metadata and discards that [`parse`] accepts:
/// the codecs' value depth ([`super::MAX_DEPTH`]) plus a little room for tags and
/// metadata around the innermost collection.
pub const MAX_DEPTH: usize = super::MAX_DEPTH + 8;

/// The longest number token [`parse`] reads (digits of a big integer or decimal):
/// converting digits to a big integer costs time quadratic in their count, and metadata
/// never holds such numbers.
pub const MAX_NUMBER_CHARS: usize = 4096;

/// The longest symbol, keyword or character token [`parse`] reads.
pub const MAX_TOKEN_CHARS: usize = 64 << 10;

/// The line width that [`write_pretty`] tries to keep to.
const PRETTY_WIDTH: usize = 80;

const OP: &str = "parse EDN";

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// Days from the epoch to 1582-10-15, the first day of the Gregorian calendar in
/// `java.util.GregorianCalendar` (earlier days are Julian).
const GREGORIAN_CUTOVER_DAY: i64 = -141_427;

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

/// Given a value, return its EDN text on one line, as Clojure's `pr-str` would print it
/// (`{:a 1, :b [1 2]}`), such that `clojure.edn/read-string` (and [`parse`]) read back the
/// same value. See the module documentation for the few values that cannot round-trip.
pub fn write(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

/// Given a value, return its EDN text laid out for people, ending with a newline: a
/// non-empty top-level map has one entry per line (`{:a 1,\n :b [..]}`); a nested
/// collection stays on one line when it fits in 80 columns and is otherwise broken one
/// element (or map entry) per line, so a vector of maps such as a manifest's `:chunks`
/// shows one map per line. Reads back (with [`parse`] or `clojure.edn`) as [`write`] does.
pub fn write_pretty(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Map(entries) if !entries.is_empty() => pretty_map(&mut out, entries, 0),
        _ => pretty_value(&mut out, v, 0),
    }
    out.push('\n');
    out
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Nil => out.push_str("nil"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Long(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Double(x) => write_double(out, *x),
        Value::Float(x) => write_float(out, *x),
        Value::String(s) => write_string(out, s),
        Value::Keyword(n) => {
            out.push(':');
            write_name(out, n);
        }
        Value::Symbol(n) => write_name(out, n),
        Value::Char(c) => write_char(out, *c),
        Value::Inst(ms) => {
            out.push_str("#inst \"");
            write_inst(out, *ms);
            out.push('"');
        }
        Value::Uuid(u) => {
            let _ = write!(out, "#uuid \"{}\"", uuid_string(*u));
        }
        Value::BigInt(bytes) => {
            let _ = write!(out, "{}N", BigInt::from_signed_bytes_be(bytes));
        }
        Value::BigDec { unscaled, scale } => {
            out.push_str(&bigdec_string(
                &BigInt::from_signed_bytes_be(unscaled),
                *scale,
            ));
            out.push('M');
        }
        Value::Ratio { num, den } => {
            let _ = write!(
                out,
                "{}/{}",
                BigInt::from_signed_bytes_be(num),
                BigInt::from_signed_bytes_be(den)
            );
        }
        Value::Bytes(bytes) => {
            out.push_str("#datacamp/bytes \"");
            base64_encode(out, bytes);
            out.push('"');
        }
        Value::Vector(items) => write_seq(out, "[", "]", items),
        Value::List(items) => write_seq(out, "(", ")", items),
        Value::Set(items) => write_seq(out, "#{", "}", items),
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, k);
                out.push(' ');
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

fn write_seq(out: &mut String, open: &str, close: &str, items: &[Value]) {
    out.push_str(open);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_value(out, item);
    }
    out.push_str(close);
}

fn write_name(out: &mut String, n: &Name) {
    if let Some(ns) = &n.ns {
        out.push_str(ns);
        out.push('/');
    }
    out.push_str(&n.name);
}

fn write_double(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("##NaN");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "##Inf" } else { "##-Inf" });
    } else if x == 0.0 {
        out.push_str(if x.is_sign_negative() { "-0.0" } else { "0.0" });
    } else {
        write_java_decimal(out, &format!("{x:e}"));
    }
}

fn write_float(out: &mut String, x: f32) {
    if x.is_nan() {
        out.push_str("##NaN");
    } else if x.is_infinite() {
        out.push_str(if x > 0.0 { "##Inf" } else { "##-Inf" });
    } else if x == 0.0 {
        out.push_str(if x.is_sign_negative() { "-0.0" } else { "0.0" });
    } else {
        write_java_decimal(out, &format!("{x:e}"));
    }
}

/// Given Rust's shortest scientific form (`-1.25e-7`), write it the way Java's
/// `Double.toString` lays digits out: plain (`0.00125`, `1250000.0`) for exponents -3..=6,
/// else `1.25E-7`; always with a fractional digit, so it reads back as a double.
fn write_java_decimal(out: &mut String, sci: &str) {
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    if neg {
        out.push('-');
    }
    if (-3..7).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                push_zeros(out, int_len - digits.len());
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            push_zeros(out, (-exp - 1) as usize);
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1.min(digits.len())]);
        out.push('.');
        if digits.len() > 1 {
            out.push_str(&digits[1..]);
        } else {
            out.push('0');
        }
        let _ = write!(out, "E{exp}");
    }
}

fn push_zeros(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n('0', n));
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_char(out: &mut String, c: u16) {
    out.push('\\');
    match c {
        0x0a => out.push_str("newline"),
        0x20 => out.push_str("space"),
        0x09 => out.push_str("tab"),
        0x0d => out.push_str("return"),
        0x08 => out.push_str("backspace"),
        0x0c => out.push_str("formfeed"),
        0x21..=0x7e => out.push(char::from(c as u8)),
        _ => {
            let _ = write!(out, "u{c:04x}");
        }
    }
}

/// Write `yyyy-MM-ddTHH:mm:ss.SSS-00:00` in UTC, as Clojure prints a `java.util.Date`.
fn write_inst(out: &mut String, ms: i64) {
    let days = ms.div_euclid(DAY_MS);
    let rem = ms.rem_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    if y < 0 {
        let _ = write!(out, "-{:04}", -y);
    } else {
        let _ = write!(out, "{y:04}");
    }
    let _ = write!(
        out,
        "-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}-00:00",
        m,
        d,
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    );
}

fn uuid_string(u: u128) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        (u >> 96) as u32,
        (u >> 80) as u16,
        (u >> 64) as u16,
        (u >> 48) as u16,
        u & 0xffff_ffff_ffff
    )
}

/// Given an unscaled value and a scale, return what `java.math.BigDecimal#toString` does.
fn bigdec_string(unscaled: &BigInt, scale: i32) -> String {
    let digits = unscaled.magnitude().to_string();
    let len = digits.len();
    let adjusted = len as i64 - 1 - i64::from(scale);
    let mut out = String::new();
    if unscaled.sign() == Sign::Minus {
        out.push('-');
    }
    if scale >= 0 && adjusted >= -6 {
        let scale = scale as usize;
        if scale == 0 {
            out.push_str(&digits);
        } else if len > scale {
            out.push_str(&digits[..len - scale]);
            out.push('.');
            out.push_str(&digits[len - scale..]);
        } else {
            out.push_str("0.");
            push_zeros(&mut out, scale - len);
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if len > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('E');
        if adjusted >= 0 {
            out.push('+');
        }
        let _ = write!(out, "{adjusted}");
    }
    out
}

fn is_coll(v: &Value) -> bool {
    matches!(
        v,
        Value::Vector(_) | Value::List(_) | Value::Set(_) | Value::Map(_)
    )
}

/// The column the next character of `out` goes into (0-based).
fn column(out: &str) -> usize {
    out.rsplit('\n')
        .next()
        .map_or(0, |line| line.chars().count())
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn pretty_value(out: &mut String, v: &Value, indent: usize) {
    let flat = write(v);
    if !is_coll(v) || indent + flat.chars().count() <= PRETTY_WIDTH {
        out.push_str(&flat);
        return;
    }
    match v {
        Value::Vector(items) => pretty_seq(out, "[", "]", items, indent),
        Value::List(items) => pretty_seq(out, "(", ")", items, indent),
        Value::Set(items) => pretty_seq(out, "#{", "}", items, indent),
        Value::Map(entries) => pretty_map(out, entries, indent),
        _ => out.push_str(&flat),
    }
}

fn pretty_seq(out: &mut String, open: &str, close: &str, items: &[Value], indent: usize) {
    out.push_str(open);
    let inner = indent + open.len();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push('\n');
            pad(out, inner);
        }
        pretty_value(out, item, inner);
    }
    out.push_str(close);
}

fn pretty_map(out: &mut String, entries: &[(Value, Value)], indent: usize) {
    out.push('{');
    let inner = indent + 1;
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n");
            pad(out, inner);
        }
        pretty_value(out, k, inner);
        let flat = write(v);
        if !is_coll(v) || column(out) + 1 + flat.chars().count() <= PRETTY_WIDTH {
            out.push(' ');
            out.push_str(&flat);
        } else {
            out.push('\n');
            pad(out, inner);
            pretty_value(out, v, inner);
        }
    }
    out.push('}');
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/// Given EDN text holding exactly one form (surrounding whitespace, commas, `;` comments and
/// `#_` discards are fine), return its value. Errors: [`ErrorKind::Corrupt`] with the line
/// and column for malformed text, a second form, no form, or nesting deeper than
/// [`MAX_DEPTH`]; [`ErrorKind::Unsupported`] naming the tag for a tag other than `#inst`,
/// `#uuid` and `#datacamp/bytes`. Never panics; the parser keeps its own stack, so deep
/// input does not exhaust the thread's stack.
pub fn parse(s: &str) -> Result<Value> {
    let mut p = Parser::new(s);
    let Some(v) = p.next_form()? else {
        return Err(p.error(s.len(), "no EDN form in the input"));
    };
    p.skip_ws_and_comments();
    let after = p.pos;
    if p.next_form()?.is_some() {
        return Err(p.error(after, "more than one EDN form in the input"));
    }
    Ok(v)
}

/// Given EDN text holding any number of forms, return their values in order (none for
/// blank input). Errors as for [`parse`].
pub fn parse_all(s: &str) -> Result<Vec<Value>> {
    let mut p = Parser::new(s);
    let mut out = Vec::new();
    while let Some(v) = p.next_form()? {
        out.push(v);
    }
    Ok(out)
}

/// The kinds of collection a [`Frame::Coll`] gathers.
enum CollKind {
    List,
    Vector,
    Map,
    Set,
    /// `#:ns{…}`, with the namespace.
    NsMap(std::sync::Arc<str>),
}

/// What an open construct waits for; the parser's explicit stack holds these.
enum Frame {
    /// Elements up to the closing delimiter.
    Coll {
        kind: CollKind,
        open_at: usize,
        items: Vec<Value>,
    },
    /// `#_`: one form, dropped.
    Discard { at: usize },
    /// `^` / `#^`: the metadata form (dropped), then the target.
    Meta { at: usize, have_meta: bool },
    /// `#tag`: the tag symbol, then the tagged form.
    Tag { at: usize, tag: Option<Name> },
    /// `##`: the symbol `Inf`, `-Inf` or `NaN`.
    Symbolic { at: usize },
    /// `#:`: the namespace symbol; a map must follow.
    NsName { at: usize },
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    stack: Vec<Frame>,
}

/// `java.lang.Character.isWhitespace`, plus the comma, as `EdnReader` tests it.
fn is_ws(c: char) -> bool {
    matches!(
        c,
        ',' | ' '
            | '\t'..='\r'
            | '\u{1c}'..='\u{1f}'
            | '\u{1680}'
            | '\u{2000}'..='\u{2006}'
            | '\u{2008}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// The characters that `EdnReader` dispatches on ("macros").
fn is_macro(c: char) -> bool {
    matches!(
        c,
        '"' | ';' | '^' | '(' | ')' | '[' | ']' | '{' | '}' | '\\' | '#'
    )
}

/// The macros that end a symbol, keyword or character token (all but `#`).
fn is_terminating(c: char) -> bool {
    c != '#' && is_macro(c)
}

/// Characters that may not appear in a token.
fn is_non_constituent(c: char) -> bool {
    matches!(c, '@' | '`' | '~')
}

fn closing_of(kind: &CollKind) -> char {
    match kind {
        CollKind::List => ')',
        CollKind::Vector => ']',
        _ => '}',
    }
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            pos: 0,
            stack: Vec::new(),
        }
    }

    fn error(&self, at: usize, msg: impl std::fmt::Display) -> Error {
        let (line, col) = line_col(self.src, at);
        Error::corrupt(OP, format!("line {line}, column {col}: {msg}"))
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn push(&mut self, frame: Frame, at: usize) -> Result<()> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.error(
                at,
                format!("nesting deeper than {MAX_DEPTH} levels is not supported"),
            ));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn push_coll(&mut self, kind: CollKind, open_at: usize) -> Result<()> {
        let frame = Frame::Coll {
            kind,
            open_at,
            items: Vec::new(),
        };
        self.push(frame, open_at)
    }

    fn skip_ws_and_comments(&mut self) {
        while let Some(c) = self.peek() {
            if is_ws(c) {
                self.bump();
            } else if c == ';' {
                while let Some(c) = self.bump() {
                    if c == '\n' || c == '\r' {
                        break;
                    }
                }
            } else {
                break;
            }
        }
    }

    /// Read the next top-level form, or `None` at the end of the input.
    fn next_form(&mut self) -> Result<Option<Value>> {
        loop {
            self.skip_ws_and_comments();
            let start = self.pos;
            let Some(c) = self.bump() else {
                return match self.stack.last() {
                    None => Ok(None),
                    Some(Frame::Coll { open_at, .. }) => Err(self.error(
                        *open_at,
                        "EOF while reading the collection that starts here",
                    )),
                    Some(
                        Frame::Discard { at }
                        | Frame::Meta { at, .. }
                        | Frame::Tag { at, .. }
                        | Frame::Symbolic { at }
                        | Frame::NsName { at },
                    ) => Err(self.error(*at, "EOF while reading the form that starts here")),
                };
            };
            let value = match c {
                ')' | ']' | '}' => match self.stack.pop() {
                    Some(Frame::Coll {
                        kind,
                        open_at,
                        items,
                    }) if closing_of(&kind) == c => self.finish_coll(kind, items, open_at)?,
                    _ => return Err(self.error(start, format!("unmatched delimiter: {c}"))),
                },
                '(' => {
                    self.push_coll(CollKind::List, start)?;
                    continue;
                }
                '[' => {
                    self.push_coll(CollKind::Vector, start)?;
                    continue;
                }
                '{' => {
                    self.push_coll(CollKind::Map, start)?;
                    continue;
                }
                '^' => {
                    self.push(
                        Frame::Meta {
                            at: start,
                            have_meta: false,
                        },
                        start,
                    )?;
                    continue;
                }
                '#' => {
                    let frame = match self.bump() {
                        None => return Err(self.error(start, "EOF after #")),
                        Some('{') => {
                            self.push_coll(CollKind::Set, start)?;
                            continue;
                        }
                        Some('_') => Frame::Discard { at: start },
                        Some('^') => Frame::Meta {
                            at: start,
                            have_meta: false,
                        },
                        Some(':') => Frame::NsName { at: start },
                        Some('#') => Frame::Symbolic { at: start },
                        Some('<') => return Err(self.error(start, "unreadable form")),
                        Some(l) if l.is_alphabetic() => {
                            self.pos = start + 1; // the tag symbol starts at the letter
                            Frame::Tag {
                                at: start,
                                tag: None,
                            }
                        }
                        Some(other) => {
                            return Err(self.error(start, format!("no dispatch macro for: {other}")))
                        }
                    };
                    self.push(frame, start)?;
                    continue;
                }
                '"' => Value::String(self.read_string(start)?),
                '\\' => self.read_char(start)?,
                c if c.is_ascii_digit() => self.read_number(start)?,
                '+' | '-' if self.peek().is_some_and(|d| d.is_ascii_digit()) => {
                    self.read_number(start)?
                }
                _ => self.read_token_value(c, start)?,
            };
            if let Some(v) = self.deliver(value)? {
                return Ok(Some(v));
            }
        }
    }

    /// Hand a finished value to the innermost open construct; return it if none is open.
    fn deliver(&mut self, mut value: Value) -> Result<Option<Value>> {
        loop {
            let Some(frame) = self.stack.pop() else {
                return Ok(Some(value));
            };
            match frame {
                Frame::Coll {
                    kind,
                    open_at,
                    mut items,
                } => {
                    items.push(value);
                    self.stack.push(Frame::Coll {
                        kind,
                        open_at,
                        items,
                    });
                    return Ok(None);
                }
                Frame::Discard { .. } => return Ok(None),
                Frame::Meta {
                    at,
                    have_meta: false,
                } => {
                    if !matches!(
                        value,
                        Value::Symbol(_) | Value::String(_) | Value::Keyword(_) | Value::Map(_)
                    ) {
                        return Err(
                            self.error(at, "metadata must be Symbol, Keyword, String or Map")
                        );
                    }
                    self.stack.push(Frame::Meta {
                        at,
                        have_meta: true,
                    });
                    return Ok(None);
                }
                Frame::Meta { at, .. } => {
                    if !matches!(
                        value,
                        Value::Symbol(_)
                            | Value::Vector(_)
                            | Value::List(_)
                            | Value::Set(_)
                            | Value::Map(_)
                    ) {
                        return Err(self.error(
                            at,
                            "metadata can only be applied to symbols and collections",
                        ));
                    }
                }
                Frame::Tag { at, tag: None } => {
                    let Value::Symbol(tag) = value else {
                        return Err(self.error(at, "reader tag must be a symbol"));
                    };
                    self.stack.push(Frame::Tag { at, tag: Some(tag) });
                    return Ok(None);
                }
                Frame::Tag { at, tag: Some(tag) } => value = self.apply_tag(at, &tag, value)?,
                Frame::Symbolic { at } => value = self.symbolic(at, value)?,
                Frame::NsName { at } => {
                    let ns = match value {
                        Value::Symbol(Name { ns: None, name }) => name,
                        other => {
                            return Err(self.error(
                                at,
                                format!(
                                    "namespaced map must specify a valid namespace: {}",
                                    clip(&write(&other))
                                ),
                            ))
                        }
                    };
                    // Only whitespace (no comments) may stand between `#:ns` and `{`.
                    while self.peek().is_some_and(is_ws) {
                        self.bump();
                    }
                    let brace = self.pos;
                    if self.bump() != Some('{') {
                        return Err(self.error(brace, "namespaced map must specify a map"));
                    }
                    self.push_coll(CollKind::NsMap(ns), at)?;
                    return Ok(None);
                }
            }
        }
    }

    fn finish_coll(&self, kind: CollKind, mut items: Vec<Value>, at: usize) -> Result<Value> {
        match kind {
            CollKind::List => Ok(Value::List(items)),
            CollKind::Vector => Ok(Value::Vector(items)),
            CollKind::Set => {
                if let Some(dup) = find_duplicate(items.iter()) {
                    return Err(self.error(at, format!("duplicate key: {}", clip(&write(dup)))));
                }
                Ok(Value::Set(items))
            }
            CollKind::Map => self.make_map(items, at),
            CollKind::NsMap(ns) => {
                for key in items.iter_mut().step_by(2) {
                    if let Value::Keyword(n) | Value::Symbol(n) = key {
                        match n.ns.as_deref() {
                            None => n.ns = Some(ns.clone()),
                            Some("_") => n.ns = None,
                            Some(_) => {}
                        }
                    }
                }
                self.make_map(items, at)
            }
        }
    }

    fn make_map(&self, items: Vec<Value>, at: usize) -> Result<Value> {
        if items.len() % 2 == 1 {
            return Err(self.error(at, "map literal must contain an even number of forms"));
        }
        let mut entries = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            entries.push((k, v));
        }
        if let Some(dup) = find_duplicate(entries.iter().map(|(k, _)| k)) {
            return Err(self.error(at, format!("duplicate key: {}", clip(&write(dup)))));
        }
        Ok(Value::Map(entries))
    }

    fn symbolic(&self, at: usize, value: Value) -> Result<Value> {
        match &value {
            Value::Symbol(Name { ns: None, name }) => match &**name {
                "Inf" => Ok(Value::Double(f64::INFINITY)),
                "-Inf" => Ok(Value::Double(f64::NEG_INFINITY)),
                "NaN" => Ok(Value::Double(f64::NAN)),
                _ => Err(self.error(at, format!("unknown symbolic value: ##{}", clip(name)))),
            },
            Value::Symbol(_) => Err(self.error(
                at,
                format!("unknown symbolic value: ##{}", clip(&write(&value))),
            )),
            other => Err(self.error(at, format!("invalid token: ##{}", clip(&write(other))))),
        }
    }

    fn apply_tag(&self, at: usize, tag: &Name, form: Value) -> Result<Value> {
        let string_form = |what: &str| match &form {
            Value::String(s) => Ok(s.as_str()),
            _ => Err(self.error(
                at,
                format!("#{} expects a string {what}", clip(&tag.to_string())),
            )),
        };
        match (tag.ns.as_deref(), &*tag.name) {
            (None, "inst") => {
                let s = string_form("timestamp")?;
                parse_inst(s)
                    .map(Value::Inst)
                    .map_err(|m| self.error(at, format!("#inst \"{}\": {m}", clip(s))))
            }
            (None, "uuid") => {
                let s = string_form("representation")?;
                parse_uuid(s)
                    .map(Value::Uuid)
                    .map_err(|m| self.error(at, format!("#uuid \"{}\": {m}", clip(s))))
            }
            (Some("datacamp"), "bytes") => {
                let s = string_form("in base64")?;
                base64_decode(s)
                    .map(Value::Bytes)
                    .ok_or_else(|| self.error(at, "#datacamp/bytes: invalid base64"))
            }
            _ => {
                let (line, col) = line_col(self.src, at);
                Err(Error::new(
                    ErrorKind::Unsupported,
                    OP,
                    format!(
                        "line {line}, column {col}: no reader for tag #{}",
                        clip(&tag.to_string())
                    ),
                )
                .with_hint("only #inst, #uuid and #datacamp/bytes are read"))
            }
        }
    }

    fn take_token(&mut self, start: usize) -> Result<&'a str> {
        while let Some(c) = self.peek() {
            if is_ws(c) || is_terminating(c) {
                break;
            }
            if is_non_constituent(c) {
                return Err(self.error(self.pos, format!("invalid constituent character: {c}")));
            }
            self.bump();
            if self.pos - start > MAX_TOKEN_CHARS {
                return Err(self.error(
                    start,
                    format!("a token longer than {MAX_TOKEN_CHARS} bytes is not supported"),
                ));
            }
        }
        Ok(&self.src[start..self.pos])
    }

    fn read_token_value(&mut self, first: char, start: usize) -> Result<Value> {
        if is_non_constituent(first) {
            return Err(self.error(start, format!("invalid leading character: {first}")));
        }
        let token = self.take_token(start)?;
        match token {
            "nil" => Ok(Value::Nil),
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => match_symbol(token)
                .ok_or_else(|| self.error(start, format!("invalid token: {}", clip(token)))),
        }
    }

    fn read_number(&mut self, start: usize) -> Result<Value> {
        while let Some(c) = self.peek() {
            if is_ws(c) || is_macro(c) {
                break;
            }
            self.bump();
        }
        let token = &self.src[start..self.pos];
        if token.len() > MAX_NUMBER_CHARS {
            return Err(self.error(
                start,
                format!(
                    "a number of {} characters is longer than the {MAX_NUMBER_CHARS} supported",
                    token.len()
                ),
            ));
        }
        parse_number(token).map_err(|msg| self.error(start, msg))
    }

    fn read_string(&mut self, start: usize) -> Result<String> {
        let mut units: Vec<u16> = Vec::new();
        let mut buf = [0u16; 2];
        loop {
            let at = self.pos;
            let Some(c) = self.bump() else {
                return Err(self.error(start, "EOF while reading string"));
            };
            match c {
                '"' => break,
                '\\' => {
                    let Some(e) = self.bump() else {
                        return Err(self.error(start, "EOF while reading string"));
                    };
                    let unit = match e {
                        't' => 0x09,
                        'r' => 0x0d,
                        'n' => 0x0a,
                        '\\' => 0x5c,
                        '"' => 0x22,
                        'b' => 0x08,
                        'f' => 0x0c,
                        'u' => {
                            let mut n: u16 = 0;
                            for i in 0..4 {
                                let Some(h) = self.bump() else {
                                    return Err(self.error(
                                        at,
                                        format!("invalid character length: {i}, should be: 4"),
                                    ));
                                };
                                let Some(d) = h.to_digit(16) else {
                                    return Err(self.error(at, format!("invalid digit: {h}")));
                                };
                                n = n * 16 + d as u16;
                            }
                            n
                        }
                        '0'..='9' => self.read_octal_escape(e, at)?,
                        other => {
                            return Err(
                                self.error(at, format!("unsupported escape character: \\{other}"))
                            )
                        }
                    };
                    units.push(unit);
                }
                c => units.extend_from_slice(c.encode_utf16(&mut buf)),
            }
        }
        String::from_utf16(&units).map_err(|_| {
            self.error(
                start,
                "string escapes leave an unpaired UTF-16 surrogate, which is not supported",
            )
        })
    }

    /// An octal escape in a string: up to three octal digits, at most `\377`.
    fn read_octal_escape(&mut self, first: char, at: usize) -> Result<u16> {
        let Some(mut n) = first.to_digit(8) else {
            return Err(self.error(at, format!("invalid digit: {first}")));
        };
        for _ in 1..3 {
            match self.peek() {
                None => break,
                Some(c) if is_ws(c) || is_macro(c) => break,
                Some(c) => {
                    let Some(d) = c.to_digit(8) else {
                        return Err(self.error(self.pos, format!("invalid digit: {c}")));
                    };
                    self.bump();
                    n = n * 8 + d;
                }
            }
        }
        if n > 0o377 {
            return Err(self.error(at, "octal escape sequence must be in range [0, 377]"));
        }
        Ok(n as u16)
    }

    fn read_char(&mut self, start: usize) -> Result<Value> {
        let tok_start = self.pos;
        let Some(first) = self.bump() else {
            return Err(self.error(start, "EOF while reading character"));
        };
        let token = self.take_token(tok_start)?;
        let bad = |p: &Self, what: &str| p.error(start, format!("{what}: \\{}", clip(token)));
        if token.chars().count() == 1 {
            return u16::try_from(u32::from(first))
                .map(Value::Char)
                .map_err(|_| bad(self, "unsupported character"));
        }
        let unit = match token {
            "newline" => 0x0a,
            "space" => 0x20,
            "tab" => 0x09,
            "backspace" => 0x08,
            "formfeed" => 0x0c,
            "return" => 0x0d,
            _ => {
                if let Some(hex) = token.strip_prefix('u') {
                    if hex.chars().count() != 4 {
                        return Err(bad(self, "invalid unicode character"));
                    }
                    parse_radix_u32(hex, 16).ok_or_else(|| bad(self, "invalid digit in"))? as u16
                } else if let Some(oct) = token.strip_prefix('o') {
                    if oct.chars().count() > 3 {
                        return Err(bad(self, "invalid octal escape sequence length"));
                    }
                    let n = parse_radix_u32(oct, 8).ok_or_else(|| bad(self, "invalid digit in"))?;
                    if n > 0o377 {
                        return Err(bad(self, "octal escape sequence must be in range [0, 377]"));
                    }
                    n as u16
                } else {
                    return Err(bad(self, "unsupported character"));
                }
            }
        };
        Ok(Value::Char(unit))
    }
}

/// Given text and a byte offset, return the 1-based line and column (in characters).
fn line_col(src: &str, at: usize) -> (usize, usize) {
    let at = at.min(src.len());
    let mut at = at;
    while !src.is_char_boundary(at) {
        at -= 1;
    }
    let before = &src[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn parse_radix_u32(s: &str, radix: u32) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    s.chars().try_fold(0u32, |n, c| {
        n.checked_mul(radix)?.checked_add(c.to_digit(radix)?)
    })
}

// ---------------------------------------------------------------------------------------
// Symbols and keywords
// ---------------------------------------------------------------------------------------

/// `EdnReader`'s symbol pattern `([\D&&[^/]].*/)?(/|[\D&&[^/]][^/]*)` on `t`:
/// the namespace group (with its trailing `/`) and the name group.
fn symbol_groups(t: &str) -> Option<(Option<&str>, &str)> {
    let ok_first = |c: char| !c.is_ascii_digit() && c != '/';
    if t == "/" {
        return Some((None, t));
    }
    let first = t.chars().next()?;
    let Some(last_slash) = t.rfind('/') else {
        return ok_first(first).then_some((None, t));
    };
    if !ok_first(first) {
        return None;
    }
    let (ns, name) = if last_slash + 1 < t.len() {
        let (ns, name) = t.split_at(last_slash + 1);
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        (ns, name)
    } else {
        let ns = &t[..t.len() - 1];
        if !ns.ends_with('/') || ns.len() < 2 {
            return None;
        }
        (ns, "/")
    };
    // `.` in a Java regex does not match U+0085; the other line terminators end tokens.
    if ns.contains('\u{85}') {
        return None;
    }
    Some((Some(ns), name))
}

/// `EdnReader.matchSymbol`: the keyword or symbol `s` spells, if it is valid.
fn match_symbol(s: &str) -> Option<Value> {
    let is_kw = s.starts_with(':');
    let groups = if is_kw {
        symbol_groups(&s[1..]).or_else(|| symbol_groups(s))
    } else {
        symbol_groups(s)
    };
    let (ns, name) = groups?;
    if ns.is_some_and(|ns| ns.ends_with(":/"))
        || name.ends_with(':')
        || s.match_indices("::").any(|(i, _)| i >= 1)
        || s.starts_with("::")
    {
        return None;
    }
    let body = if is_kw { &s[1..] } else { s };
    // `Symbol.intern`: the first `/` splits, except for a lone "/".
    let name = match body.find('/') {
        Some(i) if body != "/" => Name::new(Some(&body[..i]), &body[i + 1..]),
        _ => Name::new(None, body),
    };
    Some(if is_kw {
        Value::Keyword(name)
    } else {
        Value::Symbol(name)
    })
}

// ---------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------

fn int_value(n: BigInt, force_big: bool) -> Value {
    if !force_big {
        if let Ok(l) = i64::try_from(&n) {
            return Value::Long(l);
        }
    }
    Value::BigInt(n.to_signed_bytes_be())
}

fn all_in_radix(s: &str, radix: u32) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_digit(radix))
}

fn big_from(digits: &str, radix: u32) -> std::result::Result<BigInt, String> {
    if !all_in_radix(digits, radix) {
        return Err(format!(
            "for input string: \"{digits}\" under radix {radix}"
        ));
    }
    BigInt::parse_bytes(digits.as_bytes(), radix)
        .ok_or_else(|| format!("for input string: \"{}\" under radix {radix}", clip(digits)))
}

/// `EdnReader.matchNumber`: integers (decimal, `0x`, octal, `NrDDD`, `N`), floats (`M`),
/// ratios; anything else is an invalid number.
fn parse_number(tok: &str) -> std::result::Result<Value, String> {
    let invalid = || format!("invalid number: {}", clip(tok));
    let (neg, rest) = match tok.as_bytes().first() {
        Some(b'-') => (true, &tok[1..]),
        Some(b'+') => (false, &tok[1..]),
        _ => (false, tok),
    };
    let signed = |n: BigInt| if neg { -n } else { n };

    // Radix integers, `([1-9][0-9]?)[rR]([0-9A-Za-z]+)` (no `N` suffix).
    if let Some(r) = rest.find(['r', 'R']) {
        let (radix, digits) = (&rest[..r], &rest[r + 1..]);
        if (1..=2).contains(&radix.len())
            && !radix.starts_with('0')
            && radix.bytes().all(|b| b.is_ascii_digit())
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            let radix: u32 = radix.parse().map_err(|_| invalid())?;
            if !(2..=36).contains(&radix) {
                return Err("radix out of range".into());
            }
            return Ok(int_value(signed(big_from(digits, radix)?), false));
        }
    }

    // Other integers, with an optional `N`.
    let (body, force_big) = match rest.strip_suffix('N') {
        Some(b) => (b, true),
        None => (rest, false),
    };
    let int = if body == "0" {
        Some(BigInt::from(0))
    } else if body.starts_with(|c: char| c.is_ascii_digit() && c != '0')
        && body.bytes().all(|b| b.is_ascii_digit())
    {
        Some(big_from(body, 10)?)
    } else if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        if all_in_radix(hex, 16) {
            Some(big_from(hex, 16)?)
        } else {
            None
        }
    } else if let Some(digits) = body.strip_prefix('0') {
        if all_in_radix(digits, 8) {
            Some(big_from(digits, 8)?)
        } else if all_in_radix(digits, 10) {
            return Err(invalid());
        } else {
            None
        }
    } else {
        None
    };
    if let Some(n) = int {
        return Ok(int_value(signed(n), force_big));
    }

    // Floats, `[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?(M)?`.
    if let Some(v) = parse_float(neg, rest)? {
        return Ok(v);
    }

    // Ratios, `[0-9]+/[0-9]+`.
    if let Some((n, d)) = rest.split_once('/') {
        if all_in_radix(n, 10) && all_in_radix(d, 10) {
            return make_ratio(signed(big_from(n, 10)?), big_from(d, 10)?);
        }
    }
    Err(invalid())
}

fn parse_float(neg: bool, rest: &str) -> std::result::Result<Option<Value>, String> {
    let (body, decimal) = match rest.strip_suffix('M') {
        Some(b) => (b, true),
        None => (rest, false),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    if !all_in_radix(int, 10) || !frac.is_none_or(|f| f.bytes().all(|b| b.is_ascii_digit())) {
        return Ok(None);
    }
    let exp_digits = exp.map(|e| e.strip_prefix(['+', '-']).unwrap_or(e));
    if !exp_digits.is_none_or(|d| all_in_radix(d, 10)) {
        return Ok(None);
    }
    if !decimal && frac.is_none() && exp.is_none() {
        return Ok(None); // an integer shape that the integer rules rejected
    }
    let frac = frac.unwrap_or("");
    if decimal {
        let exp: i64 = match exp {
            None => 0,
            Some(e) => e
                .parse()
                .map_err(|_| format!("exponent out of range: {}", clip(rest)))?,
        };
        let scale = (frac.len() as i64)
            .checked_sub(exp)
            .and_then(|scale| i32::try_from(scale).ok())
            .ok_or_else(|| format!("scale out of range: {}", clip(rest)))?;
        let mut digits = String::with_capacity(int.len() + frac.len());
        digits.push_str(int);
        digits.push_str(frac);
        let unscaled = big_from(&digits, 10)?;
        let unscaled = if neg { -unscaled } else { unscaled };
        return Ok(Some(Value::BigDec {
            unscaled: unscaled.to_signed_bytes_be(),
            scale,
        }));
    }
    let text = format!(
        "{}{}.{}e{}",
        if neg { "-" } else { "" },
        int,
        if frac.is_empty() { "0" } else { frac },
        exp.unwrap_or("0")
    );
    text.parse::<f64>()
        .map(|x| Some(Value::Double(x)))
        .map_err(|_| format!("invalid number: {}", clip(rest)))
}

fn gcd(mut a: BigInt, mut b: BigInt) -> BigInt {
    let zero = BigInt::from(0);
    while b != zero {
        let r = &a % &b;
        a = b;
        b = r;
    }
    if a < zero {
        -a
    } else {
        a
    }
}

/// `Numbers.divide` as the reader applies it: reduce; a whole result is a long when both
/// parts fit in a long, else a big integer.
fn make_ratio(num: BigInt, den: BigInt) -> std::result::Result<Value, String> {
    let zero = BigInt::from(0);
    if den == zero {
        return Err("divide by zero".into());
    }
    let small = i64::try_from(&num).is_ok() && i64::try_from(&den).is_ok();
    let g = gcd(num.clone(), den.clone());
    let (num, den) = (num / &g, den / &g);
    if den == BigInt::from(1) {
        return Ok(int_value(num, !small));
    }
    Ok(Value::Ratio {
        num: num.to_signed_bytes_be(),
        den: den.to_signed_bytes_be(),
    })
}

// ---------------------------------------------------------------------------------------
// Instants and UUIDs
// ---------------------------------------------------------------------------------------

/// Julian day number of a proleptic Gregorian date.
fn jdn_gregorian(y: i64, m: i64, d: i64) -> i64 {
    let a = (14 - m).div_euclid(12);
    let y = y + 4800 - a;
    let m = m + 12 * a - 3;
    d + (153 * m + 2).div_euclid(5) + 365 * y + y.div_euclid(4) - y.div_euclid(100)
        + y.div_euclid(400)
        - 32045
}

/// Julian day number of a (proleptic) Julian-calendar date.
fn jdn_julian(y: i64, m: i64, d: i64) -> i64 {
    let a = (14 - m).div_euclid(12);
    let y = y + 4800 - a;
    let m = m + 12 * a - 3;
    d + (153 * m + 2).div_euclid(5) + 365 * y + y.div_euclid(4) - 32083
}

const JDN_EPOCH: i64 = 2_440_588;

/// Days since the epoch → (astronomical year, month, day), Julian before the cutover.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let jdn = days + JDN_EPOCH;
    let (year_base, c) = if days >= GREGORIAN_CUTOVER_DAY {
        let a = jdn + 32044;
        let b = (4 * a + 3).div_euclid(146_097);
        (100 * b, a - (146_097 * b).div_euclid(4))
    } else {
        (0, jdn + 32082)
    };
    let d = (4 * c + 3).div_euclid(1461);
    let e = c - (1461 * d).div_euclid(4);
    let m = (5 * e + 2).div_euclid(153);
    let day = e - (153 * m + 2).div_euclid(5) + 1;
    let month = m + 3 - 12 * m.div_euclid(10);
    let year = year_base + d - 4800 + m.div_euclid(10);
    (year, month, day)
}

/// Days since the epoch of a local date, choosing the calendar as `GregorianCalendar` does.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let g = jdn_gregorian(y, m, d) - JDN_EPOCH;
    if g >= GREGORIAN_CUTOVER_DAY {
        g
    } else {
        jdn_julian(y, m, d) - JDN_EPOCH
    }
}

struct InstFields {
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    nanos: i64,
    offset_minutes: i64,
}

fn two_digits(s: &str, at: usize) -> Option<i64> {
    let b = s.as_bytes().get(at..at + 2)?;
    if b.iter().all(u8::is_ascii_digit) {
        Some(i64::from(b[0] - b'0') * 10 + i64::from(b[1] - b'0'))
    } else {
        None
    }
}

/// Match the part after the year with exactly `level` optional components present, as
/// `clojure.instant`'s regex would (it backtracks over the nested optional groups).
fn match_inst_rest(s: &str, level: usize) -> Option<InstFields> {
    let mut f = InstFields {
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
        nanos: 0,
        offset_minutes: 0,
    };
    let b = s.as_bytes();
    let mut i = 0;
    let seps = [b'-', b'-', b'T', b':', b':'];
    for (k, sep) in seps.iter().enumerate().take(level.min(5)) {
        if b.get(i) != Some(sep) {
            return None;
        }
        let v = two_digits(s, i + 1)?;
        match k {
            0 => f.month = v,
            1 => f.day = v,
            2 => f.hour = v,
            3 => f.minute = v,
            _ => f.second = v,
        }
        i += 3;
    }
    if level == 6 {
        if b.get(i) != Some(&b'.') {
            return None;
        }
        let start = i + 1;
        let mut end = start;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start {
            return None;
        }
        let mut digits: String = s[start..end].chars().take(9).collect();
        while digits.len() < 9 {
            digits.push('0');
        }
        f.nanos = digits.parse().ok()?;
        i = end;
    }
    match &s[i..] {
        "" | "Z" => {}
        off => {
            let sign = match off.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            if off.len() != 6 || off.as_bytes()[3] != b':' {
                return None;
            }
            let (h, m) = (two_digits(off, 1)?, two_digits(off, 4)?);
            if h > 23 || m > 59 {
                return None;
            }
            f.offset_minutes = sign * (h * 60 + m);
        }
    }
    Some(f)
}

fn gregorian_leap(y: i64) -> bool {
    y.rem_euclid(4) == 0 && (y.rem_euclid(100) != 0 || y.rem_euclid(400) == 0)
}

/// `clojure.instant/read-instant-date`: an RFC 3339-like timestamp → epoch milliseconds.
/// Extensions: a year of more than four digits or with a `-` sign (astronomical numbering),
/// and Julian leap days before 1583.
fn parse_inst(s: &str) -> std::result::Result<i64, String> {
    let unrecognized = || "unrecognized date/time syntax".to_string();
    let neg = s.starts_with('-');
    let ystart = usize::from(neg);
    let ylen = s.as_bytes()[ystart..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if !(4..=12).contains(&ylen) {
        return Err(unrecognized());
    }
    let year: i64 = s[ystart..ystart + ylen]
        .parse()
        .map_err(|_| unrecognized())?;
    let year = if neg { -year } else { year };
    let rest = &s[ystart + ylen..];
    let f = (0..=6)
        .rev()
        .find_map(|level| match_inst_rest(rest, level))
        .ok_or_else(unrecognized)?;
    let leap = gregorian_leap(year) || (year <= 1582 && year.rem_euclid(4) == 0);
    let dim = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&f.month) {
        return Err("month out of range".into());
    }
    if !(1..=dim[(f.month - 1) as usize]).contains(&f.day) {
        return Err("day out of range for the month".into());
    }
    if f.hour > 23 {
        return Err("hour out of range".into());
    }
    if f.minute > 59 {
        return Err("minute out of range".into());
    }
    if f.second > if f.minute == 59 { 60 } else { 59 } {
        return Err("second out of range".into());
    }
    let days = days_from_civil(year, f.month, f.day);
    let ms = i128::from(days) * i128::from(DAY_MS)
        + i128::from(f.hour * 3_600_000 + f.minute * 60_000 + f.second * 1000)
        + i128::from(f.nanos / 1_000_000)
        - i128::from(f.offset_minutes * 60_000);
    i64::try_from(ms).map_err(|_| "instant out of range".to_string())
}

/// `java.util.UUID.fromString`: five `-`-separated hex groups (each masked to its width),
/// at most 36 characters.
fn parse_uuid(s: &str) -> std::result::Result<u128, String> {
    if s.chars().count() > 36 {
        return Err("UUID string too large".into());
    }
    let parts: Vec<&str> = s.split('-').collect();
    if parts.len() != 5 {
        return Err("invalid UUID string".into());
    }
    let mut vals = [0u64; 5];
    for (v, part) in vals.iter_mut().zip(&parts) {
        let digits = part.strip_prefix('+').unwrap_or(part);
        if !all_in_radix(digits, 16) {
            return Err("invalid UUID string".into());
        }
        let n = u64::from_str_radix(digits, 16).map_err(|_| "invalid UUID string")?;
        if n > i64::MAX as u64 {
            return Err("invalid UUID string".into());
        }
        *v = n;
    }
    let msb = (vals[0] & 0xffff_ffff) << 32 | (vals[1] & 0xffff) << 16 | (vals[2] & 0xffff);
    let lsb = (vals[3] & 0xffff) << 48 | (vals[4] & 0xffff_ffff_ffff);
    Ok(u128::from(msb) << 64 | u128::from(lsb))
}

// ---------------------------------------------------------------------------------------
// Base64 (RFC 4648, standard alphabet)
// ---------------------------------------------------------------------------------------

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
}

/// Decode padded or unpadded base64 (as `java.util.Base64.getDecoder` does); `None` if bad.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let body = s.trim_end_matches('=');
    let pad = s.len() - body.len();
    if pad > 2 || (pad > 0 && !s.len().is_multiple_of(4)) || body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in body.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero, or the text is not a canonical encoding.
    (acc == 0).then_some(out)
}

// ---------------------------------------------------------------------------------------
// Clojure equality, for duplicate keys in maps and sets
// ---------------------------------------------------------------------------------------

/// A big integer if the value is an integer (`Long` or `BigInt`).
fn as_integer(v: &Value) -> Option<BigInt> {
    match v {
        Value::Long(n) => Some(BigInt::from(*n)),
        Value::BigInt(b) => Some(BigInt::from_signed_bytes_be(b)),
        _ => None,
    }
}

fn as_floating(v: &Value) -> Option<f64> {
    match v {
        Value::Double(x) => Some(*x),
        Value::Float(x) => Some(f64::from(*x)),
        _ => None,
    }
}

/// A decimal without trailing zeros, so that `1.0M` and `1.00M` compare equal.
fn stripped_decimal(unscaled: &[u8], scale: i32) -> (BigInt, i64) {
    let zero = BigInt::from(0);
    let ten = BigInt::from(10);
    let mut n = BigInt::from_signed_bytes_be(unscaled);
    let mut scale = i64::from(scale);
    if n == zero {
        return (n, 0);
    }
    while (&n % &ten) == zero {
        n /= &ten;
        scale -= 1;
    }
    (n, scale)
}

/// Clojure's `=` as far as map keys and set elements go (integers across `Long`/`BigInt`,
/// decimals by value, vectors equal to lists, unordered maps and sets; byte arrays are
/// never equal), except that NaN equals NaN and `-0.0` equals `0.0`, as in Clojure's
/// duplicate-key check.
fn equiv(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (as_integer(a), as_integer(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (as_floating(a), as_floating(b)) {
        return x == y || (x.is_nan() && y.is_nan());
    }
    match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Keyword(x), Value::Keyword(y)) | (Value::Symbol(x), Value::Symbol(y)) => x == y,
        (Value::Char(x), Value::Char(y)) => x == y,
        (Value::Inst(x), Value::Inst(y)) => x == y,
        (Value::Uuid(x), Value::Uuid(y)) => x == y,
        (
            Value::BigDec {
                unscaled: u1,
                scale: s1,
            },
            Value::BigDec {
                unscaled: u2,
                scale: s2,
            },
        ) => stripped_decimal(u1, *s1) == stripped_decimal(u2, *s2),
        (Value::Ratio { num: n1, den: d1 }, Value::Ratio { num: n2, den: d2 }) => {
            BigInt::from_signed_bytes_be(n1) * BigInt::from_signed_bytes_be(d2)
                == BigInt::from_signed_bytes_be(n2) * BigInt::from_signed_bytes_be(d1)
        }
        (Value::Vector(x) | Value::List(x), Value::Vector(y) | Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equiv(p, q))
        }
        (Value::Set(x), Value::Set(y)) => {
            x.len() == y.len() && x.iter().all(|p| y.iter().any(|q| equiv(p, q)))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.iter().any(|(k2, v2)| equiv(k, k2) && equiv(v, v2)))
        }
        _ => false,
    }
}

/// A hash consistent with [`equiv`].
fn equiv_hash(v: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    if let Some(n) = as_integer(v) {
        0u8.hash(&mut h);
        n.hash(&mut h);
        return h.finish();
    }
    if let Some(x) = as_floating(v) {
        1u8.hash(&mut h);
        let bits = if x.is_nan() {
            0
        } else if x == 0.0 {
            1
        } else {
            x.to_bits()
        };
        bits.hash(&mut h);
        return h.finish();
    }
    let unordered =
        |items: &mut dyn Iterator<Item = u64>| items.fold(0u64, |acc, x| acc.wrapping_add(x));
    match v {
        Value::Nil => 2u8.hash(&mut h),
        Value::Bool(b) => (3u8, b).hash(&mut h),
        Value::String(s) => (4u8, s).hash(&mut h),
        Value::Keyword(n) => (5u8, n).hash(&mut h),
        Value::Symbol(n) => (6u8, n).hash(&mut h),
        Value::Char(c) => (7u8, c).hash(&mut h),
        Value::Inst(ms) => (8u8, ms).hash(&mut h),
        Value::Uuid(u) => (9u8, u).hash(&mut h),
        Value::BigDec { unscaled, scale } => {
            (10u8, stripped_decimal(unscaled, *scale)).hash(&mut h)
        }
        Value::Ratio { .. } => 11u8.hash(&mut h),
        Value::Bytes(b) => (12u8, b).hash(&mut h),
        Value::Vector(items) | Value::List(items) => {
            13u8.hash(&mut h);
            for item in items {
                equiv_hash(item).hash(&mut h);
            }
        }
        Value::Set(items) => {
            (14u8, unordered(&mut items.iter().map(equiv_hash))).hash(&mut h);
        }
        Value::Map(entries) => {
            let sum = unordered(
                &mut entries
                    .iter()
                    .map(|(k, v)| equiv_hash(k).wrapping_mul(31).wrapping_add(equiv_hash(v))),
            );
            (15u8, sum).hash(&mut h);
        }
        Value::Long(_) | Value::BigInt(_) | Value::Double(_) | Value::Float(_) => {}
    }
    h.finish()
}

/// The first key that [`equiv`]-equals an earlier one, if any.
fn find_duplicate<'v>(keys: impl Iterator<Item = &'v Value>) -> Option<&'v Value> {
    let mut seen: HashMap<u64, Vec<&Value>> = HashMap::new();
    for k in keys {
        let bucket = seen.entry(equiv_hash(k)).or_default();
        if bucket.iter().any(|prev| equiv(prev, k)) {
            return Some(k);
        }
        bucket.push(k);
    }
    None
}

#[cfg(test)]
#[path = "edn_tests.rs"]
mod tests;

//! Byte formats, with no knowledge of backups or storage.
//!
//! - [`fressian`]: the chunks' serialization, byte-compatible with `clojure.data.fressian`.
//! - [`eav`]: a datom's `[e a v]` identity as bytes (the `:db/noHistory` states' keys).
//! - [`edn`]: the metadata files (manifest, config, checkpoint) and the EDN that crosses JNI.
//! - [`tagged`]: the tagged binary encoding of one [`crate::model::Value`], shared by
//!   [`wire`] (datom batches crossing JNI as columns) and [`record`] (the external sort's
//!   spilled runs).

pub mod eav;
pub mod edn;
pub mod fressian;
pub mod record;
pub mod tagged;
pub mod wire;

/// The deepest nesting of collections in one value that every codec accepts: [`tagged`]
/// (values arriving from the JVM, so a backup refuses what a restore could not read),
/// [`fressian`] (chunks) and [`edn`] (metadata). A value's `Drop`, `Clone`, `PartialEq`
/// and `Debug` and the EDN and Fressian writers recurse once per level; at this depth the
/// deepest of them stays below 40 KiB of stack in a release build (measured; see
/// `codec::tests::deepest_values_fit_a_small_stack`), well within a 256 KiB JVM thread.
/// No Datahike value comes near it.
pub const MAX_DEPTH: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    fn nested(n: usize) -> Value {
        let mut v = Value::Long(1);
        for i in 0..n {
            v = match i % 4 {
                0 => Value::Vector(vec![v, Value::Long(2)]),
                1 => Value::Map(vec![(Value::kw("a/b"), v)]),
                2 => Value::List(vec![v]),
                _ => Value::Set(vec![v]),
            };
        }
        v
    }

    /// Every recursion over the deepest accepted value, on a thread with a 128 KiB stack
    /// (debug builds, whose frames are several times larger, get 1 MiB).
    #[test]
    fn deepest_values_fit_a_small_stack() {
        let stack = if cfg!(debug_assertions) {
            1 << 20
        } else {
            128 << 10
        };
        std::thread::Builder::new()
            .stack_size(stack)
            .spawn(|| {
                let v = nested(MAX_DEPTH);
                let mut tagged_bytes = Vec::new();
                tagged::encode_value(&v, &mut tagged_bytes).unwrap();
                let back = tagged::decode_value(&mut &tagged_bytes[..]).unwrap();
                assert!(back == v);
                let copy = back.clone();
                assert!(!format!("{copy:?}").is_empty());
                let text = edn::write_pretty(&copy);
                assert!(edn::parse(&text).unwrap() == v);
                let fr = fressian::encode(&copy).unwrap();
                drop(copy);
                drop(back);
                assert!(!fr.is_empty());
            })
            .unwrap()
            .join()
            .unwrap();
    }
}

//! The keys a raw section accepts, read from its serde derive rather than kept in a second
//! list: for the hint of an unknown top-level key that is a key of a section
//! ("`outlier` is a key of `[services.NAME]`").
//!
//! A derived `Deserialize` of a struct hands its field names to
//! `Deserializer::deserialize_struct`; [`struct_fields`] calls it with a deserializer that
//! only records them. Nothing here runs on the request path.

use serde::de::{self, Deserialize, Visitor};
use std::fmt;

use super::raw::{RawGateway, RawRegistry, RawRoute, RawService};

/// The error that carries the recorded names out of `deserialize`.
#[derive(Debug)]
struct Fields(&'static [&'static str]);

impl fmt::Display for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names")
    }
}

impl std::error::Error for Fields {}

impl de::Error for Fields {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Fields(&[])
    }
}

/// A deserializer that answers every request with the struct's field names.
struct Recorder;

impl<'de> de::Deserializer<'de> for Recorder {
    type Error = Fields;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
        Err(Fields(&[]))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Fields> {
        Err(Fields(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The keys `T` accepts (as written in the file, renames applied).
fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(Recorder) {
        Err(Fields(f)) => f,
        Ok(_) => &[],
    }
}

/// Where `key` belongs when it is a key of a section rather than a section of its own:
/// "a key of `[services.NAME]`", or of several sections.
pub(super) fn sections_with_key(key: &str) -> Option<String> {
    let sections: [(&str, &[&str]); 4] = [
        ("`[gateway]`", struct_fields::<RawGateway>()),
        ("`[registry]`", struct_fields::<RawRegistry>()),
        ("`[services.NAME]`", struct_fields::<RawService>()),
        ("`[[routes]]`", struct_fields::<RawRoute>()),
    ];
    let found: Vec<&str> = sections
        .iter()
        .filter(|(_, fields)| fields.contains(&key))
        .map(|(name, _)| *name)
        .collect();
    match found.as_slice() {
        [] => None,
        [one] => Some(format!(
            "`{key}` is a key of {one}: put it under that section"
        )),
        [first @ .., last] => Some(format!(
            "`{key}` is a key of {} and of {last}: put it under one of them",
            first.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sections_fields_are_read_from_their_derive() {
        assert!(struct_fields::<RawService>().contains(&"outlier"));
        assert!(struct_fields::<RawRoute>().contains(&"override"));
        assert_eq!(
            sections_with_key("outlier").as_deref(),
            Some("`outlier` is a key of `[services.NAME]`: put it under that section")
        );
        assert!(sections_with_key("split").unwrap().contains("`[[routes]]`"));
        assert_eq!(sections_with_key("nonsense"), None);
    }
}

//! Reading a JSON object as its list of members, each value left as raw text.
//!
//! Both the request envelope and the email's `data` object are read this way:
//! duplicate keys are caught (serde's maps silently keep the last one), and
//! every value stays the exact text the client sent, so what is stored is
//! byte-for-byte what was posted.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// One `"key": value` member of a JSON object, the value unparsed.
pub(crate) struct Member<'a> {
    pub key: Cow<'a, str>,
    pub value: &'a RawValue,
}

/// Why a text is not a JSON object.
#[derive(Debug)]
pub(crate) enum ObjectError {
    /// Not valid JSON at all; the message says where.
    Syntax(String),
    /// Valid JSON, but an array, string, number, boolean or null.
    NotAnObject,
    /// Arrays and objects nested deeper than allowed.
    TooDeep,
}

/// Deepest nesting of arrays and objects accepted in an email. Values are
/// kept as raw text and never walked, but whoever reads the stored objects
/// later would.
pub(crate) const MAX_DEPTH: usize = 64;

/// Parses `text` as one JSON object, nested at most `max_depth` levels, and
/// returns its members in order.
pub(crate) fn object_members(text: &str, max_depth: usize) -> Result<Vec<Member<'_>>, ObjectError> {
    if depth_exceeds(text, max_depth) {
        return Err(ObjectError::TooDeep);
    }
    // Checked first so that `[1]` says "not an object" rather than a serde
    // message about an unexpected sequence.
    let first = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .as_bytes()
        .first();
    if first.is_some_and(|b| *b != b'{') {
        return match serde_json::from_str::<de::IgnoredAny>(text) {
            Ok(_) => Err(ObjectError::NotAnObject),
            Err(e) => Err(ObjectError::Syntax(e.to_string())),
        };
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let members = de
        .deserialize_map(MembersVisitor)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| ObjectError::Syntax(e.to_string()))?;
    Ok(members)
}

/// Checks that every value decodes: numbers within a double's range, strings
/// without lone surrogate escapes. The grammar allows both, but most JSON
/// readers refuse them, and the stored objects must be readable by all.
/// Callers bound the depth first ([`object_members`]), so the recursion here
/// is shallow.
pub(crate) fn check_values(text: &str) -> Result<(), String> {
    serde_json::from_str::<Decodable>(text)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Any JSON value, decoded and dropped.
struct Decodable;

impl<'de> serde::Deserialize<'de> for Decodable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DecodableVisitor)
    }
}

struct DecodableVisitor;

impl<'de> Visitor<'de> for DecodableVisitor {
    type Value = Decodable;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Decodable, E> {
        Ok(Decodable)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Decodable, E> {
        Ok(Decodable)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Decodable, E> {
        Ok(Decodable)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Decodable, E> {
        Ok(Decodable)
    }
    fn visit_str<E>(self, _: &str) -> Result<Decodable, E> {
        Ok(Decodable)
    }
    fn visit_unit<E>(self) -> Result<Decodable, E> {
        Ok(Decodable)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Decodable, A::Error> {
        while seq.next_element::<Decodable>()?.is_some() {}
        Ok(Decodable)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Decodable, A::Error> {
        while map.next_entry::<Decodable, Decodable>()?.is_some() {}
        Ok(Decodable)
    }
}

/// Whether brackets outside strings nest deeper than `max`; one pass, no
/// recursion, so no input can exhaust the stack.
fn depth_exceeds(text: &str, max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Vec<Member<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let value = map.next_value::<&'de RawValue>()?;
            members.push(Member { key, value });
        }
        Ok(members)
    }
}

/// The first key that appears more than once, if any.
pub(crate) fn duplicate_key<'m>(members: &'m [Member<'_>]) -> Option<&'m str> {
    // Linear in the number of members: the client chooses how many there are.
    let mut seen = std::collections::HashSet::with_capacity(members.len());
    members
        .iter()
        .find(|m| !seen.insert(m.key.as_ref()))
        .map(|m| m.key.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_the_exact_text_of_values() {
        let members = object_members(r#"{ "a" : [1, 2 ], "b":"x\u0041" }"#, MAX_DEPTH).unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].key, "a");
        assert_eq!(members[0].value.get(), "[1, 2 ]");
        assert_eq!(members[1].value.get(), r#""x\u0041""#);
    }

    #[test]
    fn escaped_keys_are_unescaped() {
        let members = object_members(r#"{"\u0061":1}"#, MAX_DEPTH).unwrap();
        assert_eq!(members[0].key, "a");
    }

    #[test]
    fn non_objects_and_garbage_are_told_apart() {
        assert!(matches!(
            object_members("[1]", MAX_DEPTH),
            Err(ObjectError::NotAnObject)
        ));
        assert!(matches!(
            object_members("null", MAX_DEPTH),
            Err(ObjectError::NotAnObject)
        ));
        assert!(matches!(
            object_members("{", MAX_DEPTH),
            Err(ObjectError::Syntax(_))
        ));
        assert!(matches!(
            object_members("{} x", MAX_DEPTH),
            Err(ObjectError::Syntax(_))
        ));
        assert!(matches!(
            object_members("", MAX_DEPTH),
            Err(ObjectError::Syntax(_))
        ));
        assert!(matches!(
            object_members("[1", MAX_DEPTH),
            Err(ObjectError::Syntax(_))
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            object_members(&deep, MAX_DEPTH),
            Err(ObjectError::TooDeep)
        ));
    }

    #[test]
    fn depth_counts_only_brackets_outside_strings() {
        let nested = |n: usize| format!("{{\"a\":{}{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        assert!(object_members(&nested(MAX_DEPTH), MAX_DEPTH).is_ok());
        assert!(object_members(&nested(MAX_DEPTH + 1), MAX_DEPTH).is_err());
        let in_string = format!("{{\"a\":\"{}\\\"[\"}}", "[".repeat(1000));
        assert!(object_members(&in_string, MAX_DEPTH).is_ok(), "{in_string}");
    }

    #[test]
    fn many_members_are_checked_in_linear_time() {
        let body = format!(
            "{{{}}}",
            (0..30_000)
                .map(|i| format!("\"{i}\":0"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let members = object_members(&body, MAX_DEPTH).unwrap();
        assert_eq!(duplicate_key(&members), None);
    }

    #[test]
    fn values_must_decode() {
        assert!(check_values(r#"{"a":[1,-2,3.5e10,"x\u00e9",null,true,{"b":{}}]}"#).is_ok());
        assert!(check_values(r#"{"a":1e400}"#).is_err());
        assert!(check_values(r#"{"a":-1e400}"#).is_err());
        assert!(check_values(r#"{"a":"\ud800"}"#).is_err());
        assert!(check_values(r#"{"\udc00":1}"#).is_err());
    }

    #[test]
    fn duplicates_are_found() {
        let members = object_members(r#"{"a":1,"b":2,"\u0061":3}"#, MAX_DEPTH).unwrap();
        assert_eq!(duplicate_key(&members), Some("a"));
        let members = object_members(r#"{"a":1,"b":2}"#, MAX_DEPTH).unwrap();
        assert_eq!(duplicate_key(&members), None);
    }
}

//! The email: what a valid `data` object is, and the one place that decides it.
//!
//! Rules (also in the README and the OpenAPI document):
//! - `data` is a JSON object with no key given twice;
//! - `email_subject` and `email_content`: strings, may be empty;
//! - `email_sender`: a string that is not blank;
//! - `email_timestream`: Unix seconds between 0 and 253402300799 (the last
//!   second of year 9999), as a JSON number, or as a string of decimal digits
//!   optionally with a fractional part;
//! - any other member is kept as it was sent.
//!
//! The accepted text is kept verbatim: the object stored in the bucket is the
//! posted `data` byte for byte, except for U+FFFE and U+FFFF, which SQS cannot
//! carry and which are written as the equivalent JSON escapes `\ufffe`/`\uffff`.

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::json::{self, ObjectError};

/// The four members every email must have.
pub const REQUIRED_FIELDS: [&str; 4] = [
    "email_subject",
    "email_sender",
    "email_timestream",
    "email_content",
];

/// Largest Unix time accepted: 9999-12-31T23:59:59Z.
const MAX_UNIX_SECONDS: u64 = 253_402_300_799;

/// A validated email, holding the JSON text of its `data` object: borrowed
/// from the request or message it was read from unless it had to be made
/// safe for SQS, so that a 5 MiB email is not copied to be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage<'a> {
    json: Cow<'a, str>,
}

/// What is wrong with a `data` object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("malformed JSON: {0}")]
    Syntax(String),
    #[error("`data` must be a JSON object")]
    NotAnObject,
    /// A key given twice; named only if it is one of the required fields
    /// (other keys are the client's data, not to be echoed).
    #[error("{} is given more than once in `data`", .0.map_or("a key".to_owned(), |k| format!("`{k}`")))]
    DuplicateField(Option<&'static str>),
    #[error(
        "`data` nests arrays and objects deeper than {} levels",
        json::MAX_DEPTH
    )]
    TooDeep,
    /// A number out of a double's range, or a lone surrogate escape.
    #[error("`data` holds a value most JSON readers cannot decode: {0}")]
    Undecodable(String),
    #[error("`{0}` is missing")]
    MissingField(&'static str),
    #[error("`{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("`email_sender` must not be blank")]
    BlankSender,
    #[error(
        "`email_timestream` must be Unix seconds between 0 and {MAX_UNIX_SECONDS}, as a number or a string of digits"
    )]
    BadTimestamp,
}

impl<'a> EmailMessage<'a> {
    /// Validates the JSON text of a `data` object.
    pub fn parse(data: &'a str) -> Result<Self, EmailError> {
        let members = json::object_members(data, json::MAX_DEPTH).map_err(|e| match e {
            ObjectError::Syntax(msg) => EmailError::Syntax(msg),
            ObjectError::NotAnObject => EmailError::NotAnObject,
            ObjectError::TooDeep => EmailError::TooDeep,
        })?;
        if let Some(key) = json::duplicate_key(&members) {
            let known = REQUIRED_FIELDS.into_iter().find(|f| *f == key);
            return Err(EmailError::DuplicateField(known));
        }
        json::check_values(data).map_err(EmailError::Undecodable)?;
        for field in REQUIRED_FIELDS {
            let value = members
                .iter()
                .find(|m| m.key == field)
                .ok_or(EmailError::MissingField(field))?
                .value;
            check_field(field, value)?;
        }
        Ok(Self {
            json: sqs_safe(data),
        })
    }

    /// The `data` object's JSON text, as it is queued and stored.
    pub fn as_json(&self) -> &str {
        &self.json
    }

    pub fn into_json(self) -> String {
        self.json.into_owned()
    }
}

fn check_field(field: &'static str, value: &RawValue) -> Result<(), EmailError> {
    let wrong_type = |expected| EmailError::WrongType { field, expected };
    match field {
        "email_timestream" => check_timestamp(value),
        "email_sender" => {
            let s = string(value).ok_or_else(|| wrong_type("a string"))?;
            if s.trim().is_empty() {
                return Err(EmailError::BlankSender);
            }
            Ok(())
        }
        // The text is valid JSON (and free of lone surrogates, checked
        // before): a value starting with a quote is a string. Not decoding
        // it spares a copy of the largest field.
        _ if value.get().starts_with('"') => Ok(()),
        _ => Err(wrong_type("a string")),
    }
}

fn string(value: &RawValue) -> Option<Cow<'_, str>> {
    value
        .get()
        .starts_with('"')
        .then(|| serde_json::from_str::<Cow<'_, str>>(value.get()).ok())
        .flatten()
}

fn check_timestamp(value: &RawValue) -> Result<(), EmailError> {
    let text = value.get();
    let in_range = if text.starts_with('"') {
        let digits = string(value).ok_or(EmailError::BadTimestamp)?;
        unix_seconds(&digits).is_some_and(|(whole, fraction_is_zero)| {
            whole < MAX_UNIX_SECONDS || (whole == MAX_UNIX_SECONDS && fraction_is_zero)
        })
    } else {
        // Any JSON number in range, whatever its notation (1.7e9 too).
        serde_json::from_str::<f64>(text)
            .is_ok_and(|n| n.is_finite() && (0.0..=MAX_UNIX_SECONDS as f64).contains(&n))
    };
    if in_range {
        Ok(())
    } else {
        Err(EmailError::BadTimestamp)
    }
}

/// `"1732780800"` or `"1732780800.25"` → whole seconds; anything else (signs,
/// exponents, spaces, empty parts) → None.
/// The whole seconds of a string of digits with an optional fractional part,
/// and whether that fraction is zero; `None` when it is not such a string.
fn unix_seconds(text: &str) -> Option<(u64, bool)> {
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || fraction.is_some_and(|f| !all_digits(f)) {
        return None;
    }
    let fraction_is_zero = fraction.is_none_or(|f| f.bytes().all(|b| b == b'0'));
    // More digits than u64 holds is simply out of range.
    whole.parse().ok().map(|w| (w, fraction_is_zero))
}

/// SQS accepts only #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
/// #x10000-#x10FFFF. Valid JSON can hold no raw control character, so U+FFFE
/// and U+FFFF are the only ones to handle, and they can only be inside strings.
fn sqs_safe(json: &str) -> Cow<'_, str> {
    if !json.contains(['\u{FFFE}', '\u{FFFF}']) {
        return Cow::Borrowed(json);
    }
    Cow::Owned(
        json.replace('\u{FFFE}', "\\ufffe")
            .replace('\u{FFFF}', "\\uffff"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"{"email_subject":"Hi","email_sender":"a@b.c","email_timestream":"1732780800","email_content":"Hello"}"#;

    /// VALID with one member's value replaced, as text (no re-serializing).
    fn with(field: &str, value: &str) -> String {
        members(Some((field, value)), None)
    }

    fn without(field: &str) -> String {
        members(None, Some(field))
    }

    fn members(replace: Option<(&str, &str)>, drop: Option<&str>) -> String {
        let fields = [
            ("email_subject", r#""Hi""#),
            ("email_sender", r#""a@b.c""#),
            ("email_timestream", r#""1732780800""#),
            ("email_content", r#""Hello""#),
        ];
        let inner: Vec<String> = fields
            .iter()
            .filter(|(k, _)| Some(*k) != drop)
            .map(|(k, v)| match replace {
                Some((f, new)) if f == *k => format!(r#""{k}":{new}"#),
                _ => format!(r#""{k}":{v}"#),
            })
            .collect();
        format!("{{{}}}", inner.join(","))
    }

    #[test]
    fn a_valid_email_is_kept_verbatim() {
        let spaced = "{ \"email_subject\" : \"Hi\",\n \"email_sender\":\"a@b.c\", \"email_timestream\": 1732780800, \"email_content\":\"\\u00e9\", \"extra\": {\"x\": [1,2]} }";
        let email = EmailMessage::parse(spaced).unwrap();
        assert_eq!(email.as_json(), spaced);
    }

    #[test]
    fn every_required_field_is_required() {
        for field in REQUIRED_FIELDS {
            assert_eq!(
                EmailMessage::parse(&without(field)),
                Err(EmailError::MissingField(field)),
                "{field}"
            );
        }
    }

    #[test]
    fn strings_must_be_strings() {
        for field in ["email_subject", "email_sender", "email_content"] {
            for bad in ["null", "1", "true", "[]", "{}"] {
                assert_eq!(
                    EmailMessage::parse(&with(field, bad)),
                    Err(EmailError::WrongType {
                        field,
                        expected: "a string"
                    }),
                    "{field}={bad}"
                );
            }
        }
    }

    #[test]
    fn subject_and_content_may_be_empty_but_sender_may_not_be_blank() {
        assert!(EmailMessage::parse(&with("email_subject", r#""""#)).is_ok());
        assert!(EmailMessage::parse(&with("email_content", r#""""#)).is_ok());
        for blank in [r#""""#, r#""  \t""#] {
            assert_eq!(
                EmailMessage::parse(&with("email_sender", blank)),
                Err(EmailError::BlankSender)
            );
        }
    }

    #[test]
    fn timestamps_accept_unix_seconds_as_string_or_number() {
        for good in [
            r#""1732780800""#,
            "1732780800",
            "0",
            r#""1732780800.5""#,
            "1732780800.125",
            "253402300799",
            r#""253402300799""#,
            r#""253402300799.000""#,
            r#""0000000000000000253402300799""#,
            r#""253402300798.99""#,
            "1.7327808e9",
            "0.0",
        ] {
            assert!(
                EmailMessage::parse(&with("email_timestream", good)).is_ok(),
                "{good}"
            );
        }
        for bad in [
            r#""""#,
            r#"" 1""#,
            r#""-1""#,
            "-1",
            "1e12",
            r#""1e9""#,
            r#""1.""#,
            r#""abc""#,
            "253402300800",
            "253402300799.5",
            r#""253402300799.5""#,
            r#""253402300800""#,
            r#""517587907090.53""#,
            "99999999999999999999999",
            "null",
            "[]",
            r#""2024-11-28T00:00:00Z""#,
        ] {
            assert_eq!(
                EmailMessage::parse(&with("email_timestream", bad)),
                Err(EmailError::BadTimestamp),
                "{bad}"
            );
        }
    }

    #[test]
    fn shape_errors_are_precise() {
        assert_eq!(EmailMessage::parse("[]"), Err(EmailError::NotAnObject));
        assert_eq!(EmailMessage::parse("\"x\""), Err(EmailError::NotAnObject));
        assert!(matches!(
            EmailMessage::parse("{\"email_subject\":"),
            Err(EmailError::Syntax(_))
        ));
        let dup = VALID.replacen('{', r#"{"email_sender":"x@y.z","#, 1);
        assert_eq!(
            EmailMessage::parse(&dup),
            Err(EmailError::DuplicateField(Some("email_sender")))
        );
    }

    #[test]
    fn values_most_readers_refuse_are_refused() {
        for odd in ["1e400", r#""\ud800""#] {
            let data = VALID.replacen('{', &format!(r#"{{"extra":{odd},"#), 1);
            assert!(
                matches!(EmailMessage::parse(&data), Err(EmailError::Undecodable(_))),
                "{odd}"
            );
        }
    }

    #[test]
    fn raw_control_characters_are_malformed_json() {
        let nul = VALID.replace("Hello", "He\0llo");
        assert!(matches!(
            EmailMessage::parse(&nul),
            Err(EmailError::Syntax(_))
        ));
    }

    #[test]
    fn characters_sqs_cannot_carry_become_escapes() {
        let odd = VALID.replace("Hello", "a\u{FFFE}b\u{FFFF}c\u{FFFD}");
        let email = EmailMessage::parse(&odd).unwrap();
        assert_eq!(
            email.as_json(),
            VALID.replace("Hello", "a\\ufffeb\\uffffc\u{FFFD}")
        );
        let back: serde_json::Value = serde_json::from_str(email.as_json()).unwrap();
        assert_eq!(back["email_content"], "a\u{FFFE}b\u{FFFF}c\u{FFFD}");
    }
}

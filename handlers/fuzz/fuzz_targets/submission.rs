//! Any bytes as a POST /email body: parsing and validation never panic, and
//! whatever is accepted is a JSON object with the four fields, stored as the
//! very text that was sent (U+FFFE/U+FFFF aside, which become escapes).

#![no_main]

use handlers::email::REQUIRED_FIELDS;
use handlers::ingest::Submission;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(submission) = Submission::parse(body) else {
        return;
    };
    let _ = submission.token(None);
    let _ = submission.token(Some("header-token"));
    let Ok(email) = submission.email() else {
        return;
    };
    let stored = email.as_json();
    let value: serde_json::Value = serde_json::from_str(stored).expect("accepted JSON stays JSON");
    let object = value.as_object().expect("accepted data is an object");
    for field in REQUIRED_FIELDS {
        assert!(object.contains_key(field), "accepted without {field}");
    }
    let sent = submission.data();
    let expected = sent.replace('\u{FFFE}', "\\ufffe").replace('\u{FFFF}', "\\uffff");
    assert_eq!(stored, expected, "stored text differs from the sent text");
});

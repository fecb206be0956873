//! The statement parser and the WHERE-expression parser on arbitrary text: errors are
//! fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = maxsimdb::sql::prepare(s);
        let _ = maxsimdb::sql::parse_filter(s);
    }
});

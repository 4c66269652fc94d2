//! Any bytes read as a JSON manifest: parsing, structure and meaning checks must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifests::bundle::{Bundle, Syntax};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let _ = manifests::json::parse_stream(&text);
    let mut bundle = Bundle::default();
    bundle.add_document("fuzz.json".into(), text.clone(), Syntax::Json, None);
    let _ = manifests::validate::validate(&mut bundle, &manifests::Options::default());
    let _ = manifests::convert::convert("fuzz.json".as_ref(), &text, Syntax::Xml);
});

//! Any bytes read as an XML manifest: parsing, mapping and validation must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use manifests::bundle::{Bundle, Syntax};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let _ = manifests::xml::parse(&text);
    let mut bundle = Bundle::default();
    bundle.add_document("fuzz.xml".into(), text.clone(), Syntax::Xml, None);
    let _ = manifests::validate::validate(&mut bundle, &manifests::Options::default());
    let _ = manifests::convert::convert("fuzz.xml".as_ref(), &text, Syntax::Json);
});

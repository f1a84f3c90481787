#![no_main]

use std::sync::LazyLock;

use cps_relay::fuzzing::TranscriptCheck;

static CHECK: LazyLock<TranscriptCheck> = LazyLock::new(|| {
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/relay/server-ca.pem");
    match TranscriptCheck::new(std::path::Path::new(ca), &["dmp.example", "127.0.0.1"]) {
        Ok(c) => c,
        Err(e) => panic!("fuzz/relay/server-ca.pem: {e}"),
    }
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = CHECK.check(data);
});

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = twiin_authz::fuzzing::jws(data);
});

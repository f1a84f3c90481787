#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dmp_protocol::fuzzing::soap(data));

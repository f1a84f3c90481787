//! Replays the committed `relay_tls12` fuzz corpus and every crash the fuzzer found
//! (`fuzz/README.md`) through the fuzz target's body, on stable, in every test run.

use std::path::{Path, PathBuf};

use cps_relay::fuzzing::TranscriptCheck;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn check() -> TranscriptCheck {
    TranscriptCheck::new(
        &fuzz_dir().join("relay/server-ca.pem"),
        &["dmp.example", "127.0.0.1"],
    )
    .expect("fuzz/relay/server-ca.pem")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn every_corpus_file_and_crash_replays_cleanly() {
    let check = check();
    let corpus = files(&fuzz_dir().join("corpus/relay_tls12"));
    assert!(!corpus.is_empty(), "fuzz/corpus/relay_tls12 has no seed");
    for file in corpus
        .iter()
        .chain(&files(&fuzz_dir().join("regressions/relay_tls12")))
    {
        let data = std::fs::read(file).expect("corpus file");
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check.check(&data)));
        assert!(outcome.is_ok(), "{} panics the transcript check", file.display());
    }
}

#[test]
fn seeds_reach_the_certificate_check() {
    // Seeds that stop at the shape check would leave webpki's certificate parsing unfuzzed.
    let check = check();
    let seed = |name: &str| std::fs::read(fuzz_dir().join("corpus/relay_tls12").join(name)).expect(name);
    assert_eq!(
        check.check(&seed("allowed-sni.bin")).as_deref(),
        Some("dmp.example")
    );
    assert_eq!(
        check.check(&seed("allowed-ip-no-sni.bin")).as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(check.check(&seed("other-host.bin")), None);
    assert_eq!(check.check(&seed("tls13-client-verify.bin")), None);
}

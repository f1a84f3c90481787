//! Replays the committed twiin-authz fuzz corpora (`twiin_jws`, `twiin_form`, `aorta_id`) and
//! every crash the fuzzer found (`fuzz/README.md`) through the fuzz targets' bodies, on stable,
//! in every test run; and checks that the seeds reach past the first checks, so fuzzing never
//! starts blind.

use std::path::{Path, PathBuf};

use twiin_authz::fuzzing;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
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

fn replay<T>(target: &str, body: fn(&[u8]) -> T) {
    let corpus = files(&fuzz_dir().join("corpus").join(target));
    assert!(!corpus.is_empty(), "fuzz/corpus/{target} has no seed");
    for file in corpus
        .iter()
        .chain(&files(&fuzz_dir().join("regressions").join(target)))
    {
        let data = std::fs::read(file).expect("corpus file");
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(outcome.is_ok(), "{} panics the {target} target", file.display());
    }
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(fuzz_dir().join("corpus").join(target).join(name)).expect(name)
}

#[test]
fn every_corpus_file_and_crash_replays_cleanly() {
    replay("twiin_jws", fuzzing::jws);
    replay("twiin_form", fuzzing::token_form);
    replay("aorta_id", fuzzing::aorta_id);
}

#[test]
fn seeds_reach_the_readers() {
    use fuzzing::JwsStage;
    // Real tokens reach the signature check (and fail it: the seeds' keys are not the target's).
    for name in [
        "es512-client-assertion.jwt",
        "es512-grant.jwt",
        "rs256.jwt",
        "ps256.jwt",
        "es256.jwt",
        "kid-number.jwt",
    ] {
        assert_eq!(
            fuzzing::jws(&seed("twiin_jws", name)),
            JwsStage::BadSignature,
            "{name}"
        );
    }
    for name in ["none.jwt", "crit.jwt", "hs256-oct.jwt"] {
        assert_eq!(
            fuzzing::jws(&seed("twiin_jws", name)),
            JwsStage::AlgorithmRefused,
            "{name}"
        );
    }
    assert!(fuzzing::token_form(&seed("twiin_form", "full.form")));
    assert!(!fuzzing::token_form(&seed("twiin_form", "repeated-scope.form")));
    assert!(fuzzing::aorta_id(&seed("aorta_id", "valid")));
    assert!(fuzzing::aorta_id(&seed("aorta_id", "reversed")));
    assert!(!fuzzing::aorta_id(&seed("aorta_id", "repeated")));
}

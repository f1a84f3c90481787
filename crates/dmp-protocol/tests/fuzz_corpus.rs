//! Replays the committed fuzz corpora and every crash the fuzzer found (`fuzz/README.md`)
//! through the fuzz targets' bodies: what libFuzzer checks runs in every test run, on stable.

use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 7] = [
    ("xml", dmp_protocol::fuzzing::xml),
    ("soap", dmp_protocol::fuzzing::soap),
    ("mtom", dmp_protocol::fuzzing::mtom),
    ("vihf", dmp_protocol::fuzzing::vihf),
    ("cda", dmp_protocol::fuzzing::cda),
    ("ebrim", dmp_protocol::fuzzing::ebrim),
    ("hl7v3", dmp_protocol::fuzzing::hl7v3),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
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
    for (name, target) in TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} has no seed");
        let crashes = files(&fuzz_dir().join("regressions").join(name));
        for file in corpus.iter().chain(&crashes) {
            let data = std::fs::read(file).expect("corpus file");
            if let Err(panic) = std::panic::catch_unwind(|| target(&data)) {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                panic!("{name}: {} panics: {why}", file.display());
            }
        }
    }
}

#[test]
fn official_seeds_are_read() {
    // The seeds must reach the readers, not stop at the first refusal, or fuzzing starts blind.
    let read = |target: &str, file: &str| {
        std::fs::read(fuzz_dir().join("corpus").join(target).join(file)).expect(file)
    };
    let envelope =
        dmp_protocol::soap::parse_envelope(&read("ebrim", "TD3.1-reponse-2-entries.xml")).expect("TD3.1");
    let list = envelope
        .payload
        .as_ref()
        .and_then(|p| p.child(dmp_protocol::xml::ns::RIM, "RegistryObjectList"))
        .expect("RegistryObjectList");
    assert_eq!(
        dmp_protocol::ebrim::read_object_list(list)
            .extrinsic_objects
            .len(),
        2
    );
    dmp_protocol::cda::read_header(&read("cda", "TD2.1-DocumentME2.xml")).expect("CDA header");
    let mtom = read("mtom", "TD2.1-requete.mime");
    let split = mtom.iter().position(|b| *b == b'\n').expect("content type line");
    let ct = std::str::from_utf8(&mtom[..split]).expect("content type");
    let mp = dmp_protocol::mtom::parse(ct, &bytes::Bytes::copy_from_slice(&mtom[split + 1..])).expect("MTOM");
    assert_eq!(mp.parts.len(), 2);
}

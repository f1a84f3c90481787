//! What the Twiin/AORTA simulators (SPEC.md §3, "Outside systems") share: compact JWS signing
//! and checking with aws-lc-rs, JWKs, the AORTA test PKI (Stelsel CA, Stelsel signer, AORTA
//! token-signing key), configuration files and serving on loopback.
//!
//! The simulators deliberately do not use the code of the service they stand in for: a bug
//! shared by both would hide itself.

pub mod data;
pub mod jose;
pub mod pki;
pub mod serve;

pub use service_kit::CancellationToken;

//! The DMP's wire protocols (SPEC.md §2), without transport, gRPC or protobuf: what the
//! gateway writes and reads, and what the DMP simulator reads and answers. Each module is named
//! after the standard it implements; see README.md for the map.
//!
//! Everything here is synchronous and allocation-light; documents travel as [`bytes::Bytes`]
//! and are never copied (MTOM parts are slices of the received body).

pub mod cda;
pub mod dn;
pub mod ebrim;
#[doc(hidden)]
pub mod fuzzing;
pub mod habilitations;
pub mod hl7v3;
pub mod mtom;
pub mod patients;
pub mod soap;
pub mod transactions;
pub mod vihf;
pub mod xades;
pub mod xds;
pub mod xml;

//! What tests, benchmarks and development tools share, and nothing a production binary may
//! link: the development PKI ([`devpki`], and the `dev-pki` tool that writes it for `make run`),
//! SoftHSM2 tokens standing in for CPS cards ([`softhsm`]), throwaway PostgreSQL databases
//! ([`test_database`]), and private PostgreSQL clusters that fault tests stop and start
//! ([`pg_cluster`]).
//!
//! Depends on no crate of the suite, so any crate may take it as a dev-dependency.

pub mod devpki;
pub mod pg_cluster;
pub mod softhsm;
pub mod test_database;

//! TLS to PostgreSQL (AUDIT.md "TLS to the database"): a throwaway cluster serving a
//! certificate of the test PKI's suite CA for `localhost` and `127.0.0.1`, and listening on
//! `127.0.0.2` too, a name its certificate does not carry. `sslmode=verify-full` connects with
//! the right CA and host name only; `verify-ca` skips the name, not the CA.

use std::process::Command;

use audit_log::{AuditLog, AuditSettings};
use dev_support::devpki::{DevPki, files};
use dev_support::pg_cluster::PgCluster;

async fn connects(url: &str) -> Result<(), String> {
    let settings = AuditSettings {
        write_timeout: std::time::Duration::from_secs(10),
        ..AuditSettings::for_url(url)
    };
    AuditLog::connect(&settings)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_ca_and_the_host_name() {
    let pki_dir = tempfile::tempdir().expect("tempdir");
    let pki = DevPki::ensure(pki_dir.path()).expect("test PKI");
    let cluster = PgCluster::init_new().unwrap_or_else(|e| panic!("{e}"));
    let cert = cluster
        .install_private_file(&pki.path(files::SERVICE_SERVER_CERT), "server.crt")
        .unwrap_or_else(|e| panic!("{e}"));
    let key = cluster
        .install_private_file(&pki.path(files::SERVICE_SERVER_KEY), "server.key")
        .unwrap_or_else(|e| panic!("{e}"));
    cluster
        .start_with(&format!(
            "-c listen_addresses=127.0.0.1,127.0.0.2 -c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    let port = cluster.port();
    let right_ca = pki.path(files::SUITE_CA);
    let wrong_ca = pki.path(files::IGC_ROOT_CA);
    let url = |host: &str, mode: &str, ca: &std::path::Path| {
        format!(
            "postgres://postgres@{host}:{port}/postgres?sslmode={mode}&sslrootcert={}",
            ca.display()
        )
    };

    connects(&url("localhost", "verify-full", &right_ca))
        .await
        .expect("the right CA and host name");
    connects(&url("127.0.0.1", "verify-full", &right_ca))
        .await
        .expect("an IP address the certificate names");

    let err = connects(&url("localhost", "verify-full", &wrong_ca))
        .await
        .expect_err("a CA that did not issue the server's certificate");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let err = connects(&url("127.0.0.2", "verify-full", &right_ca))
        .await
        .expect_err("a host name the certificate does not carry");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    connects(&url("127.0.0.2", "verify-ca", &right_ca))
        .await
        .expect("verify-ca checks the CA only");
    let err = connects(&url("127.0.0.2", "verify-ca", &wrong_ca))
        .await
        .expect_err("verify-ca still checks the CA");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // The server really speaks TLS here (its own view of a psql session), so the refusals above
    // are verification failures, not a server without TLS.
    let out = Command::new("psql")
        .args([
            "-w",
            "-At",
            "-c",
            "SELECT count(*) FROM pg_stat_ssl WHERE ssl",
            &format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=require"),
        ])
        .output()
        .expect("psql");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{out:?}");
}

#[test]
fn unverified_transport_to_a_remote_server_is_refused() {
    let remote = "postgres://audit:pw@db.example:5432/audit";
    for url in [
        remote.to_owned(),
        format!("{remote}?sslmode=prefer"),
        format!("{remote}?sslmode=require"),
    ] {
        let err = AuditSettings::for_url(&url)
            .validate("audit")
            .expect_err(&url)
            .to_string();
        assert!(
            err.contains("audit.database_url") && err.contains("sslmode=verify-full"),
            "{err}"
        );
        assert!(!err.contains(":pw@"), "{err}");
        AuditSettings {
            allow_unverified_transport: true,
            ..AuditSettings::for_url(&url)
        }
        .validate("audit")
        .expect("explicitly allowed");
    }
    for url in [
        format!("{remote}?sslmode=verify-full&sslrootcert=/etc/ca.pem"),
        format!("{remote}?sslmode=verify-ca"),
        "postgres://audit@127.0.0.1/audit".to_owned(),
        "postgres://audit@localhost/audit?sslmode=disable".to_owned(),
        "postgres://audit@[::1]/audit".to_owned(),
        "postgres://audit@%2Fvar%2Frun%2Fpostgresql/audit".to_owned(),
    ] {
        AuditSettings::for_url(&url).validate("audit").expect(&url);
    }
}

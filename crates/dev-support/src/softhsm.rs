//! SoftHSM2 as a real PKCS#11 token for tests and benchmarks: initialises tokens and imports a
//! key and certificate with the Debian tools (`softhsm2-util`, `pkcs11-tool`), and can lock a
//! token's user PIN.
//!
//! SoftHSM reads `SOFTHSM2_CONF` once, at C_Initialize; `.cargo/config.toml` points it at
//! `target/softhsm/softhsm2.conf`, which [`SoftHsm::prepare`] (re)writes with a fresh token
//! folder. Provision every token a process needs *before* its first PKCS#11 call: a running
//! SoftHSM does not see tokens created by other processes afterwards.
//!
//! SoftHSM2 never locks a PIN after failed logins, but it does refuse login with CKR_PIN_LOCKED
//! when the token's stored flags carry CKF_USER_PIN_LOCKED: [`SoftHsm::lock_user_pin`] sets that
//! flag in the token's object file (`CKA_OS_TOKENFLAGS`), which is how a blocked card looks;
//! [`SoftHsm::mark_user_pin_final_try`] sets CKF_USER_PIN_FINAL_TRY the same way.

use std::path::{Path, PathBuf};
use std::process::Command;

use rustls_pki_types::pem::PemObject;

/// CKA_ID of a CPS card's authentication key and certificate ([`SoftHsm::import_cps_card`]).
pub const AUTH_ID: &str = "01";
/// CKA_ID of a CPS card's signature key and certificate.
pub const SIGN_ID: &str = "02";

/// The SoftHSM2 PKCS#11 module of Debian's `softhsm2` package.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const CKF_USER_PIN_FINAL_TRY: u64 = 0x0002_0000;
const CKF_USER_PIN_LOCKED: u64 = 0x0004_0000;
/// CKA_VENDOR_SOFTHSM + 3 (`CKA_OS_TOKENFLAGS`), stored as a CK_ULONG attribute (kind 2).
const TOKEN_FLAGS_ENTRY: [u8; 16] = [0, 0, 0, 0, 0x80, 0, 0x53, 0x4b, 0, 0, 0, 0, 0, 0, 0, 2];

/// The SoftHSM2 configuration of this process and its token folder.
#[derive(Debug, Clone)]
pub struct SoftHsm {
    conf: PathBuf,
    tokens: PathBuf,
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| {
        format!(
            "{what}: cannot run {:?}: {e} (install softhsm2 and opensc: scripts/install-test-deps.sh)",
            cmd.get_program()
        )
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl SoftHsm {
    /// Writes the configuration named by `SOFTHSM2_CONF` with a new, empty token folder.
    pub fn prepare() -> Result<SoftHsm, String> {
        let conf = PathBuf::from(std::env::var("SOFTHSM2_CONF").map_err(|_| {
            "SOFTHSM2_CONF is not set: run through cargo (see .cargo/config.toml)".to_owned()
        })?);
        if !Path::new(MODULE).exists() {
            return Err(format!(
                "{MODULE} is missing: install softhsm2 (scripts/install-test-deps.sh)"
            ));
        }
        let base = conf
            .parent()
            .ok_or("SOFTHSM2_CONF has no parent folder")?
            .to_path_buf();
        let tokens = base.join(format!("tokens-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
        // Leave no token folders from earlier runs behind.
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                let p = e.path();
                if p != tokens
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("tokens-"))
                {
                    let _ = std::fs::remove_dir_all(&p);
                }
            }
        }
        std::fs::write(
            &conf,
            format!("directories.tokendir = {}\nlog.level = ERROR\n", tokens.display()),
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
        Ok(SoftHsm { conf, tokens })
    }

    /// The PKCS#11 module to load.
    pub fn module(&self) -> PathBuf {
        PathBuf::from(MODULE)
    }

    fn tool(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SOFTHSM2_CONF", &self.conf);
        c
    }

    /// Initialises a token in the next free slot.
    pub fn init_token(&self, label: &str, so_pin: &str, user_pin: &str) -> Result<(), String> {
        run(
            self.tool("softhsm2-util").args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                so_pin,
                "--pin",
                user_pin,
            ]),
            "softhsm2-util --init-token",
        )
    }

    /// Imports a PKCS#8 PEM private key and its certificate (PEM, first block) under `id_hex`.
    pub fn import_identity(
        &self,
        token: &str,
        user_pin: &str,
        key_pem: &Path,
        cert_pem: &Path,
        id_hex: &str,
        label: &str,
    ) -> Result<(), String> {
        run(
            self.tool("softhsm2-util").args([
                "--import",
                &key_pem.display().to_string(),
                "--token",
                token,
                "--label",
                label,
                "--id",
                id_hex,
                "--pin",
                user_pin,
            ]),
            "softhsm2-util --import",
        )?;
        self.write_certificate(token, user_pin, cert_pem, id_hex, label)
    }

    fn write_certificate(
        &self,
        token: &str,
        user_pin: &str,
        cert_pem: &Path,
        id_hex: &str,
        label: &str,
    ) -> Result<(), String> {
        let cert = rustls_pki_types::CertificateDer::from_pem_file(cert_pem)
            .map_err(|e| format!("{}: {e}", cert_pem.display()))?;
        let der = self.tokens.join(format!("{label}-{id_hex}.der"));
        std::fs::write(&der, &cert).map_err(|e| format!("{}: {e}", der.display()))?;
        let result = run(
            self.tool("pkcs11-tool").args([
                "--module",
                MODULE,
                "--token-label",
                token,
                "--login",
                "--pin",
                user_pin,
                "--write-object",
                &der.display().to_string(),
                "--type",
                "cert",
                "--id",
                id_hex,
                "--label",
                label,
            ]),
            "pkcs11-tool --write-object",
        );
        let _ = std::fs::remove_file(&der);
        result
    }

    /// Loads a CPS card as IGC-Santé issues it onto `token`: the authentication key and
    /// certificate under CKA_ID [`AUTH_ID`] ("Authentification CPS") and the signature key and
    /// certificate under [`SIGN_ID`] ("Signature CPS"); `(key PEM, certificate PEM)` each. With
    /// `signature_always_authenticate` the signature key carries CKA_ALWAYS_AUTHENTICATE (a PIN
    /// for each signature, C_Login CKU_CONTEXT_SPECIFIC).
    pub fn import_cps_card(
        &self,
        token: &str,
        user_pin: &str,
        authentication: (&Path, &Path),
        signature: (&Path, &Path),
        signature_always_authenticate: bool,
    ) -> Result<(), String> {
        self.import_identity(
            token,
            user_pin,
            authentication.0,
            authentication.1,
            AUTH_ID,
            "Authentification CPS",
        )?;
        if !signature_always_authenticate {
            return self.import_identity(
                token,
                user_pin,
                signature.0,
                signature.1,
                SIGN_ID,
                "Signature CPS",
            );
        }
        // softhsm2-util cannot set CKA_ALWAYS_AUTHENTICATE; pkcs11-tool writes the key with it.
        run(
            self.tool("pkcs11-tool").args([
                "--module",
                MODULE,
                "--token-label",
                token,
                "--login",
                "--pin",
                user_pin,
                "--write-object",
                &signature.0.display().to_string(),
                "--type",
                "privkey",
                "--id",
                SIGN_ID,
                "--label",
                "Signature CPS",
                "--usage-sign",
                "--sensitive",
                "--private",
                "--always-auth",
            ]),
            "pkcs11-tool --write-object (signature key)",
        )?;
        self.write_certificate(token, user_pin, signature.1, SIGN_ID, "Signature CPS")
    }

    /// Marks the token's user PIN as locked, as a card blocked after too many wrong PINs.
    pub fn lock_user_pin(&self, token: &str) -> Result<(), String> {
        self.raise_token_flag(token, CKF_USER_PIN_LOCKED)
    }

    /// Marks the token's user PIN as on its final try, as a card after two wrong PINs.
    pub fn mark_user_pin_final_try(&self, token: &str) -> Result<(), String> {
        self.raise_token_flag(token, CKF_USER_PIN_FINAL_TRY)
    }

    fn raise_token_flag(&self, token: &str, flag: u64) -> Result<(), String> {
        for entry in std::fs::read_dir(&self.tokens)
            .map_err(|e| e.to_string())?
            .flatten()
        {
            let object = entry.path().join("token.object");
            let Ok(mut bytes) = std::fs::read(&object) else {
                continue;
            };
            // The label is stored padded to 32 bytes.
            let mut padded = token.as_bytes().to_vec();
            padded.resize(32, b' ');
            if !bytes.windows(32).any(|w| w == padded.as_slice()) {
                continue;
            }
            let at = bytes
                .windows(TOKEN_FLAGS_ENTRY.len())
                .position(|w| w == TOKEN_FLAGS_ENTRY)
                .ok_or("token flags not found in the SoftHSM object file")?
                + TOKEN_FLAGS_ENTRY.len();
            let value = bytes.get(at..at + 8).ok_or("truncated SoftHSM object file")?;
            let mut flags = [0u8; 8];
            flags.copy_from_slice(value);
            let raised = u64::from_be_bytes(flags) | flag;
            bytes[at..at + 8].copy_from_slice(&raised.to_be_bytes());
            return std::fs::write(&object, bytes).map_err(|e| format!("{}: {e}", object.display()));
        }
        Err(format!("no SoftHSM token labelled {token}"))
    }
}

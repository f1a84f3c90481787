//! The development and test PKI, made with rcgen on first use into a git-ignored folder
//! (`.dev-pki/` for `make run`, a temporary folder in tests):
//!
//! - an IGC-Santé-style test hierarchy: root "TEST AC RACINE IGC-SANTE", intermediates "TEST AC
//!   IGC-SANTE FORTE PERSONNES" (issues CPS authentication certificates) and "TEST AC IGC-SANTE
//!   ELEMENTAIRE ORGANISATIONS" (issues the DMP server certificate), all RSA-2048;
//! - a health professional's CPS card: an *authentication* certificate (keyUsage
//!   digitalSignature, EKU clientAuth: TLS) and a *signature* certificate (keyUsage
//!   nonRepudiation only, EKU emailProtection: XAdES), each with its own RSA key, as on real
//!   CPS cards. Both carry a realistic CPS subject `C=FR, O=<structure>, OU=<profession code>,
//!   title=<profession>, CN=<8+RPPS>+SN=<surname>+GN=<given name>` and the IGC-Santé profession
//!   extensions of the official TD2.1 example's signature certificate: `1.2.250.1.71.1.2.7`
//!   (the profession code, an INTEGER) and `1.2.250.1.71.4.2.5` (the specialty, a SEQUENCE of
//!   one UTF8String). The last RDN is multi-valued and, like on real test cards, kept in card
//!   order rather than DER-sorted (rcgen cannot write multi-valued RDNs, so the subject is
//!   spliced in and the TBS re-signed);
//! - the DMP server certificate (SAN `localhost`, `dmp-sim`, `127.0.0.1`);
//! - an internal "suite" CA (ECDSA P-256) for gateway↔relay mutual TLS and service listeners,
//!   with the client certificates of the card holder's UI (`holder-ui`) and of an integrator
//!   backend (`integrator`) besides the gateway's (issue 13);
//! - the ES512 (P-521) key twiin-authz signs its assertions with, and the P-256 key cps-relay
//!   signs session grants with.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};

/// File names inside the PKI folder.
pub mod files {
    /// "TEST AC RACINE IGC-SANTE".
    pub const IGC_ROOT_CA: &str = "igc-sante-root-ca.pem";
    /// "TEST AC IGC-SANTE FORTE PERSONNES", which issues CPS authentication certificates.
    pub const IGC_PERSONNES_CA: &str = "igc-sante-personnes-ca.pem";
    /// Its key, to issue more professionals.
    pub const IGC_PERSONNES_CA_KEY: &str = "igc-sante-personnes-ca.key.pem";
    /// "TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS", which issues the DMP server certificate.
    pub const IGC_ORGANISATIONS_CA: &str = "igc-sante-organisations-ca.pem";
    /// Root and both intermediates: what the DMP trusts for client certificates and what the
    /// gateway trusts for the DMP server.
    pub const IGC_CA_BUNDLE: &str = "igc-sante-ca-bundle.pem";
    /// The professional's authentication certificate alone, its key (PKCS#8), and the chain
    /// (leaf then the issuing intermediate).
    pub const CPS_AUTH_CERT: &str = "cps-auth.pem";
    /// See [`CPS_AUTH_CERT`].
    pub const CPS_AUTH_KEY: &str = "cps-auth.key.pem";
    /// See [`CPS_AUTH_CERT`].
    pub const CPS_AUTH_CHAIN: &str = "cps-auth-chain.pem";
    /// The professional's *signature* certificate (nonRepudiation: XAdES), its own key and
    /// its chain.
    pub const CPS_SIGN_CERT: &str = "cps-sign.pem";
    /// See [`CPS_SIGN_CERT`].
    pub const CPS_SIGN_KEY: &str = "cps-sign.key.pem";
    /// See [`CPS_SIGN_CERT`].
    pub const CPS_SIGN_CHAIN: &str = "cps-sign-chain.pem";
    /// The DMP simulator's server certificate and its issuer.
    pub const DMP_SERVER_CHAIN: &str = "dmp-server.pem";
    /// Its key.
    pub const DMP_SERVER_KEY: &str = "dmp-server.key.pem";
    /// The suite's internal CA (service listeners, gateway↔relay mutual TLS).
    pub const SUITE_CA: &str = "suite-ca.pem";
    /// Its key.
    pub const SUITE_CA_KEY: &str = "suite-ca.key.pem";
    /// cps-relay's server certificate.
    pub const RELAY_SERVER_CERT: &str = "cps-relay-server.pem";
    /// Its key.
    pub const RELAY_SERVER_KEY: &str = "cps-relay-server.key.pem";
    /// dmp-gateway's client certificate towards the relays.
    pub const GATEWAY_CLIENT_CERT: &str = "dmp-gateway-client.pem";
    /// Its key.
    pub const GATEWAY_CLIENT_KEY: &str = "dmp-gateway-client.key.pem";
    /// A server certificate for dmp-gateway and twiin-authz listeners.
    pub const SERVICE_SERVER_CERT: &str = "services-server.pem";
    /// Its key.
    pub const SERVICE_SERVER_KEY: &str = "services-server.key.pem";
    /// twiin-authz's ES512 (P-521) assertion signing key.
    pub const TWIIN_SIGNING_KEY: &str = "twiin-assertion-signing.key.pem";
    /// Client certificate of the card holder's own UI (caller identity `holder-ui`): Login,
    /// Logout and session grants on cps-relay.
    pub const HOLDER_UI_CLIENT_CERT: &str = "holder-ui-client.pem";
    /// Its key.
    pub const HOLDER_UI_CLIENT_KEY: &str = "holder-ui-client.key.pem";
    /// Client certificate of an integrator backend (caller identity `integrator`), the grantee
    /// of session grants and dmp-gateway's caller.
    pub const INTEGRATOR_CLIENT_CERT: &str = "integrator-client.pem";
    /// Its key.
    pub const INTEGRATOR_CLIENT_KEY: &str = "integrator-client.key.pem";
    /// cps-relay's session grant key (P-256, PKCS#8).
    pub const RELAY_GRANT_KEY: &str = "cps-relay-grant.key.pem";
    /// Its public key (SPKI PEM), for the gateways.
    pub const RELAY_GRANT_PUBLIC_KEY: &str = "cps-relay-grant.pub.pem";
    pub(super) const COMPLETE: &str = ".complete";
}

/// Why the PKI could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused a certificate or key.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file of the PKI folder.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The CPS subject could not be spliced into the certificate.
    #[error("re-signing the CPS certificate: {0}")]
    Resign(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The identity written into a CPS card's certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Professional {
    /// Professional identifier of the CN: "8" + RPPS number (e.g. "810100000001").
    pub id: String,
    /// SN.
    pub surname: String,
    /// GN.
    pub given_name: String,
    /// Profession code (TRE_G15 / `1.2.250.1.71.1.2.7`, e.g. "10", médecin), written as OU, as
    /// the INTEGER of extension `1.2.250.1.71.1.2.7`, and by name in `title`.
    pub profession: String,
    /// Specialty code (TRE_R38 / `1.2.250.1.71.4.2.5`, e.g. "SM26", médecine générale),
    /// written in extension `1.2.250.1.71.4.2.5`; none for professions without one.
    pub specialty: Option<String>,
    /// O: the practice.
    pub organization: String,
}

impl Professional {
    /// The default professional of the local suite.
    pub fn default_doctor() -> Self {
        Professional {
            id: "810100000001".into(),
            surname: "MEDECIN".into(),
            given_name: "JEAN".into(),
            profession: "10".into(),
            specialty: Some("SM26".into()),
            organization: "CABINET DR MEDECIN JEAN".into(),
        }
    }

    /// The profession's name as IGC-Santé writes it in `title` (the official example:
    /// "Médecin"); the code itself for professions this table does not know.
    pub fn profession_title(&self) -> String {
        match self.profession.as_str() {
            "10" => "Médecin",
            "21" => "Pharmacien",
            "40" => "Chirurgien-Dentiste",
            "50" => "Sage-Femme",
            "60" => "Infirmier",
            "70" => "Masseur-Kinésithérapeute",
            other => other,
        }
        .to_owned()
    }
}

/// Which key of a CPS card a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardKey {
    /// TLS client authentication: keyUsage digitalSignature, EKU clientAuth.
    Authentication,
    /// Signatures of documents (XAdES): keyUsage nonRepudiation only, EKU emailProtection,
    /// as the official TD2.1 example's certificate.
    Signature,
}

/// A development PKI folder.
#[derive(Debug, Clone)]
pub struct DevPki {
    dir: PathBuf,
}

impl DevPki {
    /// Uses the PKI in `dir`, generating it first if it is missing or incomplete. Concurrent
    /// callers are safe: generation happens in a temporary sibling folder renamed into place.
    pub fn ensure(dir: &Path) -> Result<DevPki, PkiError> {
        if dir.join(files::COMPLETE).exists() {
            // A PKI made before issue 13 lacks the holder's and integrator's identities and
            // the grant key: add them, so `make run` keeps working on an existing `.dev-pki/`.
            if !dir.join(files::RELAY_GRANT_PUBLIC_KEY).exists() {
                add_session_identities(dir)?;
            }
            // A PKI made before issue 16 has no signature certificate and no profession
            // extensions: issue the dev card's two certificates again.
            if !dir.join(files::CPS_SIGN_CHAIN).exists() {
                DevPki {
                    dir: dir.to_path_buf(),
                }
                .write_default_card()?;
            }
            return Ok(DevPki {
                dir: dir.to_path_buf(),
            });
        }
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        let staging = parent.join(format!(
            ".{}.tmp-{}",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("pki"),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&staging).map_err(io_err(&staging))?;
        generate(&staging)?;
        std::fs::write(staging.join(files::COMPLETE), b"").map_err(io_err(&staging))?;
        if dir.exists() && !dir.join(files::COMPLETE).exists() {
            // A half-written folder from an interrupted run.
            std::fs::remove_dir_all(dir).map_err(io_err(dir))?;
        }
        if std::fs::rename(&staging, dir).is_err() {
            // Another process won the race; use its PKI.
            let _ = std::fs::remove_dir_all(&staging);
            if !dir.join(files::COMPLETE).exists() {
                return Err(PkiError::Io {
                    path: dir.display().to_string(),
                    source: std::io::Error::other("could not install the generated PKI"),
                });
            }
        }
        Ok(DevPki {
            dir: dir.to_path_buf(),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of one of the [`files`].
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Issues another professional's card from the test "FORTE PERSONNES" CA (RSA-2048
    /// keys): the authentication certificate `<name>.pem`, `<name>.key.pem`,
    /// `<name>-chain.pem`, and the signature certificate `<name>-sign.pem`,
    /// `<name>-sign.key.pem`, `<name>-sign-chain.pem`. Returns the authentication (chain
    /// path, key path).
    pub fn issue_professional(&self, name: &str, who: &Professional) -> Result<(PathBuf, PathBuf), PkiError> {
        self.issue_card_certificate(&format!("{name}-sign"), who, CardKey::Signature)?;
        self.issue_card_certificate(name, who, CardKey::Authentication)
    }

    /// Issues one certificate of a card: `<name>.pem` (leaf), `<name>.key.pem`,
    /// `<name>-chain.pem`. Returns (chain path, key path).
    pub fn issue_card_certificate(
        &self,
        name: &str,
        who: &Professional,
        usage: CardKey,
    ) -> Result<(PathBuf, PathBuf), PkiError> {
        let ca_pem = read(&self.path(files::IGC_PERSONNES_CA))?;
        let ca_key = KeyPair::from_pem(&read(&self.path(files::IGC_PERSONNES_CA_KEY))?)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key)?;
        let (leaf_pem, key_pem) = cps_certificate(who, usage, &issuer, &ca_key)?;
        let chain = self.dir.join(format!("{name}-chain.pem"));
        let key = self.dir.join(format!("{name}.key.pem"));
        write(&self.dir.join(format!("{name}.pem")), &leaf_pem)?;
        write(&chain, &format!("{leaf_pem}{ca_pem}"))?;
        write(&key, &key_pem)?;
        Ok((chain, key))
    }

    /// The default doctor's card: `cps-auth*` and `cps-sign*`.
    fn write_default_card(&self) -> Result<(), PkiError> {
        let who = Professional::default_doctor();
        self.issue_card_certificate("cps-sign", &who, CardKey::Signature)?;
        self.issue_card_certificate("cps-auth", &who, CardKey::Authentication)?;
        Ok(())
    }
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(io_err(path))
}

fn write(path: &Path, content: &str) -> Result<(), PkiError> {
    std::fs::write(path, content).map_err(io_err(path))?;
    #[cfg(unix)]
    if path.to_string_lossy().ends_with(".key.pem") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
    }
    Ok(())
}

fn dn(entries: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (t, v) in entries {
        dn.push(t.clone(), *v);
    }
    dn
}

fn validity(params: &mut CertificateParams, years: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365 * years);
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(&[
        (DnType::CountryName, "FR"),
        (DnType::OrganizationName, "ASIP-SANTE"),
        (DnType::OrganizationalUnitName, "IGC-SANTE TEST"),
        (DnType::CommonName, cn),
    ]);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut p, 10);
    p
}

fn rsa_key() -> Result<KeyPair, PkiError> {
    Ok(KeyPair::generate_rsa_for(
        &rcgen::PKCS_RSA_SHA256,
        rcgen::RsaKeySize::_2048,
    )?)
}

fn leaf_params(cn: &str, sans: &[&str], eku: ExtendedKeyUsagePurpose) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    p.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName((*s).try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    p.distinguished_name = dn(&[(DnType::CommonName, cn)]);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![eku];
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, 3);
    Ok(p)
}

fn generate(dir: &Path) -> Result<(), PkiError> {
    // IGC-Santé-style hierarchy.
    let root_key = rsa_key()?;
    let root_params = ca_params("TEST AC RACINE IGC-SANTE");
    let root_cert = root_params.self_signed(&root_key)?;
    let root = Issuer::new(root_params, &root_key);

    let pers_key = rsa_key()?;
    let pers_params = ca_params("TEST AC IGC-SANTE FORTE PERSONNES");
    let pers_cert = pers_params.signed_by(&pers_key, &root)?;

    let org_key = rsa_key()?;
    let org_params = ca_params("TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS");
    let org_cert = org_params.signed_by(&org_key, &root)?;
    let org = Issuer::new(org_params, &org_key);

    write(&dir.join(files::IGC_ROOT_CA), &root_cert.pem())?;
    write(&dir.join(files::IGC_PERSONNES_CA), &pers_cert.pem())?;
    write(&dir.join(files::IGC_PERSONNES_CA_KEY), &pers_key.serialize_pem())?;
    write(&dir.join(files::IGC_ORGANISATIONS_CA), &org_cert.pem())?;
    write(
        &dir.join(files::IGC_CA_BUNDLE),
        &format!("{}{}{}", root_cert.pem(), pers_cert.pem(), org_cert.pem()),
    )?;

    DevPki {
        dir: dir.to_path_buf(),
    }
    .write_default_card()?;

    let dmp_key = rsa_key()?;
    let mut dmp_params = leaf_params(
        "dmp-sim.test",
        &["localhost", "dmp-sim", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    dmp_params.distinguished_name = dn(&[
        (DnType::CountryName, "FR"),
        (DnType::OrganizationName, "DMP SIMULATEUR"),
        (DnType::CommonName, "dmp-sim.test"),
    ]);
    let dmp_cert = dmp_params.signed_by(&dmp_key, &org)?;
    write(
        &dir.join(files::DMP_SERVER_CHAIN),
        &format!("{}{}", dmp_cert.pem(), org_cert.pem()),
    )?;
    write(&dir.join(files::DMP_SERVER_KEY), &dmp_key.serialize_pem())?;

    // Internal suite PKI for service-to-service mutual TLS.
    let suite_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut suite_params = ca_params("eHealth gateway suite development CA");
    suite_params.distinguished_name = dn(&[(DnType::CommonName, "eHealth gateway suite development CA")]);
    let suite_cert = suite_params.self_signed(&suite_key)?;
    let suite = Issuer::new(suite_params, &suite_key);
    write(&dir.join(files::SUITE_CA), &suite_cert.pem())?;
    write(&dir.join(files::SUITE_CA_KEY), &suite_key.serialize_pem())?;

    session_identities(dir, &suite)?;
    let leaves: [(&str, &str, &[&str], ExtendedKeyUsagePurpose); 3] = [
        (
            files::RELAY_SERVER_CERT,
            "cps-relay",
            &["localhost", "cps-relay", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        (
            files::GATEWAY_CLIENT_CERT,
            "dmp-gateway",
            &["dmp-gateway"],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
        (
            files::SERVICE_SERVER_CERT,
            "ehealth-services",
            &["localhost", "dmp-gateway", "twiin-authz", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
    ];
    for (file, cn, sans, eku) in leaves {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = leaf_params(cn, sans, eku)?.signed_by(&key, &suite)?;
        write(&dir.join(file), &cert.pem())?;
        write(&dir.join(file.replace(".pem", ".key.pem")), &key.serialize_pem())?;
    }

    let twiin = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512)?;
    write(&dir.join(files::TWIIN_SIGNING_KEY), &twiin.serialize_pem())?;
    Ok(())
}

/// The holder's UI and integrator client certificates (from the suite CA) and the relay's
/// grant key; the public key is written last, it marks the set complete.
fn session_identities(dir: &Path, suite: &Issuer<'_, impl rcgen::SigningKey>) -> Result<(), PkiError> {
    for (file, name) in [
        (files::HOLDER_UI_CLIENT_CERT, "holder-ui"),
        (files::INTEGRATOR_CLIENT_CERT, "integrator"),
    ] {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = leaf_params(name, &[name], ExtendedKeyUsagePurpose::ClientAuth)?.signed_by(&key, suite)?;
        write(&dir.join(file), &cert.pem())?;
        write(&dir.join(file.replace(".pem", ".key.pem")), &key.serialize_pem())?;
    }
    let grant = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    write(&dir.join(files::RELAY_GRANT_KEY), &grant.serialize_pem())?;
    write(&dir.join(files::RELAY_GRANT_PUBLIC_KEY), &grant.public_key_pem())
}

fn add_session_identities(dir: &Path) -> Result<(), PkiError> {
    let ca_key = KeyPair::from_pem(&read(&dir.join(files::SUITE_CA_KEY))?)?;
    let suite = Issuer::from_ca_cert_pem(&read(&dir.join(files::SUITE_CA))?, &ca_key)?;
    session_identities(dir, &suite)
}

/// IGC-Santé extension: the profession code (TRE_G15), an INTEGER.
pub const PROFESSION_EXTENSION: &[u64] = &[1, 2, 250, 1, 71, 1, 2, 7];
/// IGC-Santé extension: the specialties (TRE_R38), a SEQUENCE of UTF8String.
pub const SPECIALTY_EXTENSION: &[u64] = &[1, 2, 250, 1, 71, 4, 2, 5];

/// Makes a CPS card certificate (leaf PEM, key PEM) for `who` and `usage`, signed by
/// `issuer` whose RSA key is `issuer_key`.
fn cps_certificate(
    who: &Professional,
    usage: CardKey,
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
    issuer_key: &KeyPair,
) -> Result<(String, String), PkiError> {
    let key = rsa_key()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&[(DnType::CommonName, &who.id)]);
    params.is_ca = IsCa::ExplicitNoCa;
    match usage {
        CardKey::Authentication => {
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        CardKey::Signature => {
            params.key_usages = vec![KeyUsagePurpose::ContentCommitment];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
        }
    }
    // The profession code as a DER INTEGER (the official example: 02 01 0A for "10").
    let code: u64 = who.profession.parse().map_err(|_| {
        PkiError::Resign(format!(
            "profession {:?} is not a numeric TRE_G15 code",
            who.profession
        ))
    })?;
    let mut int = code.to_be_bytes().to_vec();
    while int.len() > 1 && int[0] == 0 && int[1] < 0x80 {
        int.remove(0);
    }
    if int[0] >= 0x80 {
        int.insert(0, 0);
    }
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        PROFESSION_EXTENSION,
        tlv(0x02, &int),
    )];
    if let Some(specialty) = &who.specialty {
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                SPECIALTY_EXTENSION,
                tlv(0x30, &tlv(0x0c, specialty.as_bytes())),
            ));
    }
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, 3);
    let draft = params.signed_by(&key, issuer)?;
    let der = resign_with_subject(draft.der(), &cps_subject(who), issuer_key)?;
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE", der));
    Ok((pem, key.serialize_pem()))
}

/// `C=FR, O=.., OU=<profession code>, title=<profession>, CN=<id>+SN=<surname>+GN=<given
/// name>` with the last RDN in card order (CN, SN, GN), not DER-sorted.
pub fn cps_subject(who: &Professional) -> Vec<u8> {
    const C: &[u8] = &[0x55, 0x04, 0x06];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    const OU: &[u8] = &[0x55, 0x04, 0x0b];
    const TITLE: &[u8] = &[0x55, 0x04, 0x0c];
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const SN: &[u8] = &[0x55, 0x04, 0x04];
    const GN: &[u8] = &[0x55, 0x04, 0x2a];
    let atv =
        |oid: &[u8], tag: u8, value: &str| tlv(0x30, &[tlv(0x06, oid), tlv(tag, value.as_bytes())].concat());
    let rdn = |atvs: Vec<Vec<u8>>| tlv(0x31, &atvs.concat());
    tlv(
        0x30,
        &[
            rdn(vec![atv(C, 0x13, "FR")]),
            rdn(vec![atv(O, 0x0c, &who.organization)]),
            rdn(vec![atv(OU, 0x0c, &who.profession)]),
            rdn(vec![atv(TITLE, 0x0c, &who.profession_title())]),
            rdn(vec![
                atv(CN, 0x0c, &who.id),
                atv(SN, 0x0c, &who.surname),
                atv(GN, 0x0c, &who.given_name),
            ]),
        ]
        .concat(),
    )
}

/// Replaces the subject of `cert` and signs the new TBSCertificate with `issuer_key`
/// (RSA PKCS#1 v1.5 SHA-256, as rcgen did).
fn resign_with_subject(cert: &[u8], subject: &[u8], issuer_key: &KeyPair) -> Result<Vec<u8>, PkiError> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| PkiError::Resign(e.to_string()))?;
    let tbs: &[u8] = parsed.tbs_certificate.as_ref();
    let old_subject = parsed.tbs_certificate.subject.as_raw();
    let start = (old_subject.as_ptr() as usize)
        .checked_sub(tbs.as_ptr() as usize)
        .filter(|s| s + old_subject.len() <= tbs.len())
        .ok_or_else(|| PkiError::Resign("subject not inside the TBS".into()))?;
    let header = der_header_len(tbs).ok_or_else(|| PkiError::Resign("bad TBS header".into()))?;
    let content = [&tbs[header..start], subject, &tbs[start + old_subject.len()..]].concat();
    let new_tbs = tlv(0x30, &content);

    let rsa = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(issuer_key.serialized_der())
        .map_err(|e| PkiError::Resign(e.to_string()))?;
    let mut sig = vec![0u8; rsa.public_modulus_len()];
    rsa.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        &new_tbs,
        &mut sig,
    )
    .map_err(|e| PkiError::Resign(e.to_string()))?;
    const SHA256_WITH_RSA: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
    ];
    let bits = [&[0u8][..], &sig].concat();
    Ok(tlv(
        0x30,
        &[new_tbs, SHA256_WITH_RSA.to_vec(), tlv(0x03, &bits)].concat(),
    ))
}

fn der_header_len(der: &[u8]) -> Option<usize> {
    let first = *der.get(1)?;
    if first < 0x80 {
        Some(2)
    } else {
        Some(2 + usize::from(first & 0x7f))
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use x509_parser::prelude::*;

    fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(path)
            .expect("PEM file")
            .collect::<Result<_, _>>()
            .expect("certificates")
    }

    #[test]
    fn generates_a_usable_pki() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pki = DevPki::ensure(&tmp.path().join("pki")).expect("generate");
        // Second call reuses.
        let again = DevPki::ensure(pki.dir()).expect("reuse");
        assert_eq!(again.dir(), pki.dir());

        let chain = certs(&pki.path(files::CPS_AUTH_CHAIN));
        assert_eq!(chain.len(), 2);
        let (_, leaf) = parse_x509_certificate(&chain[0]).expect("leaf parses");
        let (_, ca) = parse_x509_certificate(&chain[1]).expect("ca parses");
        leaf.verify_signature(Some(ca.public_key()))
            .expect("re-signed leaf verifies with the CA key");

        // The last RDN is multi-valued: CN + SN + GN, in that order.
        let rdns: Vec<_> = leaf.subject().iter().collect();
        let last = rdns.last().expect("rdns");
        let oids: Vec<String> = last.iter().map(|a| a.attr_type().to_id_string()).collect();
        assert_eq!(oids, ["2.5.4.3", "2.5.4.4", "2.5.4.42"]);
        assert_eq!(
            last.iter().next().and_then(|a| a.as_str().ok()),
            Some("810100000001")
        );
        let key_bits = match leaf.public_key().parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size(),
            other => panic!("not RSA: {other:?}"),
        };
        assert_eq!(key_bits, 2048);

        // rustls/webpki accepts it as a client certificate under the IGC bundle.
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(&pki.path(files::IGC_CA_BUNDLE)) {
            roots.add(c).expect("root");
        }
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let verifier = rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
            .build()
            .expect("verifier");
        verifier
            .verify_client_cert(&chain[0], &chain[1..], rustls::pki_types::UnixTime::now())
            .expect("webpki accepts the CPS certificate");
    }

    fn extension<'a>(cert: &'a X509Certificate<'_>, oid: &[u64]) -> &'a [u8] {
        let oid = x509_parser::der_parser::oid::Oid::from(oid).expect("oid");
        cert.extensions()
            .iter()
            .find(|e| e.oid == oid)
            .map(|e| e.value)
            .expect("extension present")
    }

    #[test]
    fn the_card_has_an_authentication_and_a_signature_certificate_with_the_profession() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pki = DevPki::ensure(tmp.path()).expect("generate");
        let auth = certs(&pki.path(files::CPS_AUTH_CHAIN));
        let sign = certs(&pki.path(files::CPS_SIGN_CHAIN));
        let (_, auth) = parse_x509_certificate(&auth[0]).expect("auth parses");
        let (_, sign_leaf) = parse_x509_certificate(&sign[0]).expect("sign parses");
        let (_, ca) = parse_x509_certificate(&sign[1]).expect("ca parses");
        sign_leaf
            .verify_signature(Some(ca.public_key()))
            .expect("the signature certificate verifies with the CA key");
        assert_ne!(
            auth.public_key().raw,
            sign_leaf.public_key().raw,
            "two keys, as on a CPS card"
        );

        fn ku(c: &X509Certificate<'_>) -> KeyUsage {
            *c.key_usage().expect("ku").expect("key usage present").value
        }
        let (a, s) = (ku(&auth), ku(&sign_leaf));
        assert!(a.digital_signature() && !a.non_repudiation());
        assert!(s.non_repudiation() && !s.digital_signature() && !s.key_encipherment());
        assert!(sign_leaf.key_usage().expect("ku").expect("ku").critical);

        for c in [&auth, &sign_leaf] {
            // As the official example: 02 01 0A, and SEQUENCE { UTF8String "SM26" }.
            assert_eq!(extension(c, PROFESSION_EXTENSION), [0x02, 0x01, 0x0a]);
            assert_eq!(
                extension(c, SPECIALTY_EXTENSION),
                [0x30, 0x06, 0x0c, 0x04, b'S', b'M', b'2', b'6']
            );
            let title: Vec<_> = c
                .subject()
                .iter_by_oid(&x509_parser::oid_registry::OID_X509_TITLE)
                .collect();
            assert_eq!(title.len(), 1);
            assert_eq!(title[0].as_str().expect("utf8"), "Médecin");
        }
        rustls::pki_types::PrivateKeyDer::from_pem_file(pki.path(files::CPS_SIGN_KEY)).expect("sign key");
    }

    #[test]
    fn an_older_pki_gets_the_signature_certificate() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pki = DevPki::ensure(tmp.path()).expect("generate");
        std::fs::remove_file(pki.path(files::CPS_SIGN_CHAIN)).expect("remove");
        let again = DevPki::ensure(tmp.path()).expect("upgrade");
        assert_eq!(certs(&again.path(files::CPS_SIGN_CHAIN)).len(), 2);
    }

    #[test]
    fn issues_more_professionals() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pki = DevPki::ensure(tmp.path()).expect("generate");
        let who = Professional {
            id: "810100000002".into(),
            surname: "INFIRMIER".into(),
            ..Professional::default_doctor()
        };
        let (chain, key) = pki.issue_professional("nurse", &who).expect("issue");
        let chain = certs(&chain);
        assert_eq!(chain.len(), 2);
        rustls::pki_types::PrivateKeyDer::from_pem_file(&key).expect("key");
        let (_, leaf) = parse_x509_certificate(&chain[0]).expect("parses");
        assert!(leaf.subject().to_string().contains("810100000002"));
    }

    #[test]
    fn session_identities_are_added_to_an_older_pki() {
        // That each client certificate names its caller identity is checked where that
        // identity is computed (service_kit::tls).
        let tmp = tempfile::tempdir().expect("tempdir");
        let pki = DevPki::ensure(tmp.path()).expect("generate");
        for f in [
            files::HOLDER_UI_CLIENT_CERT,
            files::HOLDER_UI_CLIENT_KEY,
            files::RELAY_GRANT_KEY,
            files::RELAY_GRANT_PUBLIC_KEY,
        ] {
            std::fs::remove_file(pki.path(f)).expect("remove");
        }
        let again = DevPki::ensure(tmp.path()).expect("upgrade");
        let holder = certs(&again.path(files::HOLDER_UI_CLIENT_CERT));
        let (_, parsed) = parse_x509_certificate(&holder[0]).expect("parses");
        let suite = certs(&again.path(files::SUITE_CA));
        let (_, ca) = parse_x509_certificate(&suite[0]).expect("ca parses");
        parsed
            .verify_signature(Some(ca.public_key()))
            .expect("issued by the existing suite CA");
        rustls::pki_types::PrivateKeyDer::from_pem_file(again.path(files::RELAY_GRANT_KEY))
            .expect("grant key");
    }
}

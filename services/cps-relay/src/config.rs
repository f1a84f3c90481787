//! cps-relay configuration (SPEC.md §0, §1). Defaults are the local development setup: mutual
//! TLS with the files of `.dev-pki/` (made by `make dev-pki`), the software key of the dev
//! professional, loopback only.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::config::{
    ConfigError, MetricsSettings, ServerSettings, ServerTlsSettings, ServiceConfig, TelemetrySettings,
    check_file, duration,
};

service_kit::service_config! {
    /// cps-relay's configuration file (`--config`), over these defaults, under `CPS_RELAY_*`.
    pub struct Config {
        /// Development mode (`make run`, tests): empty `access` roles default to the dev PKI's
        /// identities, and `grants.required = false` is accepted. Never in production.
        pub development: bool,
        /// The card behind the relay.
        pub backend: BackendSettings,
        /// Who may call, how often, and in which role.
        pub access: AccessSettings,
        /// Session grants: the holder's consent to signatures for an integrator.
        pub grants: GrantSettings,
        /// Which TLS servers the card may authenticate to.
        pub signing: SigningSettings,
        /// Watching the token for removal and swap.
        pub card: CardSettings,
        /// The seed's CPS agent HTTP API beside the gRPC face; off unless `listen` is set.
        pub agent_http: AgentHttpSettings,
        /// Where every signature is recorded (SQLite file by default, PostgreSQL with DATABASE_URL).
        pub audit: audit_log::AuditSettings,
    }
}

/// Which kind of card backend.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A PEM key and certificate chain: development and `make run`.
    Software,
    /// A PKCS#11 token: the CPS card through the Cryptolib CPS, or an HSM.
    Pkcs11,
}

/// The `[backend]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackendSettings {
    /// Which backend is used; the other's section is ignored.
    pub kind: BackendKind,
    /// `[backend.software]`.
    pub software: SoftwareSettings,
    /// `[backend.pkcs11]`.
    pub pkcs11: Pkcs11Settings,
}

/// A key and certificate chain in PEM files, standing in for a card.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SoftwareSettings {
    /// Leaf certificate then its issuers, PEM.
    pub certificate_chain: PathBuf,
    /// PKCS#8 or PKCS#1 PEM private key.
    pub private_key: PathBuf,
    /// The card's *signature* certificate (nonRepudiation) then its issuers, PEM: what
    /// SignXadesSignedInfo signs with. Unset: no XAdES signatures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_certificate_chain: Option<PathBuf>,
    /// Its RSA private key, PEM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_private_key: Option<PathBuf>,
}

/// A PKCS#11 token (the CPS card through the Cryptolib CPS, or an HSM) and the objects on it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Pkcs11Settings {
    /// The PKCS#11 module: `libcps3_pkcs11_lux.so` (Cryptolib CPS, Linux),
    /// `cps3_pkcs11_w64.dll` (Windows), `libcps3_pkcs11_osx.dylib` (macOS), an HSM's module, or
    /// `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// RFC 7512 URI selecting token and objects (`pkcs11:token=...;id=%01`); the keys below
    /// override its parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// The token's label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_label: Option<String>,
    /// The token's serial number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_serial: Option<String>,
    /// CKA_LABEL of the private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_label: Option<String>,
    /// Hex CKA_ID of the private key (and of the certificate unless `cert_id` is set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// CKA_LABEL of the certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_label: Option<String>,
    /// Hex CKA_ID of the certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_id: Option<String>,
    /// CKA_LABEL of the card's *signature* private key (nonRepudiation), the only key
    /// SignXadesSignedInfo uses. Unset with `signature_key_id`: no XAdES signatures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_key_label: Option<String>,
    /// Hex CKA_ID of the signature private key (and of its certificate unless
    /// `signature_cert_id` is set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_key_id: Option<String>,
    /// CKA_LABEL of the signature certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_cert_label: Option<String>,
    /// Hex CKA_ID of the signature certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_cert_id: Option<String>,
    /// Issuing CA certificates (PEM) sent after the card's leaf; cards often hold only the leaf.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<PathBuf>,
    /// Sessions used in parallel. A physical card serialises anyway: keep 1; an HSM can use more.
    pub sessions: usize,
    /// HSM deployments: a file holding the operator PIN, read once at start-up to log in and
    /// then dropped. Unset for CPS cards: the holder logs in through the Login RPC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
}

/// The `[access]` section (SPEC.md §1, **Decision — not a signing oracle**).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSettings {
    /// SHA-256 fingerprints (hex) of the client certificates allowed; empty = any certificate
    /// the `server.tls.client_ca` issued.
    pub allowed_clients: Vec<String>,
    /// The relay listens on loopback unless this is set.
    pub allow_non_loopback: bool,
    /// Signatures per second per caller (0 = unlimited).
    pub rate_per_second: u32,
    /// Signatures a caller may make at once before the rate applies.
    pub burst: u32,
    /// How long a call waits for a busy card before DEADLINE_EXCEEDED.
    #[serde(with = "duration")]
    pub card_wait: Duration,
    /// Caller identities of the card holder's own UI: Login, Logout, IssueSessionGrant,
    /// RevokeSessionGrants, GetStatus.
    pub holders: Vec<String>,
    /// Gateways and the professionals each may act for: GetAuthenticationCertificate,
    /// SignForAuthentication, WatchSession, GetStatus.
    pub gateways: Vec<GatewayAccess>,
    /// Integrator backends a holder may grant a session to (the grants' `azp`).
    pub grant_callers: Vec<String>,
}

/// One gateway's caller identity and the professional ids it may act for (`"*"`: any).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GatewayAccess {
    /// The gateway's caller identity.
    pub identity: String,
    /// Professional ids it may act for; `["*"]` for any.
    pub professionals: Vec<String>,
}

/// Session grants (issue 13): the holder's consent, signed with a key of their own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrantSettings {
    /// SignForAuthentication needs a live grant (`cps-session-grant-id` metadata). `false` only
    /// with `development = true`, for callers that do not present grants yet.
    pub required: bool,
    /// The grant key: P-256 private key, PKCS#8 or SEC1 PEM. Neither the card's key nor a TLS key.
    pub signing_key: PathBuf,
    /// This relay's id in the gateways' `relays` table (the grants' `iss`).
    pub relay_id: String,
    /// Longest grant lifetime; a request may ask for less.
    #[serde(with = "duration")]
    pub max_lifetime: Duration,
}

/// Which TLS servers the card may authenticate to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SigningSettings {
    /// CA certificates (PEM) that issue the allowed servers' certificates.
    pub server_ca: PathBuf,
    /// Host names (or IP addresses, for clients that send no SNI) the card may authenticate to.
    pub allowed_hosts: Vec<String>,
    /// Sign TLS 1.3 CertificateVerify content, whose server the relay cannot see.
    pub allow_tls13: bool,
}

/// Watching the token for removal and swap.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CardSettings {
    /// How often the token is polled while a card session is open and someone watches it.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
}

/// The seed's CPS agent HTTP API (`GET /cps/authenticationCertificate`,
/// `POST /cps/sign/for/authentication/SHA256WithRSA`), served with the gRPC face's mutual TLS
/// (`server.tls`) and policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentHttpSettings {
    /// Where it listens (HTTPS with client certificates); off unless set. Loopback only unless
    /// `access.allow_non_loopback = true`, as the gRPC listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::SocketAddr>,
}

/// Caller identities of the development PKI's client certificates (their DNS SANs), the roles'
/// defaults with `development = true`.
pub(crate) mod dev_identities {
    /// The card holder's UI.
    pub(crate) const HOLDER_UI: &str = "holder-ui";
    /// dmp-gateway.
    pub(crate) const GATEWAY: &str = "dmp-gateway";
    /// An integrator backend.
    pub(crate) const INTEGRATOR: &str = "integrator";
}

/// DMP hosts the card may authenticate to by default: production, and the test platform named
/// in the DMP WSDL annex.
pub(crate) const DMP_HOSTS: [&str; 2] = ["lps2.dmp.gouv.fr", "dev6.lps-igc-sante.dmp.gouv.fr"];

impl Default for Config {
    fn default() -> Self {
        let mut server = ServerSettings::loopback(50051);
        server.tls = Some(ServerTlsSettings {
            cert: ".dev-pki/cps-relay-server.pem".into(),
            key: ".dev-pki/cps-relay-server.key.pem".into(),
            client_ca: Some(".dev-pki/suite-ca.pem".into()),
        });
        Config {
            development: false,
            server,
            metrics: MetricsSettings::loopback(9451),
            telemetry: TelemetrySettings::default(),
            backend: BackendSettings::default(),
            access: AccessSettings::default(),
            grants: GrantSettings::default(),
            signing: SigningSettings::default(),
            card: CardSettings::default(),
            agent_http: AgentHttpSettings::default(),
            audit: audit_log::AuditSettings::default(),
        }
    }
}

impl Default for BackendSettings {
    fn default() -> Self {
        BackendSettings {
            kind: BackendKind::Software,
            software: SoftwareSettings::default(),
            pkcs11: Pkcs11Settings::default(),
        }
    }
}

impl Default for SoftwareSettings {
    fn default() -> Self {
        SoftwareSettings {
            certificate_chain: ".dev-pki/cps-auth-chain.pem".into(),
            private_key: ".dev-pki/cps-auth.key.pem".into(),
            signature_certificate_chain: None,
            signature_private_key: None,
        }
    }
}

impl Default for Pkcs11Settings {
    fn default() -> Self {
        Pkcs11Settings {
            module: "libcps3_pkcs11_lux.so".into(),
            uri: None,
            token_label: None,
            token_serial: None,
            key_label: None,
            key_id: None,
            cert_label: None,
            cert_id: None,
            signature_key_label: None,
            signature_key_id: None,
            signature_cert_label: None,
            signature_cert_id: None,
            chain: None,
            sessions: 1,
            pin_file: None,
        }
    }
}

impl Default for AccessSettings {
    fn default() -> Self {
        AccessSettings {
            allowed_clients: Vec::new(),
            allow_non_loopback: false,
            rate_per_second: 50,
            burst: 100,
            card_wait: Duration::from_secs(5),
            holders: Vec::new(),
            gateways: Vec::new(),
            grant_callers: Vec::new(),
        }
    }
}

impl Default for GrantSettings {
    fn default() -> Self {
        GrantSettings {
            required: true,
            signing_key: ".dev-pki/cps-relay-grant.key.pem".into(),
            relay_id: "local".into(),
            max_lifetime: Duration::from_secs(3600),
        }
    }
}

impl Default for SigningSettings {
    fn default() -> Self {
        SigningSettings {
            server_ca: ".dev-pki/igc-sante-ca-bundle.pem".into(),
            allowed_hosts: DMP_HOSTS.iter().map(|h| (*h).to_owned()).collect(),
            allow_tls13: false,
        }
    }
}

impl Default for CardSettings {
    fn default() -> Self {
        CardSettings {
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl AccessSettings {
    /// The roles in force: with `development`, empty lists name the dev PKI's identities.
    pub(crate) fn effective(&self, development: bool) -> AccessSettings {
        let mut a = self.clone();
        if development {
            if a.holders.is_empty() {
                a.holders = vec![dev_identities::HOLDER_UI.into()];
            }
            if a.gateways.is_empty() {
                a.gateways = vec![GatewayAccess {
                    identity: dev_identities::GATEWAY.into(),
                    professionals: vec!["*".into()],
                }];
            }
            if a.grant_callers.is_empty() {
                a.grant_callers = vec![dev_identities::INTEGRATOR.into()];
            }
        }
        a
    }

    fn validate(&self, development: bool) -> Result<(), ConfigError> {
        if self.gateways.is_empty() && !development {
            return Err(ConfigError::invalid(
                "access.gateways",
                "no gateway may use the card: list each gateway's caller identity and professionals",
            ));
        }
        let blank = |key: String, v: &str| {
            if v.trim().is_empty() {
                Err(ConfigError::invalid(key, "empty caller identity"))
            } else {
                Ok(())
            }
        };
        for (i, h) in self.holders.iter().enumerate() {
            blank(format!("access.holders[{i}]"), h)?;
        }
        for (i, g) in self.grant_callers.iter().enumerate() {
            blank(format!("access.grant_callers[{i}]"), g)?;
        }
        for (i, g) in self.gateways.iter().enumerate() {
            blank(format!("access.gateways[{i}].identity"), &g.identity)?;
            if g.professionals.is_empty() || g.professionals.iter().any(|p| p.trim().is_empty()) {
                return Err(ConfigError::invalid(
                    format!("access.gateways[{i}].professionals"),
                    "list professional ids, or [\"*\"] for any",
                ));
            }
        }
        Ok(())
    }
}

impl GrantSettings {
    fn validate(&self, development: bool) -> Result<(), ConfigError> {
        if !self.required && !development {
            return Err(ConfigError::invalid(
                "grants.required",
                "false is accepted only with development = true: in production the card signs only inside a session grant",
            ));
        }
        check_file("grants.signing_key", &self.signing_key)?;
        if self.relay_id.trim().is_empty() {
            return Err(ConfigError::invalid("grants.relay_id", "must not be empty"));
        }
        if self.max_lifetime < Duration::from_secs(1) || self.max_lifetime > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::invalid(
                "grants.max_lifetime",
                "must be between 1s and 24h",
            ));
        }
        Ok(())
    }
}

impl SigningSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        check_file("signing.server_ca", &self.server_ca)?;
        if self.allowed_hosts.is_empty() {
            return Err(ConfigError::invalid(
                "signing.allowed_hosts",
                "the card could authenticate to no server: list the DMP's host names",
            ));
        }
        for (i, h) in self.allowed_hosts.iter().enumerate() {
            if rustls_pki_types::ServerName::try_from(h.as_str()).is_err() {
                return Err(ConfigError::invalid(
                    format!("signing.allowed_hosts[{i}]"),
                    format!("`{h}` is neither a DNS name nor an IP address"),
                ));
            }
        }
        Ok(())
    }
}

fn hex_id(key: &str, value: &Option<String>) -> Result<Option<Vec<u8>>, ConfigError> {
    value
        .as_deref()
        .map(|v| {
            hex::decode(v.replace(':', "")).map_err(|e| ConfigError::invalid(key, format!("not hex: {e}")))
        })
        .transpose()
}

impl Pkcs11Settings {
    /// The token and object selection, the URI first, then the explicit keys.
    pub(crate) fn selection(&self) -> Result<crate::card::pkcs11::Selection, ConfigError> {
        let mut sel = crate::card::pkcs11::Selection::default();
        if let Some(uri) = &self.uri {
            let u = crate::card::pkcs11_uri::parse(uri)
                .map_err(|e| ConfigError::invalid("backend.pkcs11.uri", e))?;
            sel.token_label = u.token;
            sel.token_serial = u.serial;
            sel.key_label = u.object.clone();
            sel.cert_label = u.object;
            sel.key_id = u.id.clone();
            sel.cert_id = u.id;
        }
        if self.token_label.is_some() {
            sel.token_label = self.token_label.clone();
        }
        if self.token_serial.is_some() {
            sel.token_serial = self.token_serial.clone();
        }
        if self.key_label.is_some() {
            sel.key_label = self.key_label.clone();
        }
        if self.cert_label.is_some() {
            sel.cert_label = self.cert_label.clone();
        }
        if let Some(id) = hex_id("backend.pkcs11.key_id", &self.key_id)? {
            sel.key_id = Some(id);
        }
        if let Some(id) = hex_id("backend.pkcs11.cert_id", &self.cert_id)? {
            sel.cert_id = Some(id);
        }
        let signature = crate::card::pkcs11::ObjectSelection {
            key_label: self.signature_key_label.clone(),
            key_id: hex_id("backend.pkcs11.signature_key_id", &self.signature_key_id)?,
            cert_label: self.signature_cert_label.clone(),
            cert_id: hex_id("backend.pkcs11.signature_cert_id", &self.signature_cert_id)?,
        };
        if signature != crate::card::pkcs11::ObjectSelection::default() {
            if signature.key_label.is_none() && signature.key_id.is_none() {
                return Err(ConfigError::invalid(
                    "backend.pkcs11.signature_key_id",
                    "set signature_key_id or signature_key_label to select the signature key",
                ));
            }
            sel.signature = Some(signature);
        }
        Ok(sel)
    }
}

impl ServiceConfig for Config {
    const ENV_PREFIX: &'static str = "CPS_RELAY_";

    fn validate(&self) -> Result<(), ConfigError> {
        // The relay signs with a health professional's card: callers always authenticate.
        match &self.server.tls {
            None => {
                return Err(ConfigError::invalid(
                    "server.tls",
                    "cps-relay requires mutual TLS; set server.tls",
                ));
            }
            Some(tls) if tls.client_ca.is_none() => {
                return Err(ConfigError::invalid(
                    "server.tls.client_ca",
                    "cps-relay requires client certificates; set the CA that issues its callers' certificates",
                ));
            }
            Some(_) => {}
        }
        if !self.server.listen.ip().is_loopback() && !self.access.allow_non_loopback {
            return Err(ConfigError::invalid(
                "server.listen",
                "cps-relay listens on loopback only unless access.allow_non_loopback = true",
            ));
        }
        if let Some(listen) = self.agent_http.listen
            && !listen.ip().is_loopback()
            && !self.access.allow_non_loopback
        {
            return Err(ConfigError::invalid(
                "agent_http.listen",
                "cps-relay listens on loopback only unless access.allow_non_loopback = true",
            ));
        }
        for (i, f) in self.access.allowed_clients.iter().enumerate() {
            let clean = f.replace(':', "");
            if clean.len() != 64 || hex::decode(&clean).is_err() {
                return Err(ConfigError::invalid(
                    format!("access.allowed_clients[{i}]"),
                    "not a SHA-256 fingerprint (64 hex digits)",
                ));
            }
        }
        self.audit.validate("audit")?;
        if self.access.burst == 0 {
            return Err(ConfigError::invalid("access.burst", "must be at least 1"));
        }
        match self.backend.kind {
            BackendKind::Software => {
                check_file(
                    "backend.software.certificate_chain",
                    &self.backend.software.certificate_chain,
                )?;
                check_file("backend.software.private_key", &self.backend.software.private_key)?;
                let sw = &self.backend.software;
                match (&sw.signature_certificate_chain, &sw.signature_private_key) {
                    (Some(chain), Some(key)) => {
                        check_file("backend.software.signature_certificate_chain", chain)?;
                        check_file("backend.software.signature_private_key", key)?;
                    }
                    (None, None) => {}
                    (Some(_), None) => {
                        return Err(ConfigError::invalid(
                            "backend.software.signature_private_key",
                            "required with backend.software.signature_certificate_chain",
                        ));
                    }
                    (None, Some(_)) => {
                        return Err(ConfigError::invalid(
                            "backend.software.signature_certificate_chain",
                            "required with backend.software.signature_private_key",
                        ));
                    }
                }
            }
            BackendKind::Pkcs11 => {
                let p = &self.backend.pkcs11;
                p.selection()?;
                if p.sessions == 0 {
                    return Err(ConfigError::invalid(
                        "backend.pkcs11.sessions",
                        "must be at least 1",
                    ));
                }
                if let Some(chain) = &p.chain {
                    check_file("backend.pkcs11.chain", chain)?;
                }
                if let Some(pin) = &p.pin_file {
                    check_file("backend.pkcs11.pin_file", pin)?;
                }
            }
        }
        self.access.validate(self.development)?;
        self.grants.validate(self.development)?;
        self.signing.validate()?;
        if self.card.poll_interval < Duration::from_millis(100) {
            return Err(ConfigError::invalid(
                "card.poll_interval",
                "at least 100ms (each poll asks the card)",
            ));
        }
        self.server.validate("server")
    }
}

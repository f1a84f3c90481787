//! The VIHF ("Vecteur d'Identification et d'Habilitation Formelles") SAML 2.0 assertion that
//! every DMP request carries in `wsse:Security` (SPEC.md §2; the official samples are in
//! `tests/fixtures/dmp-package/examples/Exemples_Jeton_VIHF/`), in direct mode (`Authentification_mode`
//! DIRECTE): the professional authenticates with the card in the TLS handshake, so the
//! assertion may travel unsigned.
//!
//! Issuer = the card certificate's subject DN, NameID = the professional id, AuthnContext
//! SmartcardPKI, and the attributes the DMP requires. [`parse`] reads an assertion back (the
//! DMP simulator checks with it).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::xds::{Code, FieldError, Ins};
use crate::xml::{self, Element, esc, esc_attr, ns};

/// Why a certificate or an assertion cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VihfError {
    /// The card certificate is not X.509 DER.
    #[error("the certificate cannot be parsed: {0}")]
    Certificate(String),
    /// The card certificate names no professional.
    #[error("the certificate subject has no CN (professional identifier)")]
    NoProfessionalId,
    /// The element is something else.
    #[error("<{0}> is not a SAML 2.0 Assertion")]
    NotAnAssertion(String),
    /// A SAML 1.x (or other) assertion.
    #[error("the assertion's Version is not 2.0")]
    Version,
}

/// `VIHF_Version` written and required.
pub const VIHF_VERSION: &str = "3.0";
/// The AuthnContextClassRef of direct mode (the card authenticated the TLS connection).
pub const SMARTCARD_PKI: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:SmartcardPKI";
/// Format of the Issuer (the certificate's subject DN).
pub const X509_SUBJECT_NAME: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName";
/// Coding system of professions (TRE_G15).
pub const PROFESSION_SYSTEM: &str = "1.2.250.1.71.1.2.7";
/// Coding system of specialties (TRE_R38).
pub const SPECIALTY_SYSTEM: &str = "1.2.250.1.71.4.2.5";
/// Coding system of the access modes (purposeofuse).
pub const PURPOSE_SYSTEM: &str = "1.2.250.1.213.1.1.4.248";

/// The access modes (`purposeofuse` codes) and their display names.
pub const PURPOSES_OF_USE: [(&str, &str); 4] = [
    ("normal", "Accès normal"),
    ("urgence", "Accès en urgence"),
    ("bris_de_glace", "Accès en bris de glace"),
    ("centre15", "Accès régulation"),
];

/// Names of the VIHF attributes.
pub mod attr {
    /// The structure the professional acts for.
    pub const STRUCTURE: &str = "Identifiant_Structure";
    /// The activity sector (`SA07^1.2.250.1.71.4.2.4`).
    pub const SECTOR: &str = "Secteur_Activite";
    /// Profession and specialty.
    pub const ROLE: &str = "urn:oasis:names:tc:xacml:2.0:subject:role";
    /// [`super::VIHF_VERSION`].
    pub const VERSION: &str = "VIHF_Version";
    /// `DIRECTE` or `INDIRECTE_RENFORCEE`.
    pub const MODE: &str = "Authentification_mode";
    /// The patient's INS (CX form).
    pub const RESOURCE_ID: &str = "urn:oasis:names:tc:xacml:2.0:resource:resource-id";
    /// `urn:dmp`.
    pub const RESOURCE_URN: &str = "Ressource_URN";
    /// The access mode.
    pub const PURPOSE: &str = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse";
    /// The software's id.
    pub const LPS_ID: &str = "LPS_ID";
    /// The software's name.
    pub const LPS_NAME: &str = "LPS_Nom";
    /// The software's version.
    pub const LPS_VERSION: &str = "LPS_Version";
    /// The DMP's homologation number of the software.
    pub const LPS_HOMOLOGATION: &str = "LPS_ID_HOMOLOGATION_DMP";
    /// Every attribute a direct-mode VIHF must carry (resource-id only when a patient is
    /// concerned, which is every DMP transaction of the gateway).
    pub const REQUIRED: [&str; 12] = [
        STRUCTURE,
        SECTOR,
        ROLE,
        VERSION,
        MODE,
        RESOURCE_ID,
        RESOURCE_URN,
        PURPOSE,
        LPS_ID,
        LPS_NAME,
        LPS_VERSION,
        LPS_HOMOLOGATION,
    ];
}

/// The software (LPS) identity the DMP registered ("homologation"), from configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LpsIdentity {
    /// `LPS_ID`.
    pub id: String,
    /// `LPS_Nom`.
    pub name: String,
    /// `LPS_Version`.
    pub version: String,
    /// `LPS_ID_HOMOLOGATION_DMP`.
    pub homologation_id: String,
}

/// Development values; `version` is the suite's version (every crate of the workspace carries
/// the same).
impl Default for LpsIdentity {
    fn default() -> Self {
        LpsIdentity {
            id: "00.00.00.00".into(),
            name: "ehealth-gateway".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            homologation_id: "TEST-HOMOLOGATION".into(),
        }
    }
}

/// Who the card says the professional is (parsed from the authentication certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfessionalIdentity {
    /// The CN: `8` + RPPS, e.g. "810100000001".
    pub id: String,
    /// The subject DN in RFC 4514 order (most specific RDN first), e.g.
    /// `CN=810100000001+SN=MEDECIN+GN=JEAN,OU=10,O=…,C=FR`.
    pub subject_dn: String,
    /// The SN (family name).
    pub family: String,
    /// The GN (given name).
    pub given: String,
    /// The OU (profession code on CPS certificates), if any.
    pub profession: Option<String>,
}

fn rfc4514_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let edge = i == 0 && (c == '#' || c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    if out.ends_with(' ') {
        out.pop();
        out.push_str("\\ ");
    }
    out
}

impl ProfessionalIdentity {
    /// Reads the identity from a DER certificate. Tolerates the non-DER-sorted multi-valued RDN
    /// of real test cards (RDN values are read in card order).
    pub fn from_certificate(der: &[u8]) -> Result<ProfessionalIdentity, VihfError> {
        use x509_parser::prelude::FromDer;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|e| VihfError::Certificate(e.to_string()))?;
        let mut rdns = Vec::new();
        let (mut cn, mut sn, mut gn, mut ou) = (None, None, None, None);
        for rdn in cert.subject().iter() {
            let mut parts = Vec::new();
            for atv in rdn.iter() {
                let oid = atv.attr_type().to_id_string();
                let value = atv
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|_| format!("#{}", hex_encode(atv.attr_value().as_bytes())));
                let key = match oid.as_str() {
                    "2.5.4.3" => {
                        cn.get_or_insert(value.clone());
                        "CN".to_string()
                    }
                    "2.5.4.4" => {
                        sn.get_or_insert(value.clone());
                        "SN".to_string()
                    }
                    "2.5.4.42" => {
                        gn.get_or_insert(value.clone());
                        "GN".to_string()
                    }
                    "2.5.4.11" => {
                        ou.get_or_insert(value.clone());
                        "OU".to_string()
                    }
                    "2.5.4.10" => "O".to_string(),
                    "2.5.4.6" => "C".to_string(),
                    "2.5.4.12" => "T".to_string(),
                    other => other.to_string(),
                };
                let shown = if value.starts_with('#')
                    && !matches!(key.as_str(), "CN" | "SN" | "GN" | "OU" | "O" | "C")
                {
                    value
                } else {
                    rfc4514_escape(&value)
                };
                parts.push(format!("{key}={shown}"));
            }
            rdns.push(parts.join("+"));
        }
        rdns.reverse();
        let id = cn.ok_or(VihfError::NoProfessionalId)?;
        // A CPS CN may carry the id followed by other text ("810100000001/…"): keep the id.
        let id = id.split(['/', ' ']).next().unwrap_or_default().to_string();
        Ok(ProfessionalIdentity {
            id,
            subject_dn: rdns.join(","),
            family: sn.unwrap_or_default(),
            given: gn.unwrap_or_default(),
            profession: ou,
        })
    }
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// What the caller says about the professional's context, checked (the professional id is
/// checked against the card by [`build`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VihfContext {
    /// The professional the call is for (must be the card's).
    pub professional_id: String,
    /// `Identifiant_Structure`.
    pub structure_id: String,
    /// `Secteur_Activite`.
    pub activity_sector: String,
    /// The profession (TRE_G15).
    pub profession: Code,
    /// The specialty (TRE_R38).
    pub specialty: Option<Code>,
    /// One of [`PURPOSES_OF_USE`].
    pub purpose_of_use: String,
}

/// Everything an assertion is made of.
pub struct VihfInput<'a> {
    /// Who the card says the professional is.
    pub professional: &'a ProfessionalIdentity,
    /// What the caller says.
    pub context: &'a VihfContext,
    /// The patient concerned.
    pub patient: &'a Ins,
    /// The sending software.
    pub lps: &'a LpsIdentity,
    /// `IssueInstant` and `AuthnInstant`.
    pub issue_instant: time::OffsetDateTime,
}

fn string_attr(out: &mut String, name: &str, value: &str) {
    let _ = write!(
        out,
        r#"<saml2:Attribute Name="{}"><saml2:AttributeValue xsi:type="xs:string">{}</saml2:AttributeValue></saml2:Attribute>"#,
        esc_attr(name),
        esc(value)
    );
}

fn coded_value(out: &mut String, element: &str, c: &Code, system_name: Option<&str>) {
    let _ = write!(
        out,
        r#"<saml2:AttributeValue><{element} xmlns="urn:hl7-org:v3" code="{}" codeSystem="{}""#,
        esc_attr(&c.code),
        esc_attr(&c.scheme)
    );
    if let Some(n) = system_name {
        let _ = write!(out, r#" codeSystemName="{}""#, esc_attr(n));
    }
    let _ = write!(
        out,
        r#" displayName="{}" xsi:type="CE"/></saml2:AttributeValue>"#,
        esc_attr(&c.display)
    );
}

/// The unsigned direct-mode assertion.
///
/// The professional on the card must be the one the call names: the caller passes the
/// identity read from the certificate the TLS handshake used, and this refuses a mismatch.
pub fn build(input: &VihfInput<'_>) -> Result<String, FieldError> {
    let c = input.context;
    if c.professional_id != input.professional.id {
        return Err(FieldError::new(
            "auth_context.professional_id",
            format!(
                "`{}` is not the professional of the card, whose certificate says `{}`",
                c.professional_id, input.professional.id
            ),
        ));
    }
    let now = xml::date_time(input.issue_instant);
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        r#"<saml2:Assertion xmlns:saml2="{}" xmlns:xsi="{}" xmlns:xs="{}" ID="_{}" IssueInstant="{now}" Version="2.0">"#,
        ns::SAML2,
        ns::XSI,
        ns::XS,
        uuid::Uuid::new_v4()
    );
    let _ = write!(
        out,
        r#"<saml2:Issuer Format="{X509_SUBJECT_NAME}">{}</saml2:Issuer><saml2:Subject><saml2:NameID>{}</saml2:NameID></saml2:Subject>"#,
        esc(&input.professional.subject_dn),
        esc(&input.professional.id)
    );
    let _ = write!(
        out,
        r#"<saml2:AuthnStatement AuthnInstant="{now}"><saml2:AuthnContext><saml2:AuthnContextClassRef>{SMARTCARD_PKI}</saml2:AuthnContextClassRef></saml2:AuthnContext></saml2:AuthnStatement><saml2:AttributeStatement>"#
    );
    string_attr(&mut out, attr::STRUCTURE, &c.structure_id);
    string_attr(&mut out, attr::SECTOR, &c.activity_sector);
    let _ = write!(out, r#"<saml2:Attribute Name="{}">"#, attr::ROLE);
    coded_value(&mut out, "Role", &c.profession, None);
    if let Some(s) = &c.specialty {
        coded_value(&mut out, "Role", s, None);
    }
    out.push_str("</saml2:Attribute>");
    string_attr(&mut out, attr::VERSION, VIHF_VERSION);
    string_attr(&mut out, attr::MODE, "DIRECTE");
    string_attr(&mut out, attr::RESOURCE_ID, &input.patient.to_cx());
    string_attr(&mut out, attr::RESOURCE_URN, "urn:dmp");
    let _ = write!(out, r#"<saml2:Attribute Name="{}">"#, attr::PURPOSE);
    let display = PURPOSES_OF_USE
        .iter()
        .find(|(code, _)| *code == c.purpose_of_use)
        .map_or("Accès régulation", |(_, display)| display);
    let purpose = Code {
        code: c.purpose_of_use.clone(),
        scheme: PURPOSE_SYSTEM.into(),
        display: display.into(),
    };
    coded_value(&mut out, "PurposeOfUse", &purpose, Some("mode acces VIHF 2.0"));
    out.push_str("</saml2:Attribute>");
    string_attr(&mut out, attr::LPS_ID, &input.lps.id);
    string_attr(&mut out, attr::LPS_NAME, &input.lps.name);
    string_attr(&mut out, attr::LPS_VERSION, &input.lps.version);
    string_attr(&mut out, attr::LPS_HOMOLOGATION, &input.lps.homologation_id);
    out.push_str("</saml2:AttributeStatement></saml2:Assertion>");
    Ok(out)
}

/// An assertion as read back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedVihf {
    /// The Issuer (the certificate's subject DN).
    pub issuer: String,
    /// The NameID (the professional id).
    pub name_id: String,
    /// The AuthnContextClassRef.
    pub authn_context: String,
    /// Attribute name → values (text, or the `code` of a coded value).
    pub attributes: BTreeMap<String, Vec<String>>,
}

impl ParsedVihf {
    /// The first value of an attribute.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.attributes
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// Reads a `saml2:Assertion` element.
pub fn parse(a: &Element) -> Result<ParsedVihf, VihfError> {
    if !a.is(ns::SAML2, "Assertion") {
        return Err(VihfError::NotAnAssertion(a.name.clone()));
    }
    if a.attr("Version") != Some("2.0") {
        return Err(VihfError::Version);
    }
    let issuer = a
        .child(ns::SAML2, "Issuer")
        .map(|i| i.text.trim().to_string())
        .unwrap_or_default();
    let name_id = a
        .path(ns::SAML2, &["Subject", "NameID"])
        .map(|n| n.text.trim().to_string())
        .unwrap_or_default();
    let authn_context = a
        .path(
            ns::SAML2,
            &["AuthnStatement", "AuthnContext", "AuthnContextClassRef"],
        )
        .map(|n| n.text.trim().to_string())
        .unwrap_or_default();
    let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for st in a.children_named(ns::SAML2, "AttributeStatement") {
        for at in st.children_named(ns::SAML2, "Attribute") {
            let name = at.attr("Name").unwrap_or_default().to_string();
            let values = attributes.entry(name).or_default();
            for v in at.children_named(ns::SAML2, "AttributeValue") {
                match v.children.first() {
                    Some(coded) => values.push(coded.attr("code").unwrap_or_default().to_string()),
                    None => values.push(v.text.trim().to_string()),
                }
            }
        }
    }
    Ok(ParsedVihf {
        issuer,
        name_id,
        authn_context,
        attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_official_direct_sample() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/dmp-package/examples/Exemples_Jeton_VIHF/VIHF_DIRECTE_non_signe.xml"
        ))
        .expect("sample");
        // The sample has one Latin-1 byte in a display name; the DMP messages themselves are
        // UTF-8, so repair that byte for this test.
        let text = String::from_utf8_lossy(&bytes);
        let el = crate::xml::parse_str(&text).expect("xml");
        let v = parse(&el).expect("vihf");
        assert_eq!(v.name_id, "899900063480");
        assert_eq!(v.authn_context, SMARTCARD_PKI);
        assert_eq!(v.first(attr::MODE), Some("DIRECTE"));
        assert_eq!(v.attributes.get(attr::ROLE).map(Vec::len), Some(2));
        assert_eq!(
            v.first(attr::RESOURCE_ID),
            Some("207058575627097^^^&1.2.250.1.213.1.4.10&ISO^NH")
        );
    }
}

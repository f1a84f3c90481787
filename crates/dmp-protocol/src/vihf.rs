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
    /// The subject DN as an RFC 4514 string ([`crate::dn::rfc4514`]: most specific RDN first,
    /// the multi-valued RDN in card order, SN and GN as `2.5.4.4=#…`), the form of the
    /// official VIHF examples' Issuer, e.g.
    /// `CN=810100000001+2.5.4.4=#0c074d45444543494e+2.5.4.42=#0c044a45414e,2.5.4.12=#…,OU=10,O=…,C=FR`.
    pub subject_dn: String,
    /// The SN (family name).
    pub family: String,
    /// The GN (given name).
    pub given: String,
    /// The profession code (TRE_G15): the IGC-Santé extension `1.2.250.1.71.1.2.7` when the
    /// certificate has it, else the OU.
    pub profession: Option<String>,
    /// The specialty code (TRE_R38) of the IGC-Santé extension `1.2.250.1.71.4.2.5`.
    pub specialty: Option<String>,
    /// The profession's name (`title`, e.g. "Médecin").
    pub profession_title: Option<String>,
    /// Whether the certificate carries the IGC-Santé profession extension: its profession and
    /// specialty are then the only ones a VIHF may state.
    pub roles_from_card: bool,
}

/// The IGC-Santé profession extension (an INTEGER).
const PROFESSION_EXTENSION: &str = "1.2.250.1.71.1.2.7";
/// The IGC-Santé specialty extension (a SEQUENCE of strings).
const SPECIALTY_EXTENSION: &str = "1.2.250.1.71.4.2.5";

/// A small non-negative DER INTEGER as decimal.
fn der_integer(value: &[u8]) -> Option<String> {
    let (&tag, rest) = value.split_first()?;
    let (&len, content) = rest.split_first()?;
    if tag != 0x02 || usize::from(len) != content.len() || content.is_empty() || content.len() > 8 {
        return None;
    }
    if content[0] & 0x80 != 0 {
        return None;
    }
    Some(
        content
            .iter()
            .fold(0u64, |n, b| (n << 8) | u64::from(*b))
            .to_string(),
    )
}

/// The first string of a DER SEQUENCE OF short strings (UTF8String, PrintableString, IA5String).
fn der_first_string(value: &[u8]) -> Option<String> {
    let (&tag, rest) = value.split_first()?;
    let (&len, content) = rest.split_first()?;
    if tag != 0x30 || len >= 0x80 || usize::from(len) != content.len() {
        return None;
    }
    let (&stag, rest) = content.split_first()?;
    let (&slen, rest) = rest.split_first()?;
    if !matches!(stag, 0x0c | 0x13 | 0x16) || slen >= 0x80 {
        return None;
    }
    let text = rest.get(..usize::from(slen))?;
    String::from_utf8(text.to_vec()).ok()
}

impl ProfessionalIdentity {
    /// Reads the identity from a DER certificate. Tolerates the non-DER-sorted multi-valued RDN
    /// of real test cards (RDN values are read in card order).
    pub fn from_certificate(der: &[u8]) -> Result<ProfessionalIdentity, VihfError> {
        use x509_parser::prelude::FromDer;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|e| VihfError::Certificate(e.to_string()))?;
        let first = |oid: &str| {
            cert.subject()
                .iter_attributes()
                .find(|a| a.attr_type().to_id_string() == oid)
                .and_then(|a| a.as_str().ok())
                .map(str::to_owned)
        };
        let id = first("2.5.4.3").ok_or(VihfError::NoProfessionalId)?;
        // A CPS CN may carry the id followed by other text ("810100000001/…"): keep the id.
        let id = id.split(['/', ' ']).next().unwrap_or_default().to_string();
        let extension = |oid: &str| {
            cert.extensions()
                .iter()
                .find(|e| e.oid.to_id_string() == oid)
                .map(|e| e.value)
        };
        let profession_extension = extension(PROFESSION_EXTENSION).and_then(der_integer);
        Ok(ProfessionalIdentity {
            id,
            subject_dn: crate::dn::rfc4514(cert.subject()),
            family: first("2.5.4.4").unwrap_or_default(),
            given: first("2.5.4.42").unwrap_or_default(),
            roles_from_card: profession_extension.is_some(),
            profession: profession_extension.or_else(|| first("2.5.4.11")),
            specialty: extension(SPECIALTY_EXTENSION).and_then(der_first_string),
            profession_title: first("2.5.4.12"),
        })
    }

    /// The VIHF role codes: the card's profession and specialty, which the caller may repeat
    /// but not contradict (`INVALID_ARGUMENT` naming the field); the caller's only where the
    /// certificate carries no IGC-Santé profession extension.
    pub fn roles(&self, asked: &VihfContext) -> Result<(Code, Option<Code>), FieldError> {
        let display = |asked: Option<&Code>, fallback: &str| {
            asked
                .map(|c| c.display.clone())
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| fallback.to_owned())
        };
        let contradicts = |field: &str, asked: &Code, system: &str, card: Option<&str>| {
            FieldError::new(
                field,
                format!(
                    "`{}^{}` contradicts the card, whose certificate says {}",
                    asked.code,
                    asked.scheme,
                    card.map_or("none".to_owned(), |c| format!("`{c}^{system}`"))
                ),
            )
        };
        if !self.roles_from_card {
            let profession = match (&asked.profession, &self.profession) {
                (Some(p), _) => p.clone(),
                (None, Some(card)) => Code {
                    code: card.clone(),
                    scheme: PROFESSION_SYSTEM.into(),
                    display: self.profession_title.clone().unwrap_or_else(|| card.clone()),
                },
                (None, None) => {
                    return Err(FieldError::new(
                        "auth_context.profession",
                        "required: the card's certificate names no profession",
                    ));
                }
            };
            return Ok((profession, asked.specialty.clone()));
        }
        let card_profession = self.profession.clone().unwrap_or_default();
        if let Some(p) = &asked.profession
            && (p.code != card_profession || p.scheme != PROFESSION_SYSTEM)
        {
            return Err(contradicts(
                "auth_context.profession",
                p,
                PROFESSION_SYSTEM,
                Some(&card_profession),
            ));
        }
        if let Some(s) = &asked.specialty
            && (Some(&s.code) != self.specialty.as_ref() || s.scheme != SPECIALTY_SYSTEM)
        {
            return Err(contradicts(
                "auth_context.specialty",
                s,
                SPECIALTY_SYSTEM,
                self.specialty.as_deref(),
            ));
        }
        let profession = Code {
            display: display(
                asked.profession.as_ref(),
                self.profession_title.as_deref().unwrap_or(&card_profession),
            ),
            code: card_profession,
            scheme: PROFESSION_SYSTEM.into(),
        };
        let specialty = self.specialty.as_ref().map(|card| Code {
            code: card.clone(),
            scheme: SPECIALTY_SYSTEM.into(),
            display: display(asked.specialty.as_ref(), card),
        });
        Ok((profession, specialty))
    }
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
    /// The profession (TRE_G15) the caller states, if any: it may not contradict the card's.
    pub profession: Option<Code>,
    /// The specialty (TRE_R38) the caller states, if any: it may not contradict the card's.
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
    let (profession, specialty) = input.professional.roles(c)?;
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
    coded_value(&mut out, "Role", &profession, None);
    if let Some(s) = &specialty {
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

#[cfg(test)]
mod card_tests {
    use super::*;
    use base64::Engine as _;

    /// The signature certificate of the official TD2.1 example (`TD2.1-SignatureXades.xml`):
    /// an IGC-Santé test card of profession 10, specialty SM26.
    fn official_certificate() -> Vec<u8> {
        let xml = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/dmp-package/examples/TD2.1-SignatureXades.xml"
        ))
        .expect("the official example");
        let start = xml.find("<X509Certificate>").expect("certificate") + "<X509Certificate>".len();
        let end = xml[start..].find("</X509Certificate>").expect("end") + start;
        base64::engine::general_purpose::STANDARD
            .decode(xml[start..end].split_whitespace().collect::<String>())
            .expect("base64")
    }

    fn asked(profession: Option<(&str, &str)>, specialty: Option<(&str, &str)>) -> VihfContext {
        let code = |(c, s): (&str, &str)| Code {
            code: c.into(),
            scheme: s.into(),
            display: String::new(),
        };
        VihfContext {
            professional_id: "899900063480".into(),
            structure_id: "10B0152872".into(),
            activity_sector: "SA07^1.2.250.1.71.4.2.4".into(),
            profession: profession.map(code),
            specialty: specialty.map(code),
            purpose_of_use: "normal".into(),
        }
    }

    #[test]
    fn reads_the_profession_of_the_official_example_card() {
        let card = ProfessionalIdentity::from_certificate(&official_certificate()).expect("parses");
        assert_eq!(card.id, "899900063480");
        assert_eq!(card.profession.as_deref(), Some("10"));
        assert_eq!(card.specialty.as_deref(), Some("SM26"));
        assert_eq!(card.profession_title.as_deref(), Some("Médecin"));
        assert!(card.roles_from_card);
        // RFC 4514, last RDN first, the multi-valued RDN in card order (GN, SN, CN here), the
        // attributes without an RFC 4514 short name as the hex of their DER.
        assert_eq!(
            card.subject_dn,
            "2.5.4.42=#0c034d4158+2.5.4.4=#0c054c49425245+CN=899900063480,2.5.4.12=#0c084dc3a9646563696e,C=FR"
        );
    }

    #[test]
    fn the_card_decides_profession_and_specialty() {
        let card = ProfessionalIdentity::from_certificate(&official_certificate()).expect("parses");
        let (p, s) = card.roles(&asked(None, None)).expect("the card's roles");
        assert_eq!(
            (p.code.as_str(), p.scheme.as_str(), p.display.as_str()),
            ("10", PROFESSION_SYSTEM, "Médecin")
        );
        let s = s.expect("specialty");
        assert_eq!((s.code.as_str(), s.scheme.as_str()), ("SM26", SPECIALTY_SYSTEM));
        // Repeating the card is fine.
        card.roles(&asked(
            Some(("10", PROFESSION_SYSTEM)),
            Some(("SM26", SPECIALTY_SYSTEM)),
        ))
        .expect("the same roles");
        // Contradicting it is refused, naming the field.
        let e = card
            .roles(&asked(Some(("60", PROFESSION_SYSTEM)), None))
            .expect_err("another profession");
        assert_eq!(e.field, "auth_context.profession");
        assert!(e.reason.contains("`10^1.2.250.1.71.1.2.7`"), "{}", e.reason);
        let e = card
            .roles(&asked(None, Some(("SM04", SPECIALTY_SYSTEM))))
            .expect_err("another specialty");
        assert_eq!(e.field, "auth_context.specialty");
    }
}

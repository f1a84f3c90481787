//! SOAP 1.2 envelopes with WS-Addressing headers (`MessageID`, `To`, `ReplyTo`, `Action`) and
//! the `wsse:Security` header carrying the VIHF (SPEC.md §2); reading envelopes and faults back.
//!
//! The gateway writes SOAP 1.2 only. The reader also accepts SOAP 1.1-namespaced envelopes,
//! because the official TD2.1 example wraps one in an `application/soap+xml` MTOM part and the
//! DMP is lenient there (the simulator must accept it).

use std::fmt::Write as _;

use crate::xml::{self, Element, XmlError, esc, ns};

/// The WS-Addressing anonymous address: answer on the same connection.
pub const ANONYMOUS: &str = "http://www.w3.org/2005/08/addressing/anonymous";

/// Why bytes are not a SOAP envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoapError {
    /// Not XML.
    #[error("the SOAP envelope is not well-formed XML: {0}")]
    Xml(#[from] XmlError),
    /// XML whose root is not a SOAP 1.1 or 1.2 `Envelope`.
    #[error("the root element <{name}> (namespace `{ns}`) is not a SOAP Envelope")]
    NotAnEnvelope {
        /// The root's local name.
        name: String,
        /// The root's namespace.
        ns: String,
    },
    /// Something else than one `Header` then one `Body`.
    #[error("unexpected <{0}> in the SOAP Envelope")]
    Unexpected(String),
    /// No `Body`.
    #[error("the SOAP Envelope has no Body")]
    NoBody,
}

/// The SOAP version of an envelope read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    /// SOAP 1.1 (`http://schemas.xmlsoap.org/soap/envelope/`).
    V11,
    /// SOAP 1.2 (`http://www.w3.org/2003/05/soap-envelope`).
    V12,
}

impl SoapVersion {
    /// The envelope namespace.
    pub fn namespace(self) -> &'static str {
        match self {
            SoapVersion::V11 => ns::SOAP11,
            SoapVersion::V12 => ns::SOAP12,
        }
    }
}

/// The WS-Addressing headers of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressing {
    /// `urn:uuid:…`, fresh for every message sent.
    pub message_id: String,
    /// The endpoint URL.
    pub to: String,
    /// The transaction's action URI.
    pub action: String,
}

impl Addressing {
    /// Headers with a fresh MessageID.
    pub fn new(to: impl Into<String>, action: impl Into<String>) -> Self {
        Addressing {
            message_id: format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            to: to.into(),
            action: action.into(),
        }
    }
}

/// A SOAP 1.2 request envelope. `security` is the VIHF assertion's XML; `body` the body's
/// content.
pub fn request_envelope(addressing: &Addressing, security: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + security.len() + 1024);
    let _ = write!(
        out,
        r#"<soap:Envelope xmlns:soap="{}" xmlns:wsa="{}"><soap:Header>"#,
        ns::SOAP12,
        ns::WSA
    );
    let _ = write!(
        out,
        r#"<wsa:Action soap:mustUnderstand="true">{}</wsa:Action><wsa:MessageID>{}</wsa:MessageID><wsa:ReplyTo><wsa:Address>{ANONYMOUS}</wsa:Address></wsa:ReplyTo><wsa:To soap:mustUnderstand="true">{}</wsa:To>"#,
        esc(&addressing.action),
        esc(&addressing.message_id),
        esc(&addressing.to)
    );
    let _ = write!(
        out,
        r#"<wsse:Security xmlns:wsse="{}" soap:mustUnderstand="true">"#,
        ns::WSSE
    );
    out.push_str(security);
    out.push_str("</wsse:Security></soap:Header><soap:Body>");
    out.push_str(body);
    out.push_str("</soap:Body></soap:Envelope>");
    out
}

/// A SOAP 1.2 response envelope (the simulator's answers).
pub fn response_envelope(action: &str, relates_to: Option<&str>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 512);
    let _ = write!(
        out,
        r#"<soap:Envelope xmlns:soap="{}" xmlns:wsa="{}"><soap:Header><wsa:Action>{}</wsa:Action><wsa:MessageID>urn:uuid:{}</wsa:MessageID><wsa:To>{ANONYMOUS}</wsa:To>"#,
        ns::SOAP12,
        ns::WSA,
        esc(action),
        uuid::Uuid::new_v4()
    );
    if let Some(r) = relates_to {
        let _ = write!(out, "<wsa:RelatesTo>{}</wsa:RelatesTo>", esc(r));
    }
    out.push_str("</soap:Header><soap:Body>");
    out.push_str(body);
    out.push_str("</soap:Body></soap:Envelope>");
    out
}

/// A SOAP 1.2 fault envelope. `code` is `Sender` or `Receiver`.
pub fn fault_envelope(code: &str, subcode: Option<&str>, reason: &str, relates_to: Option<&str>) -> String {
    let mut body = format!(
        r#"<soap:Fault><soap:Code><soap:Value>soap:{}</soap:Value>"#,
        esc(code)
    );
    if let Some(s) = subcode {
        let _ = write!(
            body,
            "<soap:Subcode><soap:Value>{}</soap:Value></soap:Subcode>",
            esc(s)
        );
    }
    let _ = write!(
        body,
        r#"</soap:Code><soap:Reason><soap:Text xml:lang="fr">{}</soap:Text></soap:Reason></soap:Fault>"#,
        esc(reason)
    );
    response_envelope(
        "http://www.w3.org/2005/08/addressing/soap/fault",
        relates_to,
        &body,
    )
}

/// An envelope as read.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// 1.1 or 1.2, from the namespace.
    pub version: SoapVersion,
    /// The `Header` element, if any.
    pub header: Option<Element>,
    /// The first element inside `Body` (the payload or a `Fault`).
    pub payload: Option<Element>,
}

/// A SOAP fault as read (SOAP 1.1 faults have no subcode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `soap:Sender`, `soap:Receiver` (1.2) or `Client`, `Server` (1.1).
    pub code: String,
    /// The first subcode value, e.g. `DMPAccessDenied`.
    pub subcode: Option<String>,
    /// The reason text.
    pub reason: String,
}

impl Envelope {
    fn wsa(&self, name: &str) -> Option<&Element> {
        self.header.as_ref().and_then(|h| h.child(ns::WSA, name))
    }

    /// `wsa:Action`.
    pub fn action(&self) -> Option<&str> {
        self.wsa("Action").map(Element::text_trimmed)
    }

    /// `wsa:MessageID`.
    pub fn message_id(&self) -> Option<&str> {
        self.wsa("MessageID").map(Element::text_trimmed)
    }

    /// `wsa:RelatesTo`.
    pub fn relates_to(&self) -> Option<&str> {
        self.wsa("RelatesTo").map(Element::text_trimmed)
    }

    /// `wsa:To`.
    pub fn to(&self) -> Option<&str> {
        self.wsa("To").map(Element::text_trimmed)
    }

    /// `wsa:ReplyTo/wsa:Address`.
    pub fn reply_to_address(&self) -> Option<&str> {
        self.wsa("ReplyTo")
            .and_then(|r| r.child(ns::WSA, "Address"))
            .map(Element::text_trimmed)
    }

    /// The `saml2:Assertion` of `wsse:Security`.
    pub fn security_assertion(&self) -> Option<&Element> {
        self.header
            .as_ref()
            .and_then(|h| h.child(ns::WSSE, "Security"))
            .and_then(|s| s.child(ns::SAML2, "Assertion"))
    }

    /// The fault, when the body is one.
    pub fn fault(&self) -> Option<Fault> {
        let f = self.payload.as_ref()?;
        let sns = self.version.namespace();
        if !f.is(sns, "Fault") {
            return None;
        }
        Some(match self.version {
            SoapVersion::V12 => Fault {
                code: f
                    .path(sns, &["Code", "Value"])
                    .map(|v| v.text.trim().to_string())
                    .unwrap_or_default(),
                subcode: f
                    .path(sns, &["Code", "Subcode", "Value"])
                    .map(|v| v.text.trim().to_string()),
                reason: f
                    .path(sns, &["Reason", "Text"])
                    .map(|v| v.text.trim().to_string())
                    .unwrap_or_default(),
            },
            SoapVersion::V11 => Fault {
                code: f
                    .child("", "faultcode")
                    .map(|v| v.text.trim().to_string())
                    .unwrap_or_default(),
                subcode: None,
                reason: f
                    .child("", "faultstring")
                    .map(|v| v.text.trim().to_string())
                    .unwrap_or_default(),
            },
        })
    }
}

/// Reads an envelope (SOAP 1.2 or 1.1).
pub fn parse_envelope(bytes: &[u8]) -> Result<Envelope, SoapError> {
    let root = xml::parse(bytes)?;
    let version = if root.is(ns::SOAP12, "Envelope") {
        SoapVersion::V12
    } else if root.is(ns::SOAP11, "Envelope") {
        SoapVersion::V11
    } else {
        return Err(SoapError::NotAnEnvelope {
            name: root.name,
            ns: root.ns,
        });
    };
    let sns = version.namespace();
    let mut header = None;
    let mut body = None;
    for c in root.children {
        if c.is(sns, "Header") && header.is_none() && body.is_none() {
            header = Some(c);
        } else if c.is(sns, "Body") && body.is_none() {
            body = Some(c);
        } else {
            return Err(SoapError::Unexpected(c.name));
        }
    }
    let body = body.ok_or(SoapError::NoBody)?;
    Ok(Envelope {
        version,
        header,
        payload: body.children.into_iter().next(),
    })
}

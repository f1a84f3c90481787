//! A small namespace-aware XML tree on top of quick-xml, and the escaping used by every
//! writer of the crate (SOAP envelopes, ebRIM metadata, VIHF, HL7v3, XAdES).
//!
//! **Decision** — the messages the DMP exchanges are small (metadata, not documents: documents
//! travel as MTOM parts), so reading them into a tree is simpler and safer than streaming
//! parsers per message. The tree refuses what a hostile peer could abuse: DTDs and entities
//! other than the five predefined ones, nesting deeper than [`MAX_DEPTH`], non-UTF-8 input.

use std::borrow::Cow;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// Namespaces of the DMP messages.
pub mod ns {
    /// SOAP 1.2 envelope.
    pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
    /// SOAP 1.1 envelope (read only: the official TD2.1 example uses it).
    pub const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
    /// WS-Addressing 1.0.
    pub const WSA: &str = "http://www.w3.org/2005/08/addressing";
    /// WS-Security 1.0 (`wsse:Security`).
    pub const WSSE: &str =
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
    /// SAML 2.0 assertions (the VIHF).
    pub const SAML2: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
    /// XML Schema instance (`xsi:type`).
    pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
    /// XML Schema datatypes (`xs:string`).
    pub const XS: &str = "http://www.w3.org/2001/XMLSchema";
    /// ebXML Registry Information Model 3.0.
    pub const RIM: &str = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0";
    /// ebXML Registry Services 3.0 (`RegistryResponse`).
    pub const RS: &str = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0";
    /// ebXML life-cycle management (`SubmitObjectsRequest`).
    pub const LCM: &str = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0";
    /// ebXML query protocol (`AdhocQueryRequest`).
    pub const QUERY: &str = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0";
    /// IHE XDS.b repository messages (ITI-41, ITI-43).
    pub const XDSB: &str = "urn:ihe:iti:xds-b:2007";
    /// XOP `Include`.
    pub const XOP: &str = "http://www.w3.org/2004/08/xop/include";
    /// HL7 version 3 (CDA, TD0.2 messages).
    pub const HL7: &str = "urn:hl7-org:v3";
    /// The `xml:` prefix.
    pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
    /// XML digital signature.
    pub const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
    /// XAdES 1.3.2.
    pub const XADES: &str = "http://uri.etsi.org/01903/v1.3.2#";
}

/// Deepest nesting accepted (the deepest official example nests 14 levels).
pub const MAX_DEPTH: usize = 64;

/// Why a document was refused. Positions are byte offsets in the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The bytes are not UTF-8.
    #[error("not UTF-8 at byte {at} (the DMP messages are UTF-8)")]
    NotUtf8 {
        /// First invalid byte.
        at: usize,
    },
    /// quick-xml could not read the document.
    #[error("malformed XML at byte {at}: {reason}")]
    Malformed {
        /// Where reading stopped.
        at: u64,
        /// quick-xml's explanation.
        reason: String,
    },
    /// An element uses a prefix no `xmlns:` declares.
    #[error("undeclared namespace prefix `{prefix}` at byte {at}")]
    UndeclaredPrefix {
        /// The prefix.
        prefix: String,
        /// Where the element starts.
        at: u64,
    },
    /// A document type declaration (the door to entity expansion attacks).
    #[error("DTDs are not accepted (at byte {at})")]
    Dtd {
        /// Where reading stopped.
        at: u64,
    },
    /// A reference to an entity other than the five predefined ones.
    #[error("entity `&{name};` is not allowed (only the predefined XML entities) (at byte {at})")]
    Entity {
        /// The entity's name.
        name: String,
        /// Where reading stopped.
        at: u64,
    },
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("XML nested deeper than {MAX_DEPTH} levels (at byte {at})")]
    TooDeep {
        /// Where reading stopped.
        at: u64,
    },
    /// An attribute, an end tag or a character reference that cannot be read.
    #[error("{what} (at byte {at})")]
    Invalid {
        /// What is wrong.
        what: String,
        /// Where reading stopped.
        at: u64,
    },
    /// Text, CDATA or a reference before or after the root element.
    #[error("{what} outside the root element (at byte {at})")]
    OutsideRoot {
        /// `text`, `CDATA` or `reference`.
        what: &'static str,
        /// Where reading stopped.
        at: u64,
    },
    /// A second root element.
    #[error("content after the root element at byte {at}")]
    AfterRoot {
        /// Where the element starts.
        at: u64,
    },
    /// The document ends with `element` open.
    #[error("unexpected end of document: <{element}> is not closed")]
    Unclosed {
        /// The innermost open element.
        element: String,
    },
    /// The document ends inside a skipped subtree.
    #[error("unexpected end of document inside an element")]
    Truncated,
    /// No root element at all.
    #[error("empty document: no root element")]
    Empty,
}

/// An attribute with its resolved namespace ("" when unqualified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Namespace ("" when unqualified).
    pub ns: String,
    /// Local name.
    pub name: String,
    /// Normalized value, references resolved.
    pub value: String,
}

/// An element: resolved namespace, local name, attributes, children and its direct text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Namespace ("" when unqualified).
    pub ns: String,
    /// Local name.
    pub name: String,
    /// Attributes, namespace declarations excluded.
    pub attrs: Vec<Attr>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Concatenated text and CDATA directly inside this element (not of its children).
    pub text: String,
    /// Byte offset of the start tag in the source, for error messages.
    pub offset: u64,
}

impl Element {
    /// Whether this is the element `name` of namespace `ns`.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// An unqualified attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.is_empty() && a.name == name)
            .map(|a| a.value.as_str())
    }

    /// A namespaced attribute.
    pub fn attr_ns(&self, ns: &str, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns == ns && a.name == name)
            .map(|a| a.value.as_str())
    }

    /// The first child element named `name` in `ns`.
    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }

    /// Every child element named `name` in `ns`.
    pub fn children_named<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.is(ns, name))
    }

    /// Follows a path of children in one namespace.
    pub fn path(&self, ns: &str, names: &[&str]) -> Option<&Element> {
        let mut e = self;
        for n in names {
            e = e.child(ns, n)?;
        }
        Some(e)
    }

    /// The element's text, trimmed.
    pub fn text_trimmed(&self) -> &str {
        self.text.trim()
    }
}

fn predefined_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

/// Parses a document into its root element.
pub fn parse(bytes: &[u8]) -> Result<Element, XmlError> {
    let text = std::str::from_utf8(bytes).map_err(|e| XmlError::NotUtf8 { at: e.valid_up_to() })?;
    parse_str(text)
}

/// Parses a document already known to be text.
pub fn parse_str(text: &str) -> Result<Element, XmlError> {
    parse_inner(text, &|_, _, _| false)
}

/// Like [`parse`], but the subtrees for which `skip(depth, namespace, local name)` is true are
/// only checked for well-formedness, not kept (the CDA body when only the header matters).
pub fn parse_skipping(bytes: &[u8], skip: &dyn Fn(usize, &str, &str) -> bool) -> Result<Element, XmlError> {
    let text = std::str::from_utf8(bytes).map_err(|e| XmlError::NotUtf8 { at: e.valid_up_to() })?;
    parse_inner(text, skip)
}

fn parse_inner(text: &str, skip: &dyn Fn(usize, &str, &str) -> bool) -> Result<Element, XmlError> {
    // A BOM is legal before the declaration.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    // Depth inside a skipped subtree (0: not skipping).
    let mut skipping = 0usize;
    let invalid = |reader: &NsReader<&[u8]>, what: String| XmlError::Invalid {
        what,
        at: reader.buffer_position(),
    };
    loop {
        let pos = reader.buffer_position();
        let (element_ns, event) = match reader.read_resolved_event() {
            Ok((resolved, event)) => {
                let element_ns = match resolved {
                    ResolveResult::Bound(n) => Some(n.0.to_string()),
                    ResolveResult::Unbound => Some(String::new()),
                    ResolveResult::Unknown(p) => {
                        return Err(XmlError::UndeclaredPrefix {
                            prefix: p.to_string(),
                            at: pos,
                        });
                    }
                };
                (element_ns, event)
            }
            Err(e) => {
                return Err(XmlError::Malformed {
                    at: reader.error_position(),
                    reason: e.to_string(),
                });
            }
        };
        if skipping > 0 {
            match &event {
                Event::Start(_) => {
                    skipping += 1;
                    if stack.len() + skipping > MAX_DEPTH {
                        return Err(XmlError::TooDeep {
                            at: reader.buffer_position(),
                        });
                    }
                }
                Event::End(_) => skipping -= 1,
                Event::GeneralRef(r) => {
                    let known = if r.is_char_ref() {
                        matches!(r.resolve_char_ref(), Ok(Some(_)))
                    } else {
                        predefined_entity(&r.xml10_content()).is_some()
                    };
                    if !known {
                        return Err(XmlError::Entity {
                            name: r.xml10_content().into_owned(),
                            at: reader.buffer_position(),
                        });
                    }
                }
                Event::DocType(_) => {
                    return Err(XmlError::Dtd {
                        at: reader.buffer_position(),
                    });
                }
                Event::Eof => return Err(XmlError::Truncated),
                _ => {}
            }
            continue;
        }
        if let Event::Start(start) | Event::Empty(start) = &event
            && root.is_none()
            && !stack.is_empty()
            && skip(
                stack.len(),
                element_ns.as_deref().unwrap_or_default(),
                start.local_name().as_ref(),
            )
        {
            if matches!(event, Event::Start(_)) {
                skipping = 1;
            }
            continue;
        }
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(XmlError::AfterRoot { at: pos });
            }
            Event::Start(ref start) | Event::Empty(ref start) => {
                let is_empty = matches!(event, Event::Empty(_));
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep {
                        at: reader.buffer_position(),
                    });
                }
                let mut attrs = Vec::new();
                for a in start.attributes() {
                    let a = a.map_err(|e| invalid(&reader, format!("bad attribute: {e}")))?;
                    let key = a.key;
                    if key.as_namespace_binding().is_some() {
                        continue;
                    }
                    let (res, local) = reader.resolver().resolve_attribute(key);
                    let ans = match res {
                        ResolveResult::Bound(n) => n.0.to_string(),
                        ResolveResult::Unbound => String::new(),
                        ResolveResult::Unknown(p) => {
                            return Err(invalid(&reader, format!("undeclared attribute prefix `{p}`")));
                        }
                    };
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| invalid(&reader, format!("bad attribute value: {e}")))?;
                    attrs.push(Attr {
                        ns: ans,
                        name: local.as_ref().to_string(),
                        value: value.into_owned(),
                    });
                }
                let el = Element {
                    ns: element_ns.unwrap_or_default(),
                    name: start.local_name().as_ref().to_string(),
                    attrs,
                    children: Vec::new(),
                    text: String::new(),
                    offset: pos,
                };
                if is_empty {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let Some(el) = stack.pop() else {
                    return Err(invalid(&reader, "unexpected end tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let content: Cow<str> = t.xml10_content();
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => {
                        return Err(XmlError::OutsideRoot {
                            what: "text",
                            at: reader.buffer_position(),
                        });
                    }
                }
            }
            Event::CData(t) => match stack.last_mut() {
                Some(el) => el.text.push_str(&t.xml10_content()),
                None => {
                    return Err(XmlError::OutsideRoot {
                        what: "CDATA",
                        at: reader.buffer_position(),
                    });
                }
            },
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| invalid(&reader, format!("bad character reference: {e}")))?
                } else {
                    predefined_entity(&r.xml10_content())
                };
                let Some(c) = c else {
                    return Err(XmlError::Entity {
                        name: r.xml10_content().into_owned(),
                        at: reader.buffer_position(),
                    });
                };
                match stack.last_mut() {
                    Some(el) => el.text.push(c),
                    None => {
                        return Err(XmlError::OutsideRoot {
                            what: "reference",
                            at: reader.buffer_position(),
                        });
                    }
                }
            }
            Event::DocType(_) => {
                return Err(XmlError::Dtd {
                    at: reader.buffer_position(),
                });
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(XmlError::Unclosed {
            element: open.name.clone(),
        });
    }
    root.ok_or(XmlError::Empty)
}

/// An `xs:dateTime` in UTC to the millisecond (`2024-01-15T09:30:00.000Z`), as SAML and XAdES
/// write instants.
pub fn date_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Escapes text content.
pub fn esc(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>', '\r']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Escapes an attribute value (double-quoted). The escapes are those of Canonical XML, so the
/// XAdES signature can reuse them.
pub fn esc_attr(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '"', '\t', '\n', '\r']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_namespaces_and_entities() {
        let root = parse(
            br#"<?xml version="1.0"?><a:r xmlns:a="urn:a" xmlns="urn:d"><b x="1&amp;2">t&lt;&#65;</b><c a:y="z"/></a:r>"#,
        )
        .expect("parse");
        assert!(root.is("urn:a", "r"));
        let b = root.child("urn:d", "b").expect("b");
        assert_eq!(b.attr("x"), Some("1&2"));
        assert_eq!(b.text, "t<A");
        assert_eq!(
            root.child("urn:d", "c").and_then(|c| c.attr_ns("urn:a", "y")),
            Some("z")
        );
    }

    #[test]
    fn skipped_subtrees_are_checked_but_not_kept() {
        let skip = |d: usize, _: &str, n: &str| d == 1 && n == "body";
        let root = parse_skipping(b"<r><h>x</h><body><p>big</p><q/></body><t/></r>", &skip).expect("parse");
        assert_eq!(
            root.children.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["h", "t"]
        );
        for bad in [
            &b"<r><body><p></body></r>"[..],
            b"<r><body>&x;</body></r>",
            b"<r><body><p>",
        ] {
            assert!(parse_skipping(bad, &skip).is_err());
        }
    }

    #[test]
    fn refuses_hostile_input() {
        for (doc, want) in [
            (&b"<!DOCTYPE r [<!ENTITY x \"y\">]><r>&x;</r>"[..], "DTD"),
            (b"<r>&x;</r>", "not allowed"),
            (b"<r><a></r>", "malformed"),
            (b"<r>", "not closed"),
            (b"", "empty document"),
            (b"<r/><s/>", "after the root"),
            (b"<p:r/>", "undeclared"),
            (b"<r>\xff</r>", "not UTF-8"),
        ] {
            let e = parse(doc).expect_err("must fail");
            assert!(e.to_string().contains(want), "{e} should mention {want}");
        }
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        assert!(
            parse(deep.as_bytes())
                .expect_err("deep")
                .to_string()
                .contains("deeper")
        );
    }
}

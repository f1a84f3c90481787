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
    pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
    pub const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
    pub const WSA: &str = "http://www.w3.org/2005/08/addressing";
    pub const WSSE: &str =
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
    pub const SAML2: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
    pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
    pub const XS: &str = "http://www.w3.org/2001/XMLSchema";
    pub const RIM: &str = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0";
    pub const RS: &str = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0";
    pub const LCM: &str = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0";
    pub const QUERY: &str = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0";
    pub const XDSB: &str = "urn:ihe:iti:xds-b:2007";
    pub const XOP: &str = "http://www.w3.org/2004/08/xop/include";
    pub const HL7: &str = "urn:hl7-org:v3";
    pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
    pub const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
    pub const XADES: &str = "http://uri.etsi.org/01903/v1.3.2#";
}

/// Deepest nesting accepted (the deepest official example nests 14 levels).
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct XmlError(pub String);

/// An attribute with its resolved namespace ("" when unqualified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ns: String,
    pub name: String,
    pub value: String,
}

/// An element: resolved namespace, local name, attributes, children and its direct text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub ns: String,
    pub name: String,
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
    /// Concatenated text and CDATA directly inside this element (not of its children).
    pub text: String,
    /// Byte offset of the start tag in the source, for error messages.
    pub offset: u64,
}

impl Element {
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

    pub fn attr_ns(&self, ns: &str, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns == ns && a.name == name)
            .map(|a| a.value.as_str())
    }

    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }

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

    /// Every descendant (depth first, self excluded) matching the name.
    pub fn descendants<'a>(&'a self, ns: &'a str, name: &'a str) -> Vec<&'a Element> {
        let mut out = Vec::new();
        fn walk<'a>(e: &'a Element, ns: &str, name: &str, out: &mut Vec<&'a Element>) {
            for c in &e.children {
                if c.is(ns, name) {
                    out.push(c);
                }
                walk(c, ns, name, out);
            }
        }
        walk(self, ns, name, &mut out);
        out
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
    let text = std::str::from_utf8(bytes).map_err(|e| {
        XmlError(format!(
            "not UTF-8 at byte {} (the DMP messages are UTF-8)",
            e.valid_up_to()
        ))
    })?;
    parse_str(text)
}

pub fn parse_str(text: &str) -> Result<Element, XmlError> {
    parse_inner(text, &|_, _, _| false)
}

/// Like [`parse`], but the subtrees for which `skip(depth, namespace, local name)` is true are
/// only checked for well-formedness, not kept (the CDA body when only the header matters).
pub fn parse_skipping(bytes: &[u8], skip: &dyn Fn(usize, &str, &str) -> bool) -> Result<Element, XmlError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        XmlError(format!(
            "not UTF-8 at byte {} (the DMP messages are UTF-8)",
            e.valid_up_to()
        ))
    })?;
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
    let err = |reader: &NsReader<&[u8]>, what: String| {
        XmlError(format!("{what} (at byte {})", reader.buffer_position()))
    };
    loop {
        let pos = reader.buffer_position();
        let (element_ns, event) = match reader.read_resolved_event() {
            Ok((resolved, event)) => {
                let element_ns = match resolved {
                    ResolveResult::Bound(n) => Some(n.0.to_string()),
                    ResolveResult::Unbound => Some(String::new()),
                    ResolveResult::Unknown(p) => {
                        return Err(XmlError(format!(
                            "undeclared namespace prefix `{p}` at byte {pos}"
                        )));
                    }
                };
                (element_ns, event)
            }
            Err(e) => {
                return Err(XmlError(format!(
                    "malformed XML at byte {}: {e}",
                    reader.error_position()
                )));
            }
        };
        if skipping > 0 {
            match &event {
                Event::Start(_) => {
                    skipping += 1;
                    if stack.len() + skipping > MAX_DEPTH {
                        return Err(err(&reader, format!("XML nested deeper than {MAX_DEPTH} levels")));
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
                        return Err(err(
                            &reader,
                            format!(
                                "entity `&{};` is not allowed (only the predefined XML entities)",
                                r.xml10_content()
                            ),
                        ));
                    }
                }
                Event::DocType(_) => return Err(err(&reader, "DTDs are not accepted".into())),
                Event::Eof => {
                    return Err(XmlError("unexpected end of document inside an element".into()));
                }
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
            Event::Start(start) | Event::Empty(start) if root.is_some() => {
                let _ = start;
                return Err(XmlError(format!("content after the root element at byte {pos}")));
            }
            Event::Start(ref start) | Event::Empty(ref start) => {
                let is_empty = matches!(event, Event::Empty(_));
                if stack.len() >= MAX_DEPTH {
                    return Err(err(&reader, format!("XML nested deeper than {MAX_DEPTH} levels")));
                }
                let mut attrs = Vec::new();
                for a in start.attributes() {
                    let a = a.map_err(|e| err(&reader, format!("bad attribute: {e}")))?;
                    let key = a.key;
                    if key.as_namespace_binding().is_some() {
                        continue;
                    }
                    let (res, local) = reader.resolver().resolve_attribute(key);
                    let ans = match res {
                        ResolveResult::Bound(n) => n.0.to_string(),
                        ResolveResult::Unbound => String::new(),
                        ResolveResult::Unknown(p) => {
                            return Err(err(&reader, format!("undeclared attribute prefix `{p}`")));
                        }
                    };
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| err(&reader, format!("bad attribute value: {e}")))?;
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
                    return Err(err(&reader, "unexpected end tag".into()));
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
                    None => return Err(err(&reader, "text outside the root element".into())),
                }
            }
            Event::CData(t) => match stack.last_mut() {
                Some(el) => el.text.push_str(&t.xml10_content()),
                None => return Err(err(&reader, "CDATA outside the root element".into())),
            },
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| err(&reader, format!("bad character reference: {e}")))?
                } else {
                    predefined_entity(&r.xml10_content())
                };
                let Some(c) = c else {
                    return Err(err(
                        &reader,
                        format!(
                            "entity `&{};` is not allowed (only the predefined XML entities)",
                            r.xml10_content()
                        ),
                    ));
                };
                match stack.last_mut() {
                    Some(el) => el.text.push(c),
                    None => return Err(err(&reader, "reference outside the root element".into())),
                }
            }
            Event::DocType(_) => {
                return Err(err(&reader, "DTDs are not accepted".into()));
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(XmlError(format!(
            "unexpected end of document: <{}> is not closed",
            open.name
        )));
    }
    root.ok_or_else(|| XmlError("empty document: no root element".into()))
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
            assert!(e.0.contains(want), "{e} should mention {want}");
        }
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).expect_err("deep").0.contains("deeper"));
    }
}

//! MTOM/XOP (`multipart/related; type="application/xop+xml"`) as ITI-41 and ITI-43 use it
//! (SPEC.md §2): a writer that sends documents as binary parts without copying them (the
//! message is a list of `Bytes` chunks, the documents' own buffers among them), and a parser
//! that returns parts as zero-copy slices of the received body.
//!
//! The parser accepts CRLF and bare-LF line ends (the official TD2.1 example uses LF).
//! [`xop_content`] reads an element whose content is either an `xop:Include` or inline base64
//! (the `Document` of ITI-41 and ITI-43).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::{Bytes, BytesMut};

use crate::xml::{Element, ns};

/// Why a multipart body, or the content an `xop:Include` points to, cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MtomError {
    /// The Content-Type is another media type.
    #[error("Content-Type `{0}` is not multipart/related")]
    NotMultipart(String),
    /// The Content-Type has no usable `boundary` parameter.
    #[error("the multipart Content-Type has no boundary")]
    NoBoundary,
    /// The body never starts a part.
    #[error("the multipart body has no boundary line")]
    NoBoundaryLine,
    /// The body ends early; the text says where.
    #[error("truncated multipart {0}")]
    Truncated(&'static str),
    /// A part header line is not UTF-8.
    #[error("a part header is not UTF-8")]
    HeaderNotUtf8,
    /// More than 32 headers in a part.
    #[error("too many part headers")]
    TooManyHeaders,
    /// More than 1,000 parts.
    #[error("too many parts")]
    TooManyParts,
    /// Only the closing delimiter.
    #[error("the multipart body has no part")]
    NoPart,
    /// The `start` parameter names no part.
    #[error("no part has the start Content-ID <{0}>")]
    NoStartPart(String),
    /// A part in base64 or quoted-printable: MTOM parts are binary.
    #[error("Content-Transfer-Encoding `{0}` is not supported (binary expected)")]
    TransferEncoding(String),
    /// An `xop:Include` without `href`.
    #[error("xop:Include has no href")]
    IncludeWithoutHref,
    /// An `xop:Include` in a plain SOAP message.
    #[error("xop:Include {0} in a message that is not MTOM")]
    IncludeOutsideMtom(String),
    /// An `xop:Include` whose `cid:` names no part.
    #[error("xop:Include {0}: no such MIME part")]
    NoSuchPart(String),
    /// Inline content that is not base64.
    #[error("the inline document is not base64: {0}")]
    NotBase64(String),
}

/// Part headers and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Without angle brackets.
    pub content_id: Option<String>,
    /// The part's Content-Type header.
    pub content_type: Option<String>,
    /// The part's Content-Transfer-Encoding header.
    pub transfer_encoding: Option<String>,
    /// The content: a zero-copy slice of the received body.
    pub body: Bytes,
}

/// A document sent as an attachment.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// Without angle brackets; referenced as `cid:<content_id>` from the XML.
    pub content_id: String,
    /// The part's Content-Type.
    pub content_type: String,
    /// The content, sent without copying.
    pub data: Bytes,
}

/// An HTTP request or response body and its `Content-Type`.
#[derive(Debug, Clone)]
pub struct HttpBody {
    /// The HTTP `Content-Type`.
    pub content_type: String,
    /// The body in order; concatenated, they are the HTTP body.
    pub chunks: Vec<Bytes>,
}

impl HttpBody {
    /// A plain SOAP 1.2 message.
    pub fn soap(xml: String, action: &str) -> HttpBody {
        HttpBody {
            content_type: format!(r#"application/soap+xml; charset=UTF-8; action="{action}""#),
            chunks: vec![Bytes::from(xml)],
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// Whether the body has no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One contiguous copy (tests, small messages).
    pub fn to_bytes(&self) -> Bytes {
        if self.chunks.len() == 1 {
            return self.chunks[0].clone();
        }
        let mut b = BytesMut::with_capacity(self.len());
        for c in &self.chunks {
            b.extend_from_slice(c);
        }
        b.freeze()
    }
}

const ROOT_CID: &str = "root.message@dmp-gateway";

/// Writes an MTOM message: the SOAP 1.2 envelope as the root part, then each attachment as a
/// binary part. The boundary is random and checked against every attachment.
pub fn write(root_xml: String, action: &str, attachments: Vec<Attachment>) -> HttpBody {
    let boundary = loop {
        let b = format!("MIMEBoundary_{}", uuid::Uuid::new_v4().simple());
        let clash = attachments
            .iter()
            .any(|a| memchr::memmem::find(&a.data, b.as_bytes()).is_some());
        if !clash {
            break b;
        }
    };
    let content_type = format!(
        r#"multipart/related; boundary="{boundary}"; type="application/xop+xml"; start="<{ROOT_CID}>"; start-info="application/soap+xml"; action="{action}""#
    );
    let mut chunks = Vec::with_capacity(2 + 2 * attachments.len());
    chunks.push(Bytes::from(format!(
        "--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"; action=\"{action}\"\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{ROOT_CID}>\r\n\r\n"
    )));
    chunks.push(Bytes::from(root_xml));
    for a in attachments {
        chunks.push(Bytes::from(format!(
            "\r\n--{boundary}\r\nContent-Type: {}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{}>\r\n\r\n",
            a.content_type, a.content_id
        )));
        chunks.push(a.data);
    }
    chunks.push(Bytes::from(format!("\r\n--{boundary}--\r\n")));
    HttpBody { content_type, chunks }
}

/// `type/subtype` and parameters of a Content-Type value (quoted values unquoted).
pub fn parse_content_type(value: &str) -> (String, HashMap<String, String>) {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    let mut it = parts.into_iter();
    let mime = it.next().unwrap_or_default().trim().to_ascii_lowercase();
    let params = it
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            Some((k.trim().to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    (mime, params)
}

/// A parsed multipart/related message.
#[derive(Debug, Clone)]
pub struct Multipart {
    /// The root part (the SOAP envelope).
    pub root: Part,
    /// The other parts, in order.
    pub parts: Vec<Part>,
}

impl Multipart {
    /// The part an `xop:Include` `href` points to (`cid:` URL, percent-decoded).
    pub fn resolve(&self, href: &str) -> Option<&Part> {
        let cid = href.strip_prefix("cid:")?;
        let decoded = percent_encoding::percent_decode_str(cid).decode_utf8().ok()?;
        self.parts
            .iter()
            .find(|p| p.content_id.as_deref() == Some(&*decoded) || p.content_id.as_deref() == Some(cid))
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(hay.get(from..)?, needle).map(|i| i + from)
}

/// Parses a multipart/related body. `content_type` is the HTTP header's value.
pub fn parse(content_type: &str, body: &Bytes) -> Result<Multipart, MtomError> {
    let (mime, params) = parse_content_type(content_type);
    if mime != "multipart/related" {
        return Err(MtomError::NotMultipart(mime));
    }
    let boundary = params
        .get("boundary")
        .filter(|b| !b.is_empty() && b.len() <= 200)
        .ok_or(MtomError::NoBoundary)?;
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    // The first delimiter starts the body or a line.
    let mut pos = if body.starts_with(delim) {
        0
    } else {
        let nl = format!("\n--{boundary}");
        find(body, nl.as_bytes(), 0).ok_or(MtomError::NoBoundaryLine)? + 1
    };
    let mut parts = Vec::new();
    loop {
        pos += delim.len();
        if body.get(pos..pos + 2) == Some(b"--") {
            break;
        }
        // Rest of the delimiter line.
        let eol = find(body, b"\n", pos).ok_or(MtomError::Truncated("body (after a boundary)"))?;
        pos = eol + 1;
        // Headers.
        let mut headers: Vec<(String, String)> = Vec::new();
        loop {
            let eol = find(body, b"\n", pos).ok_or(MtomError::Truncated("part headers"))?;
            let line = &body[pos..eol];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            pos = eol + 1;
            if line.is_empty() {
                break;
            }
            let line = std::str::from_utf8(line).map_err(|_| MtomError::HeaderNotUtf8)?;
            if headers.len() > 32 {
                return Err(MtomError::TooManyHeaders);
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let nl = format!("\n--{boundary}");
        let end = find(body, nl.as_bytes(), pos).ok_or(MtomError::Truncated("body (no closing boundary)"))?;
        let mut content_end = end;
        if content_end > pos && body[content_end - 1] == b'\r' {
            content_end -= 1;
        }
        let get = |k: &str| headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone());
        parts.push(Part {
            content_id: get("content-id")
                .map(|v| v.trim_start_matches('<').trim_end_matches('>').to_string()),
            content_type: get("content-type"),
            transfer_encoding: get("content-transfer-encoding"),
            body: body.slice(pos..content_end),
        });
        pos = end + 1;
        if parts.len() > 1000 {
            return Err(MtomError::TooManyParts);
        }
    }
    if parts.is_empty() {
        return Err(MtomError::NoPart);
    }
    let root_index = match params.get("start") {
        Some(start) => {
            let start = start.trim_start_matches('<').trim_end_matches('>');
            parts
                .iter()
                .position(|p| p.content_id.as_deref() == Some(start))
                .ok_or_else(|| MtomError::NoStartPart(start.to_string()))?
        }
        None => 0,
    };
    for p in &parts {
        if let Some(te) = &p.transfer_encoding
            && !matches!(te.to_ascii_lowercase().as_str(), "binary" | "8bit" | "7bit")
        {
            return Err(MtomError::TransferEncoding(te.clone()));
        }
    }
    let root = parts.remove(root_index);
    Ok(Multipart { root, parts })
}

/// The content of an element that carries a document: an `xop:Include` resolved in the
/// multipart message (zero-copy), or inline base64.
pub fn xop_content(element: &Element, multipart: Option<&Multipart>) -> Result<Bytes, MtomError> {
    if let Some(inc) = element.child(ns::XOP, "Include") {
        let href = inc.attr("href").ok_or(MtomError::IncludeWithoutHref)?;
        let mp = multipart.ok_or_else(|| MtomError::IncludeOutsideMtom(href.to_string()))?;
        return mp
            .resolve(href)
            .map(|p| p.body.clone())
            .ok_or_else(|| MtomError::NoSuchPart(href.to_string()));
    }
    let text: String = element
        .text
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    B64.decode(text.as_bytes())
        .map(Bytes::from)
        .map_err(|e| MtomError::NotBase64(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_without_copying_documents() {
        let doc = Bytes::from(vec![0u8, 13, 10, 45, 45, 255, 1, 2, 3]);
        let body = write(
            "<Envelope/>".into(),
            "urn:a",
            vec![Attachment {
                content_id: "doc1@x".into(),
                content_type: "text/xml".into(),
                data: doc.clone(),
            }],
        );
        assert!(
            body.chunks.iter().any(|c| c.as_ptr() == doc.as_ptr()),
            "the document buffer is sent as is"
        );
        let bytes = body.to_bytes();
        let mp = parse(&body.content_type, &bytes).expect("parse");
        assert_eq!(&mp.root.body[..], b"<Envelope/>");
        assert_eq!(mp.resolve("cid:doc1%40x").map(|p| p.body.clone()), Some(doc));
    }

    #[test]
    fn refuses_broken_multipart() {
        let ct = r#"multipart/related; boundary="b"; type="application/xop+xml""#;
        for (body, want) in [
            (&b"nothing"[..], "no boundary line"),
            (b"--b\r\nContent-ID: <a>\r\n\r\nxx", "no closing boundary"),
            (b"--b--", "no part"),
        ] {
            let e = parse(ct, &Bytes::from_static(body)).expect_err("must fail");
            assert!(e.to_string().contains(want), "{e}");
        }
        assert!(parse("text/xml", &Bytes::new()).is_err());
    }
}

//! The bodies of the fuzz targets (`fuzz/`, issue 19): one function per parser that reads a
//! peer's bytes. The libFuzzer targets and the stable regression test
//! (`tests/fuzz_corpus.rs`, which replays the committed corpus and every crash found) call the
//! same functions, so a crash reproduces in the normal test run.
//!
//! Each function panics only when the parser breaks one of its own promises (never on refused
//! input): that is what the fuzzer reports.

use bytes::Bytes;

use crate::ebrim::{self, ObjectList};
use crate::xds::RegistryEntry;
use crate::xml::{self, Element, MAX_DEPTH, ns};
use crate::{cda, hl7v3, mtom, soap, vihf};

/// The XML tree: the depth bound holds, and parsing with a skip filter that skips nothing
/// gives the same tree.
pub fn xml(data: &[u8]) {
    let plain = xml::parse(data);
    if let Ok(root) = &plain {
        assert!(
            depth(root) <= MAX_DEPTH,
            "a tree deeper than MAX_DEPTH was accepted"
        );
    }
    let skipping = xml::parse_skipping(data, &|_, _, _| false);
    assert_eq!(plain, skipping, "parse_skipping without skips differs from parse");
}

fn depth(e: &Element) -> usize {
    // Iterative: a recursive walk of a hostile tree is what the bound protects against.
    let mut deepest = 0;
    let mut stack = vec![(e, 1usize)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        stack.extend(e.children.iter().map(|c| (c, d + 1)));
    }
    deepest
}

/// A SOAP envelope and everything the gateway and the simulator read off it.
pub fn soap(data: &[u8]) {
    let Ok(env) = soap::parse_envelope(data) else {
        return;
    };
    let _ = (env.action(), env.message_id(), env.relates_to(), env.to());
    let _ = env.reply_to_address();
    let _ = env.security_assertion();
    let _ = env.fault();
}

/// An MTOM (multipart/related) body: the first line of `data` is the HTTP `Content-Type`, the
/// rest the body. What parses is written again by [`mtom::write`] and must read back with the
/// same root and parts; every `xop:Include` of the root is resolved.
pub fn mtom(data: &[u8]) {
    let split = memchr::memchr(b'\n', data).unwrap_or(data.len());
    let Ok(content_type) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let body = Bytes::copy_from_slice(data.get(split + 1..).unwrap_or_default());
    let Ok(mp) = mtom::parse(content_type.trim_end_matches('\r'), &body) else {
        return;
    };
    if let Ok(root) = xml::parse(&mp.root.body) {
        for_each(&root, &mut |e| {
            let _ = mtom::xop_content(e, Some(&mp));
        });
    }
    round_trip_mtom(&mp);
}

fn round_trip_mtom(mp: &mtom::Multipart) {
    // The writer's headers come from the gateway, not from a peer: only parts whose headers it
    // could have written are compared.
    let plain_id =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    let plain_type = |s: &str| !s.trim().is_empty() && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    let Ok(root) = String::from_utf8(mp.root.body.to_vec()) else {
        return;
    };
    let mut attachments = Vec::new();
    for p in &mp.parts {
        let (Some(id), Some(kind)) = (&p.content_id, &p.content_type) else {
            return;
        };
        if !plain_id(id) || !plain_type(kind) {
            return;
        }
        attachments.push(mtom::Attachment {
            content_id: id.clone(),
            content_type: kind.clone(),
            data: p.body.clone(),
        });
    }
    let written = mtom::write(root, "urn:fuzz", attachments);
    let again = match mtom::parse(&written.content_type, &written.to_bytes()) {
        Ok(again) => again,
        Err(e) => panic!("a written MTOM message does not parse: {e}"),
    };
    assert_eq!(again.root.body, mp.root.body, "root part changed in a round trip");
    let bodies = |m: &mtom::Multipart| m.parts.iter().map(|p| p.body.clone()).collect::<Vec<_>>();
    assert_eq!(bodies(&again), bodies(mp), "parts changed in a round trip");
}

/// The VIHF (SAML 2.0 assertion): the one in a SOAP header, or a bare assertion.
pub fn vihf(data: &[u8]) {
    if let Ok(env) = soap::parse_envelope(data) {
        if let Some(a) = env.security_assertion() {
            let _ = vihf::parse(a);
        }
    } else if let Ok(root) = xml::parse(data) {
        let _ = vihf::parse(&root);
    }
}

/// The CDA header reader (the documents a caller submits).
pub fn cda(data: &[u8]) {
    let _ = cda::read_header(data);
}

/// ebRIM answers (`RegistryResponse`, `AdhocQueryResponse`), in an envelope or bare: every
/// `RegistryObjectList` is read, converted like the gateway converts it, and written back;
/// reading what was written is a fixed point after one round (the reader normalises once).
pub fn ebrim(data: &[u8]) {
    let root = match soap::parse_envelope(data) {
        Ok(env) => env.payload,
        Err(_) => xml::parse(data).ok(),
    };
    let Some(root) = root else {
        return;
    };
    for_each(&root, &mut |e| {
        let _ = ebrim::read_errors(e);
        if let Some(status) = e.attr("status") {
            let _ = ebrim::ResponseStatus::from_urn(status);
        }
        if e.is(ns::RIM, "RegistryObjectList") {
            let list = ebrim::read_object_list(e);
            for o in &list.extrinsic_objects {
                let _ = RegistryEntry::from_rim(o);
            }
            let once = rewrite(&list);
            let twice = rewrite(&once);
            assert_eq!(once, twice, "ebRIM write→read is not a fixed point");
        }
    });
}

fn rewrite(list: &ObjectList) -> ObjectList {
    let mut out = String::new();
    ebrim::write_object_list(&mut out, list);
    // The writer leaves the `rim:` declaration to its caller.
    let out = out.replacen(
        "<rim:RegistryObjectList>",
        &format!("<rim:RegistryObjectList {}>", ebrim::RIM_XMLNS),
        1,
    );
    match xml::parse_str(&out) {
        Ok(e) => ebrim::read_object_list(&e),
        Err(e) => panic!("written ebRIM does not parse: {e}\n{out}"),
    }
}

/// The HL7v3 TD0.2 answer (`PRPA_IN201308UV02`), in an envelope or bare.
pub fn hl7v3(data: &[u8]) {
    let root = match soap::parse_envelope(data) {
        Ok(env) => env.payload,
        Err(_) => xml::parse(data).ok(),
    };
    if let Some(r) = root {
        let _ = hl7v3::read_existence_answer(&r);
    }
}

fn for_each(root: &Element, f: &mut dyn FnMut(&Element)) {
    let mut stack = vec![root];
    while let Some(e) = stack.pop() {
        f(e);
        stack.extend(e.children.iter());
    }
}

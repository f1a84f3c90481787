//! Last line of defence for SPEC.md §4 "Never raw tokens": before an event is queued, any string
//! in it that looks like a compact JWS/JWE (`eyJ…` base64url segments joined by dots) is replaced
//! by `[redacted token]`, and NUL characters (which PostgreSQL text and jsonb cannot hold, and
//! which would otherwise make the whole batch fail) become U+FFFD. Callers are still expected to
//! pass `jti`s, never tokens; this only keeps a mistake out of the evidence.

use crate::AuditEvent;

pub(crate) const REDACTED_TOKEN: &str = "[redacted token]";

pub(crate) fn event(mut e: AuditEvent) -> AuditEvent {
    e.service = text(e.service);
    e.use_case = text(e.use_case);
    for field in [
        &mut e.trace_id,
        &mut e.initial_request_id,
        &mut e.request_id,
        &mut e.peer,
        &mut e.status,
        &mut e.error_code,
        &mut e.client_id,
        &mut e.ura,
        &mut e.user_id,
        &mut e.user_role,
        &mut e.patient_bsn,
        &mut e.patient_ins,
        &mut e.scope,
    ] {
        if let Some(v) = field.take() {
            *field = Some(text(v));
        }
    }
    e.token_jtis = e.token_jtis.into_iter().map(text).collect();
    json(&mut e.attributes);
    e
}

fn json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => *s = text(std::mem::take(s)),
        serde_json::Value::Array(items) => items.iter_mut().for_each(json),
        serde_json::Value::Object(map) => {
            let needs_key_fix = map.keys().any(|k| needs_work(k));
            if needs_key_fix {
                let old = std::mem::take(map);
                for (k, mut v) in old {
                    json(&mut v);
                    map.insert(text(k), v);
                }
            } else {
                map.values_mut().for_each(json);
            }
        }
        _ => {}
    }
}

fn needs_work(s: &str) -> bool {
    s.contains('\0') || s.contains("eyJ")
}

/// `s` with NULs replaced and JWT-like runs redacted. Allocates only when something changes.
pub(crate) fn text(s: String) -> String {
    if !needs_work(&s) {
        return s;
    }
    let s = s.replace('\0', "\u{FFFD}");
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(i) = rest.find("eyJ") {
        out.push_str(&rest[..i]);
        let candidate = &rest[i..];
        let run = candidate
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=')))
            .unwrap_or(candidate.len());
        let token = &candidate[..run];
        if looks_like_token(token) {
            out.push_str(REDACTED_TOKEN);
        } else {
            out.push_str(token);
        }
        rest = &candidate[run..];
    }
    out.push_str(rest);
    out
}

/// A compact JWS or JWE: at least two dot-separated non-empty segments after the `eyJ` header.
fn looks_like_token(run: &str) -> bool {
    let mut segments = run.split('.');
    let header = segments.next().unwrap_or_default();
    header.len() >= 10 && segments.next().is_some_and(|p| !p.is_empty())
}

/// Whether `s` holds something that looks like a compact JWS/JWE (used by the scanning test and
/// by operators' checks).
pub fn contains_token_like(s: &str) -> bool {
    let mut rest = s;
    while let Some(i) = rest.find("eyJ") {
        let candidate = &rest[i..];
        let run = candidate
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=')))
            .unwrap_or(candidate.len());
        if looks_like_token(&candidate[..run]) {
            return true;
        }
        rest = &candidate[3..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Direction;

    const JWT: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLWJ5dGVz";

    #[test]
    fn tokens_are_redacted_everywhere() {
        let mut e = AuditEvent::new("twiin-authz", "uc", Direction::ReceivedRequest);
        e.peer = Some(format!("Bearer {JWT}"));
        e.token_jtis = vec![JWT.into(), "jti-1".into()];
        e.attributes = serde_json::json!({"assertion": JWT, "nested": [{"x": format!("a {JWT} b")}], JWT: 1});
        let e = event(e);
        let all = serde_json::to_string(&e).expect("json");
        assert!(!contains_token_like(&all), "{all}");
        assert_eq!(e.peer.as_deref(), Some("Bearer [redacted token]"));
        assert_eq!(e.token_jtis[1], "jti-1");
        assert_eq!(e.attributes["nested"][0]["x"], "a [redacted token] b");
    }

    #[test]
    fn harmless_strings_stay() {
        assert_eq!(text("eyJ alone".into()), "eyJ alone");
        assert_eq!(text("keyJar.x".into()), "keyJar.x");
        assert_eq!(text("nul\0byte".into()), "nul\u{FFFD}byte");
        assert!(!contains_token_like("eyJhbGciOiJFUzI1NiJ9"));
        assert!(contains_token_like(&format!("x={JWT}")));
    }
}

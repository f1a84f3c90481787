//! RFC 7512 `pkcs11:` URIs, the path attributes that select a token and an object:
//! `pkcs11:token=CPS%20CARD;serial=1234;object=auth;id=%01;type=private`. Query attributes
//! (`?pin-value=...`) are refused: a PIN never belongs in configuration files.

use std::collections::HashMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Pkcs11Uri {
    pub(crate) token: Option<String>,
    pub(crate) serial: Option<String>,
    pub(crate) object: Option<String>,
    pub(crate) id: Option<Vec<u8>>,
}

pub(crate) fn parse(uri: &str) -> Result<Pkcs11Uri, String> {
    let rest = uri
        .strip_prefix("pkcs11:")
        .ok_or("does not start with `pkcs11:`")?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if let Some(q) = query
        && q.split('&')
            .any(|kv| kv.starts_with("pin-value") || kv.starts_with("pin-source"))
    {
        return Err(
            "PIN attributes are not accepted in the URI (the holder logs in, or use pin_file)".into(),
        );
    }
    let mut attrs: HashMap<&str, Vec<u8>> = HashMap::new();
    for part in path.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not name=value"))?;
        if attrs.insert(k, percent_decode(v)?).is_some() {
            return Err(format!("attribute `{k}` given twice"));
        }
    }
    let text = |k: &str, attrs: &HashMap<&str, Vec<u8>>| -> Result<Option<String>, String> {
        attrs
            .get(k)
            .map(|v| String::from_utf8(v.clone()).map_err(|_| format!("`{k}` is not UTF-8")))
            .transpose()
    };
    if let Some(t) = attrs.get("type")
        && !matches!(t.as_slice(), b"private" | b"cert")
    {
        return Err("`type` must be `private` or `cert`".into());
    }
    Ok(Pkcs11Uri {
        token: text("token", &attrs)?,
        serial: text("serial", &attrs)?,
        object: text("object", &attrs)?,
        id: attrs.get("id").cloned(),
    })
}

fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad %-escape `%{hex}`"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_token_object_and_id() {
        let u = parse("pkcs11:token=CPS%20CARD;object=Cle%20d'Authentification;id=%01%a0;type=private")
            .expect("ok");
        assert_eq!(u.token.as_deref(), Some("CPS CARD"));
        assert_eq!(u.object.as_deref(), Some("Cle d'Authentification"));
        assert_eq!(u.id, Some(vec![0x01, 0xa0]));
    }

    #[test]
    fn refuses_bad_uris() {
        assert!(parse("file:/x").is_err());
        assert!(parse("pkcs11:token=a;token=b").is_err());
        assert!(parse("pkcs11:id=%zz").is_err());
        assert!(parse("pkcs11:id=%0").is_err());
        assert!(
            parse("pkcs11:token=a?pin-value=1234")
                .unwrap_err()
                .contains("PIN")
        );
        assert!(parse("pkcs11:type=secret-key").is_err());
    }
}

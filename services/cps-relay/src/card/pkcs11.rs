//! PKCS#11 backend through `cryptoki`: the CPS card via the Cryptolib CPS, or an HSM; tested
//! against SoftHSM2. One `Pkcs11` context per module and process (C_Initialize twice fails), a
//! small pool of sessions per token (login is token-global in PKCS#11), the private key found
//! after login (it is a private object), hashing done by the relay so cards that only offer
//! CKM_RSA_PKCS work.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;

use super::{Card, CardIdentity, CardStatus, Pin};
use crate::certificate::{CardCertificate, schemes_for};
use crate::error::RelayError;
use crate::scheme::{Scheme, ecdsa_raw_to_der, sha256, sha256_digest_info};

/// How the token and its objects are chosen.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selection {
    pub(crate) token_label: Option<String>,
    pub(crate) token_serial: Option<String>,
    pub(crate) key_label: Option<String>,
    pub(crate) key_id: Option<Vec<u8>>,
    pub(crate) cert_label: Option<String>,
    pub(crate) cert_id: Option<Vec<u8>>,
    /// The card's signature key and certificate (issue 16), when configured.
    pub(crate) signature: Option<ObjectSelection>,
}

/// A key and its certificate on the token, by CKA_ID and/or CKA_LABEL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ObjectSelection {
    pub(crate) key_label: Option<String>,
    pub(crate) key_id: Option<Vec<u8>>,
    pub(crate) cert_label: Option<String>,
    pub(crate) cert_id: Option<Vec<u8>>,
}

impl Selection {
    fn authentication(&self) -> ObjectSelection {
        ObjectSelection {
            key_label: self.key_label.clone(),
            key_id: self.key_id.clone(),
            cert_label: self.cert_label.clone(),
            cert_id: self.cert_id.clone(),
        }
    }
}

fn contexts() -> &'static Mutex<HashMap<PathBuf, Pkcs11>> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    CONTEXTS.get_or_init(Default::default)
}

/// The process-wide context of a PKCS#11 module, initialised once (PKCS#11 allows one
/// `C_Initialize` per process: a benchmark signing beside the relay must share it).
pub fn context(module: &Path) -> Result<Pkcs11, RelayError> {
    let mut map = contexts().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ctx) = map.get(module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module).map_err(|e| RelayError::NoToken {
        reason: format!("cannot load PKCS#11 module {}: {e}", module.display()),
    })?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| RelayError::Device(format!("C_Initialize of {}: {e}", module.display())))?;
    map.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

pub(crate) struct Pkcs11Card {
    ctx: Pkcs11,
    selection: Selection,
    /// Issuing CAs from the configuration, sent after whichever leaf the token holds.
    chain: Vec<Vec<u8>>,
    /// The token last read: replaced when another token (or certificate) is found.
    token: Mutex<Token>,
    /// PKCS#11 sessions are Send but not Sync: each is used by one thread at a time.
    sessions: Mutex<Vec<Session>>,
    key: Mutex<Option<ObjectHandle>>,
    /// The signature key's handle and whether it has CKA_ALWAYS_AUTHENTICATE.
    signature_key: Mutex<Option<(ObjectHandle, bool)>>,
    /// **Decision — per-signature PIN.** A signature key with CKA_ALWAYS_AUTHENTICATE needs
    /// the PIN again right before each signature (C_Login CKU_CONTEXT_SPECIFIC). The holder
    /// gave it at Login; the relay keeps it, in a zeroising secret, only when the token's
    /// signature key has that attribute, only until Logout or the card changes, and uses it
    /// for nothing else. (The alternative, asking the holder for every submission, would stop
    /// unattended submissions the holder's session grant allows.)
    context_pin: Mutex<Option<Pin>>,
}

/// What the relay read from the token in the reader.
#[derive(Clone)]
struct Token {
    slot: Slot,
    serial: String,
    certificate: CardCertificate,
    schemes: Vec<Scheme>,
    has_rsa_pkcs: bool,
    signature_certificate: Option<CardCertificate>,
}

fn map_ck(e: CkError) -> RelayError {
    match e {
        CkError::Pkcs11(rv, _) => match rv {
            RvError::TokenNotPresent | RvError::DeviceRemoved | RvError::TokenNotRecognized => {
                RelayError::NoToken {
                    reason: format!("the card is not in its reader ({rv})"),
                }
            }
            RvError::SessionHandleInvalid | RvError::SessionClosed => RelayError::NoToken {
                reason: "the card was removed or reset; insert it and log in again".into(),
            },
            RvError::UserNotLoggedIn => RelayError::NotLoggedIn,
            RvError::PinLocked => RelayError::PinBlocked,
            RvError::PinLenRange => RelayError::PinFormat("length refused by the card"),
            other => RelayError::Device(format!("{other:?}")),
        },
        other => RelayError::Device(other.to_string()),
    }
}

impl Pkcs11Card {
    pub(crate) fn open(
        module: &Path,
        selection: Selection,
        chain: Vec<Vec<u8>>,
    ) -> Result<Pkcs11Card, RelayError> {
        let ctx = context(module)?;
        let (token, session) = read_token(&ctx, &selection, &chain)?;
        Ok(Pkcs11Card {
            ctx,
            selection,
            chain,
            token: Mutex::new(token),
            sessions: Mutex::new(vec![session]),
            key: Mutex::new(None),
            signature_key: Mutex::new(None),
            context_pin: Mutex::new(None),
        })
    }

    fn forget_keys(&self) {
        self.key.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.signature_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// The signature key's handle and its CKA_ALWAYS_AUTHENTICATE.
    fn signature_key_handle(&self, session: &Session) -> Result<(ObjectHandle, bool), RelayError> {
        if let Some(k) = *self.signature_key.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(k);
        }
        let sel = self.selection.signature.as_ref().ok_or_else(no_signature_key)?;
        if !Self::logged_in(session)? {
            return Err(RelayError::NotLoggedIn);
        }
        let key = find_private_key(session, sel, "the signature private key")?;
        let always = session
            .get_attributes(key, &[AttributeType::AlwaysAuthenticate])
            .map_err(map_ck)?
            .into_iter()
            .any(|a| matches!(a, Attribute::AlwaysAuthenticate(true)));
        *self.signature_key.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, always));
        Ok((key, always))
    }

    fn token(&self) -> Token {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` with a pooled session (opening one when the pool is empty). Sessions that
    /// failed because the card went away are dropped, not returned.
    fn with_session<T>(&self, f: impl FnOnce(&Session) -> Result<T, RelayError>) -> Result<T, RelayError> {
        let pooled = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let session = match pooled {
            Some(s) => s,
            None => self.ctx.open_ro_session(self.token().slot).map_err(map_ck)?,
        };
        let result = f(&session);
        if !matches!(
            result,
            Err(RelayError::NoToken { .. }) | Err(RelayError::Device(_))
        ) {
            self.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(session);
        } else {
            self.forget_keys();
        }
        result
    }

    fn logged_in(session: &Session) -> Result<bool, RelayError> {
        let info = session.get_session_info().map_err(map_ck)?;
        Ok(matches!(
            info.session_state(),
            SessionState::RoUser | SessionState::RwUser
        ))
    }

    fn key_handle(&self, session: &Session) -> Result<ObjectHandle, RelayError> {
        if let Some(k) = *self.key.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(k);
        }
        if !Self::logged_in(session)? {
            return Err(RelayError::NotLoggedIn);
        }
        let key = find_private_key(
            session,
            &self.selection.authentication(),
            "the authentication private key",
        )?;
        *self.key.lock().unwrap_or_else(|e| e.into_inner()) = Some(key);
        Ok(key)
    }
}

fn no_signature_key() -> RelayError {
    RelayError::NoSignatureKey(
        "set backend.pkcs11.signature_key_id or signature_key_label to the card's signature key".into(),
    )
}

/// The one private key `sel` names.
fn find_private_key(
    session: &Session,
    sel: &ObjectSelection,
    what: &str,
) -> Result<ObjectHandle, RelayError> {
    let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
    if let Some(id) = sel.key_id.as_ref().or(sel.cert_id.as_ref()) {
        template.push(Attribute::Id(id.clone()));
    }
    if let Some(label) = &sel.key_label {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    let found = session.find_objects(&template).map_err(map_ck)?;
    match found.as_slice() {
        [k] => Ok(*k),
        [] => Err(RelayError::ObjectNotFound { what: what.into() }),
        _ => Err(RelayError::ObjectNotFound {
            what: format!("a unique key for {what} (several match: set its key id or label)"),
        }),
    }
}

/// Finds the selected token and reads its serial, certificate and mechanisms; returns the
/// session it used, for the pool.
fn read_token(
    ctx: &Pkcs11,
    selection: &Selection,
    chain: &[Vec<u8>],
) -> Result<(Token, Session), RelayError> {
    let (slot, serial) = find_slot(ctx, selection)?;
    let session = ctx.open_ro_session(slot).map_err(map_ck)?;
    let leaf = find_certificate(
        &session,
        &selection.authentication(),
        "the authentication certificate",
    )?;
    let signature_certificate = selection
        .signature
        .as_ref()
        .map(|sig| {
            find_certificate(&session, sig, "the signature certificate").map(|leaf| CardCertificate {
                leaf,
                chain: chain.to_vec(),
            })
        })
        .transpose()?;
    let certificate = CardCertificate {
        leaf,
        chain: chain.to_vec(),
    };
    let kind = certificate.key_kind()?;
    let mechanisms = ctx.get_mechanism_list(slot).map_err(map_ck)?;
    let has = |m: MechanismType| mechanisms.contains(&m);
    let has_rsa_pkcs = has(MechanismType::RSA_PKCS);
    let schemes = schemes_for(
        kind,
        has_rsa_pkcs || has(MechanismType::SHA256_RSA_PKCS),
        has(MechanismType::RSA_PKCS_PSS),
        has(MechanismType::ECDSA),
    );
    let token = Token {
        slot,
        serial,
        certificate,
        schemes,
        has_rsa_pkcs,
        signature_certificate,
    };
    Ok((token, session))
}

/// The slot of the selected token and the token's serial. A slot whose token cannot be read
/// any more (SoftHSM answers CKR_GENERAL_ERROR for a deleted token) holds no token.
fn find_slot(ctx: &Pkcs11, sel: &Selection) -> Result<(Slot, String), RelayError> {
    let slots = ctx.get_slots_with_token().map_err(map_ck)?;
    if slots.is_empty() {
        return Err(RelayError::NoToken {
            reason: "no token in any slot (is the card inserted?)".into(),
        });
    }
    let mut candidates = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        let label_ok = sel
            .token_label
            .as_deref()
            .is_none_or(|l| info.label().trim() == l);
        let serial_ok = sel
            .token_serial
            .as_deref()
            .is_none_or(|s| info.serial_number().trim() == s);
        if label_ok && serial_ok {
            candidates.push((slot, info.serial_number().trim().to_owned()));
        }
    }
    match candidates.as_slice() {
        [found] => Ok(found.clone()),
        [] => Err(RelayError::TokenNotFound {
            what: format!(
                "no token with label {:?} and serial {:?}",
                sel.token_label.as_deref().unwrap_or("*"),
                sel.token_serial.as_deref().unwrap_or("*")
            ),
        }),
        _ => Err(RelayError::TokenNotFound {
            what: "several tokens match: set token_label or token_serial".into(),
        }),
    }
}

fn find_certificate(session: &Session, sel: &ObjectSelection, what: &str) -> Result<Vec<u8>, RelayError> {
    let mut template = vec![Attribute::Class(ObjectClass::CERTIFICATE)];
    if let Some(id) = sel.cert_id.as_ref().or(sel.key_id.as_ref()) {
        template.push(Attribute::Id(id.clone()));
    }
    if let Some(label) = &sel.cert_label {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    let found = session.find_objects(&template).map_err(map_ck)?;
    let handle = match found.as_slice() {
        [h] => *h,
        [] => {
            return Err(RelayError::ObjectNotFound { what: what.into() });
        }
        _ => {
            return Err(RelayError::ObjectNotFound {
                what: format!("a unique certificate for {what} (several match: set its cert id or label)"),
            });
        }
    };
    let attrs = session
        .get_attributes(handle, &[AttributeType::Value])
        .map_err(map_ck)?;
    attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::Value(v) => Some(v),
            _ => None,
        })
        .ok_or_else(|| RelayError::ObjectNotFound {
            what: "the certificate's value".into(),
        })
}

impl Card for Pkcs11Card {
    fn certificate(&self) -> Result<CardCertificate, RelayError> {
        Ok(self.token().certificate)
    }

    fn current_identity(&self) -> Result<CardIdentity, RelayError> {
        let (token, session) = read_token(&self.ctx, &self.selection, &self.chain)?;
        let mut current = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if current.slot != token.slot
            || current.serial != token.serial
            || current.certificate.leaf != token.certificate.leaf
        {
            tracing::info!(serial = %token.serial, "another card is in the reader: certificate read again");
            // Sessions, key handles and the per-signature PIN belong to the old token.
            self.forget_keys();
            self.context_pin.lock().unwrap_or_else(|e| e.into_inner()).take();
            let mut pool = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            pool.clear();
            pool.push(session);
            *current = token.clone();
        }
        Ok(CardIdentity {
            serial: token.serial,
            certificate: token.certificate,
        })
    }

    fn schemes(&self) -> Result<Vec<Scheme>, RelayError> {
        Ok(self.token().schemes)
    }

    fn status(&self) -> Result<CardStatus, RelayError> {
        let info = match self.ctx.get_token_info(self.token().slot) {
            Ok(i) => i,
            Err(e) => match map_ck(e) {
                RelayError::NoToken { .. } => {
                    return Ok(CardStatus {
                        backend: "pkcs11",
                        token_present: false,
                        ..Default::default()
                    });
                }
                other => return Err(other),
            },
        };
        let logged_in = self.with_session(Self::logged_in)?;
        let pin_tries_left = if info.user_pin_locked() {
            Some(0)
        } else if info.user_pin_final_try() {
            Some(1)
        } else {
            None
        };
        Ok(CardStatus {
            backend: "pkcs11",
            token_present: true,
            token_label: info.label().trim().to_owned(),
            token_serial: info.serial_number().trim().to_owned(),
            token_manufacturer: info.manufacturer_id().trim().to_owned(),
            token_model: info.model().trim().to_owned(),
            logged_in,
            pin_tries_left,
            pin_count_low: info.user_pin_count_low(),
            pin_final_try: info.user_pin_final_try(),
            pin_locked: info.user_pin_locked(),
        })
    }

    fn login(&self, pin: &Pin, confirm_final_try: bool) -> Result<(), RelayError> {
        let slot = self.token().slot;
        let info = self.ctx.get_token_info(slot).map_err(map_ck)?;
        if info.user_pin_locked() {
            return Err(RelayError::PinBlocked);
        }
        if info.user_pin_final_try() && !confirm_final_try {
            return Err(RelayError::FinalTryUnconfirmed);
        }
        self.with_session(|s| {
            // Already logged in: log out first, so the PIN is checked by the card for real
            // (C_Login would answer USER_ALREADY_LOGGED_IN to any PIN).
            if Self::logged_in(s)? {
                self.key.lock().unwrap_or_else(|e| e.into_inner()).take();
                match s.logout() {
                    Ok(()) | Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) => {}
                    Err(e) => return Err(map_ck(e)),
                }
            }
            match s.login(UserType::User, Some(pin)) {
                Ok(()) => {
                    self.forget_keys();
                    let keep = self.selection.signature.is_some()
                        && self.signature_key_handle(s).is_ok_and(|(_, always)| always);
                    *self.context_pin.lock().unwrap_or_else(|e| e.into_inner()) =
                        keep.then(|| pin.clone());
                    Ok(())
                }
                Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Err(RelayError::Device(
                    "the card stayed logged in after C_Logout, so the PIN could not be checked; remove and reinsert the card"
                        .into(),
                )),
                Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                    let after = self.ctx.get_token_info(slot).map_err(map_ck)?;
                    if after.user_pin_locked() {
                        Err(RelayError::PinBlocked)
                    } else {
                        Err(RelayError::WrongPin {
                            tries_left: after.user_pin_final_try().then_some(1),
                        })
                    }
                }
                Err(e) => Err(map_ck(e)),
            }
        })
    }

    fn logout(&self) -> Result<(), RelayError> {
        self.forget_keys();
        self.context_pin.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.with_session(|s| match s.logout() {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) => Ok(()),
            Err(e) => Err(map_ck(e)),
        })
    }

    fn sign(&self, scheme: Scheme, data: &[u8]) -> Result<Vec<u8>, RelayError> {
        let token = self.token();
        if !token.schemes.contains(&scheme) {
            return Err(RelayError::unsupported(scheme, &token.schemes));
        }
        self.with_session(|session| {
            let key = self.key_handle(session)?;
            let hash = sha256(data);
            // Mechanism is not Send: built here, on the thread that uses it.
            let result = match scheme {
                // CKM_RSA_PKCS over a DigestInfo gives the same signature as CKM_SHA256_RSA_PKCS
                // and is what smart cards implement; the hashing variant is the fallback.
                Scheme::RsaPkcs1Sha256 if token.has_rsa_pkcs => {
                    session.sign(&Mechanism::RsaPkcs, key, &sha256_digest_info(&hash))
                }
                Scheme::RsaPkcs1Sha256 => session.sign(&Mechanism::Sha256RsaPkcs, key, data),
                Scheme::RsaPssSha256 => session.sign(
                    &Mechanism::RsaPkcsPss(PkcsPssParams {
                        hash_alg: MechanismType::SHA256,
                        mgf: PkcsMgfType::MGF1_SHA256,
                        s_len: 32.into(),
                    }),
                    key,
                    &hash,
                ),
                Scheme::EcdsaP256Sha256 => session.sign(&Mechanism::Ecdsa, key, &hash).and_then(|raw| {
                    ecdsa_raw_to_der(&raw).ok_or(CkError::Pkcs11(
                        RvError::SignatureInvalid,
                        cryptoki::context::Function::Sign,
                    ))
                }),
            };
            result.map_err(|e| {
                if matches!(e, CkError::Pkcs11(RvError::KeyHandleInvalid, _)) {
                    self.key.lock().unwrap_or_else(|e| e.into_inner()).take();
                }
                map_ck(e)
            })
        })
    }

    fn signature_certificate(&self) -> Result<CardCertificate, RelayError> {
        self.token().signature_certificate.ok_or_else(no_signature_key)
    }

    fn sign_with_signature_key(&self, data: &[u8]) -> Result<Vec<u8>, RelayError> {
        let token = self.token();
        self.with_session(|session| {
            let (key, always_authenticate) = self.signature_key_handle(session)?;
            let result = if always_authenticate {
                // C_SignInit, then the context-specific login, then the signature: multi-part
                // CKM_SHA256_RSA_PKCS, the one way cryptoki lets a login sit in between.
                let pin = self
                    .context_pin
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .ok_or(RelayError::NotLoggedIn)?;
                session
                    .sign_init(&Mechanism::Sha256RsaPkcs, key)
                    .and_then(|()| session.login(UserType::ContextSpecific, Some(&pin)))
                    .and_then(|()| session.sign_update(data))
                    .and_then(|()| session.sign_final())
            } else if token.has_rsa_pkcs {
                session.sign(&Mechanism::RsaPkcs, key, &sha256_digest_info(&sha256(data)))
            } else {
                session.sign(&Mechanism::Sha256RsaPkcs, key, data)
            };
            result.map_err(|e| {
                if matches!(e, CkError::Pkcs11(RvError::KeyHandleInvalid, _)) {
                    self.signature_key
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take();
                }
                map_ck(e)
            })
        })
    }
}

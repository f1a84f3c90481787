//! The card behind the relay: a PKCS#11 token (the CPS card through the Cryptolib CPS, or an
//! HSM; SoftHSM2 in tests) or a software key for development. Calls are blocking: the service
//! runs them on the blocking pool, at most `sessions` at a time.

pub(crate) mod pkcs11;
pub(crate) mod pkcs11_uri;
pub(crate) mod queue;
pub(crate) mod software;

use crate::certificate::CardCertificate;
use crate::error::RelayError;
use crate::scheme::Scheme;

pub(crate) use secrecy::SecretString as Pin;

/// What the token reports about itself and the holder's session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CardStatus {
    pub(crate) backend: &'static str,
    pub(crate) token_present: bool,
    pub(crate) token_label: String,
    pub(crate) token_serial: String,
    pub(crate) token_manufacturer: String,
    pub(crate) token_model: String,
    pub(crate) logged_in: bool,
    pub(crate) pin_tries_left: Option<u32>,
    pub(crate) pin_count_low: bool,
    pub(crate) pin_final_try: bool,
    pub(crate) pin_locked: bool,
}

impl CardStatus {
    pub(crate) fn to_proto(&self) -> ehealth_proto::cps::v1::GetStatusResponse {
        ehealth_proto::cps::v1::GetStatusResponse {
            backend: self.backend.to_owned(),
            token_present: self.token_present,
            token_label: self.token_label.clone(),
            token_serial: self.token_serial.clone(),
            token_manufacturer: self.token_manufacturer.clone(),
            token_model: self.token_model.clone(),
            logged_in: self.logged_in,
            pin_tries_left: self.pin_tries_left,
            pin_count_low: self.pin_count_low,
            pin_final_try: self.pin_final_try,
            pin_locked: self.pin_locked,
        }
    }
}

/// Which card is in the reader: what a card session is bound to (issue 13).
#[derive(Debug, Clone)]
pub(crate) struct CardIdentity {
    /// The token's serial number (empty for the software backend).
    pub(crate) serial: String,
    /// The authentication certificate read with it.
    pub(crate) certificate: CardCertificate,
}

/// A signing card. Implementations serialise their own access to the device.
pub(crate) trait Card: Send + Sync + 'static {
    /// The authentication certificate as last read from the card.
    fn certificate(&self) -> Result<CardCertificate, RelayError>;
    /// Reads the token's serial and certificate from the device now; when the token changed,
    /// the card's certificate (and what depends on it) is replaced by the new one. A removed
    /// card answers `NoToken`/`TokenNotFound`, a token without the certificate
    /// `ObjectNotFound`.
    fn current_identity(&self) -> Result<CardIdentity, RelayError> {
        Ok(CardIdentity {
            serial: String::new(),
            certificate: self.certificate()?,
        })
    }
    /// Schemes the key and the device support.
    fn schemes(&self) -> Result<Vec<Scheme>, RelayError>;
    fn status(&self) -> Result<CardStatus, RelayError>;
    /// Logs the holder in, checking the PIN on the card even when it was logged in already.
    /// Refused before the card is asked when the PIN is blocked, or when one try is left and
    /// the holder did not confirm it.
    fn login(&self, pin: &Pin, confirm_final_try: bool) -> Result<(), RelayError>;
    fn logout(&self) -> Result<(), RelayError>;
    /// Signs `data` (unhashed) with `scheme`; the card hashes or is given the hash as it needs.
    /// Always the authentication key.
    fn sign(&self, scheme: Scheme, data: &[u8]) -> Result<Vec<u8>, RelayError>;
    /// The signature key's certificate (issue 16), when the backend has one configured.
    fn signature_certificate(&self) -> Result<CardCertificate, RelayError> {
        Err(RelayError::NoSignatureKey(
            "this backend has no signature key configured".into(),
        ))
    }
    /// Signs `data` (unhashed) with the *signature* key, RSA PKCS#1 v1.5 SHA-256, doing the
    /// context-specific login a CKA_ALWAYS_AUTHENTICATE key needs.
    fn sign_with_signature_key(&self, _data: &[u8]) -> Result<Vec<u8>, RelayError> {
        Err(RelayError::NoSignatureKey(
            "this backend has no signature key configured".into(),
        ))
    }
}

/// Refuses PINs no card accepts before they cost a try: 4 to 64 printable ASCII characters.
pub(crate) fn check_pin_format(pin: &str) -> Result<(), RelayError> {
    if pin.len() < 4 {
        return Err(RelayError::PinFormat("shorter than 4 characters"));
    }
    if pin.len() > 64 {
        return Err(RelayError::PinFormat("longer than 64 characters"));
    }
    if !pin.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RelayError::PinFormat(
            "only printable ASCII characters are allowed",
        ));
    }
    Ok(())
}

//! Access codes: a keyed hash of the booking id, so the buyer can read and cancel a booking
//! without an account, and the code need not be stored (a retry can hand it out again).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

#[derive(Clone)]
pub struct AccessCodes {
    secret: std::sync::Arc<Vec<u8>>,
}

impl AccessCodes {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: std::sync::Arc::new(secret.to_vec()),
        }
    }

    fn mac(&self, booking_id: Uuid) -> Vec<u8> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("hmac takes any key length");
        mac.update(b"booking-access:");
        mac.update(booking_id.as_bytes());
        mac.finalize().into_bytes()[..18].to_vec()
    }

    pub fn code(&self, booking_id: Uuid) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(booking_id))
    }

    pub fn verify(&self, booking_id: Uuid, code: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(code) {
            Ok(presented) => bool::from(presented.ct_eq(&self.mac(booking_id))),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_opens_only_its_own_booking() {
        let codes = AccessCodes::new(b"secret");
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(codes.verify(a, &codes.code(a)));
        assert!(!codes.verify(b, &codes.code(a)));
        assert!(!AccessCodes::new(b"other").verify(a, &codes.code(a)));
        assert!(!codes.verify(a, "not base64 !"));
    }
}

//! Entry tokens: Ed25519-signed JWTs that the gateway hands to admitted buyers and the booking
//! service verifies with public keys only. The header's `kid` picks the key, so a new key can be
//! added to every verifier before the gateway starts signing with it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::signatures::SignatureBatcher;

/// An entry token's unique id (`jti`): the token's claim, the reservation id of its hold in Redis
/// (`holds`, `holdv`, `used`), and `bookings.token_jti` in Postgres (uuid, unique: one booking
/// per token).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct TokenId(pub Uuid);

impl TokenId {
    pub fn new_v4() -> Self {
        Self(Uuid::new_v4())
    }
}

impl std::fmt::Display for TokenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for TokenId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

impl redis::ToRedisArgs for TokenId {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        // The hyphenated text form, the same the reservation id has in every script.
        out.write_arg(
            self.0
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        )
    }
}

/// What an entry token says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntryClaims {
    /// The queue id of the admitted buyer.
    pub sub: crate::queue::QueueId,
    /// The event this token admits to.
    pub evt: Uuid,
    /// Unique token id; one booking per token.
    pub jti: TokenId,
    pub iat: i64,
    pub exp: i64,
    /// Most tickets this token may book.
    pub max: u32,
}

/// The private key the gateway signs with, parsed once: `jsonwebtoken` would parse the PKCS#8
/// document (and derive the public key) on every signature, which costs more than the signing.
pub struct EntrySigner {
    kid: String,
    pair: Ed25519KeyPair,
    /// The encoded JOSE header, the same for every token.
    header: String,
}

impl EntrySigner {
    pub fn from_pem(kid: &str, pem: &[u8]) -> anyhow::Result<Self> {
        // Parsed by jsonwebtoken first, so a key it would not accept is refused here too.
        EncodingKey::from_ed_pem(pem).context("not an Ed25519 PKCS#8 PEM private key")?;
        let text = std::str::from_utf8(pem).context("the PEM key is not text")?;
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD
            .decode(body.trim())
            .context("the PEM key is not base64")?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|_| anyhow::anyhow!("not an Ed25519 PKCS#8 private key"))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_string());
        Ok(Self {
            kid: kid.to_string(),
            pair,
            header: URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
        })
    }

    /// A compact JWS: `header.claims.signature`, each base64url without padding.
    pub fn sign(&self, claims: &EntryClaims) -> anyhow::Result<String> {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?);
        let signing_input = format!("{}.{payload}", self.header);
        let signature = self.pair.sign(signing_input.as_bytes());
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the entry token has expired")]
    Expired,
    #[error("the entry token is not valid")]
    Invalid,
}

/// One public key a verifier accepts: the signature is checked with ed25519-dalek, the claims
/// with jsonwebtoken. ring's Ed25519 check (jsonwebtoken 9's only) was a fifth to a quarter of
/// the booking service's CPU at its ceiling and costs ~1.5x dalek's on this machine (README).
#[derive(Clone)]
pub struct EntryKey {
    signature: ed25519_dalek::VerifyingKey,
    claims: DecodingKey,
}

impl EntryKey {
    /// An Ed25519 public key as SubjectPublicKeyInfo PEM (`<kid>.pub.pem`).
    pub fn from_pem(pem: &[u8]) -> anyhow::Result<Self> {
        use ed25519_dalek::pkcs8::DecodePublicKey;
        let text = std::str::from_utf8(pem).context("the key is not PEM text")?;
        Ok(Self {
            signature: ed25519_dalek::VerifyingKey::from_public_key_pem(text)
                .map_err(|e| anyhow::anyhow!("not an Ed25519 public key: {e}"))?,
            claims: DecodingKey::from_ed_pem(pem)?,
        })
    }
}

/// The public keys a verifier accepts, by `kid`.
#[derive(Clone)]
pub struct EntryVerifier {
    keys: HashMap<String, EntryKey>,
    /// The claims' checks; the signature is checked before them, by [`EntryKey`].
    validation: Validation,
    /// Tokens whose signature already checked out, by their exact text. Buyers retry with the
    /// same token (most of all when tiers sell out), and an Ed25519 verification costs more than
    /// the rest of a refused booking; expiry is still checked on every use.
    verified: Arc<Mutex<HashMap<String, EntryClaims>>>,
    /// Signatures checked many at a time ([`EntryVerifier::verify_batched`]), when started.
    batcher: Option<SignatureBatcher>,
}

/// Most tokens the verified cache holds before it starts over.
const VERIFIED_LIMIT: usize = 100_000;
/// Seconds of clock skew tolerated on `exp`.
const LEEWAY_S: i64 = 2;

impl EntryVerifier {
    pub fn new(keys: HashMap<String, EntryKey>) -> Self {
        // Only EdDSA: a token claiming `none` or an HMAC algorithm (signed with the public key as
        // its secret) is refused before any key is used (`verify_signature` reads the header).
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.leeway = LEEWAY_S as u64;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Checked by then, with dalek: jsonwebtoken's own check would verify it again with ring.
        validation.insecure_disable_signature_validation();
        Self {
            keys,
            validation,
            verified: Arc::default(),
            batcher: None,
        }
    }

    /// Checks signatures many at a time in [`EntryVerifier::verify_batched`] (`signatures`);
    /// starts a task, so must be called within a Tokio runtime.
    pub fn with_batches(mut self) -> Self {
        self.batcher = Some(SignatureBatcher::start());
        self
    }

    /// Every `<kid>.pub.pem` in `dir`.
    pub fn from_dir(dir: &Path) -> anyhow::Result<Self> {
        let mut keys = HashMap::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(kid) = name.strip_suffix(".pub.pem") {
                let pem = std::fs::read(&path)?;
                let key = EntryKey::from_pem(&pem)
                    .with_context(|| format!("{} is not an Ed25519 public key", path.display()))?;
                keys.insert(kid.to_string(), key);
            }
        }
        if keys.is_empty() {
            bail!("no <kid>.pub.pem entry-token keys in {}", dir.display());
        }
        Ok(Self::new(keys))
    }

    /// The token's claims once its signature and claims check out.
    pub fn verify(&self, token: &str) -> Result<EntryClaims, TokenError> {
        if let Some(known) = self.already_verified(token) {
            return known;
        }
        let signed = self.signed(token)?;
        if signed
            .key
            .signature
            .verify_strict(signed.message.as_bytes(), &signed.signature)
            .is_err()
        {
            return Err(TokenError::Invalid);
        }
        self.claims(token, signed.key)
    }

    /// As [`EntryVerifier::verify`], the signature checked together with others waiting when
    /// batches were started ([`EntryVerifier::with_batches`]): the same answers for less CPU
    /// under load.
    pub async fn verify_batched(&self, token: &str) -> Result<EntryClaims, TokenError> {
        let Some(batcher) = &self.batcher else {
            return self.verify(token);
        };
        if let Some(known) = self.already_verified(token) {
            return known;
        }
        let signed = self.signed(token)?;
        let key = &signed.key.signature;
        if !batcher
            .check(key, signed.message.as_bytes(), &signed.signature)
            .await
        {
            return Err(TokenError::Invalid);
        }
        self.claims(token, signed.key)
    }

    /// The answer for a token whose signature checked out before (its expiry checked again).
    fn already_verified(&self, token: &str) -> Option<Result<EntryClaims, TokenError>> {
        let cached = self
            .verified
            .lock()
            .expect("token cache lock")
            .get(token)
            .cloned()?;
        if cached.exp < chrono::Utc::now().timestamp() - LEEWAY_S {
            return Some(Err(TokenError::Expired));
        }
        Some(Ok(cached))
    }

    /// The token's key, signed part and signature, before any is checked.
    fn signed<'a>(&'a self, token: &'a str) -> Result<Signed<'a>, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(TokenError::Invalid)?;
        // The signature covers everything before the last dot, as jsonwebtoken splits it; it is
        // unpadded base64url, and the strict check also refuses non-canonical and small-order
        // points (the gateway's ring signatures are always canonical).
        let (message, signature) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|bytes| ed25519_dalek::Signature::from_slice(&bytes).ok())
            .ok_or(TokenError::Invalid)?;
        Ok(Signed {
            key,
            message,
            signature,
        })
    }

    /// The claims of a token whose signature checked out, remembered for its next use.
    fn claims(&self, token: &str, key: &EntryKey) -> Result<EntryClaims, TokenError> {
        let claims = match jsonwebtoken::decode::<EntryClaims>(token, &key.claims, &self.validation)
        {
            Ok(data) => data.claims,
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                return Err(TokenError::Expired)
            }
            Err(_) => return Err(TokenError::Invalid),
        };
        let mut verified = self.verified.lock().expect("token cache lock");
        if verified.len() >= VERIFIED_LIMIT {
            verified.clear();
        }
        verified.insert(token.to_string(), claims.clone());
        Ok(claims)
    }
}

/// A token taken apart for its signature check.
struct Signed<'a> {
    key: &'a EntryKey,
    message: &'a str,
    signature: ed25519_dalek::Signature,
}

/// A fresh Ed25519 key pair as (PKCS#8 private PEM, SPKI public PEM).
pub fn generate_key_pair() -> anyhow::Result<(String, String)> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("key generation failed"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| anyhow::anyhow!("generated key does not parse"))?;
    // SubjectPublicKeyInfo for Ed25519 is a fixed 12-byte prefix and the raw 32-byte key.
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(pair.public_key().as_ref());
    Ok((pem("PRIVATE KEY", pkcs8.as_ref()), pem("PUBLIC KEY", &spki)))
}

/// Writes a new key pair as `<dir>/<kid>.key.pem` and `<dir>/<kid>.pub.pem` unless the private key
/// exists already. Returns true when it wrote one.
pub fn ensure_key_pair(dir: &Path, kid: &str) -> anyhow::Result<bool> {
    let private = dir.join(format!("{kid}.key.pem"));
    if private.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    let (private_pem, public_pem) = generate_key_pair()?;
    write_private(&private, private_pem.as_bytes())?;
    std::fs::write(dir.join(format!("{kid}.pub.pem")), public_pem)?;
    Ok(true)
}

/// Writes a private key readable by its owner only (0600), created so from the start: it is
/// never world-readable, not even for a moment.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents)
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn private_keys_are_written_for_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("keys-{}", uuid::Uuid::new_v4()));
        assert!(ensure_key_pair(&dir, "k").unwrap());
        let mode = std::fs::metadata(dir.join("k.key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn pair(kid: &str) -> (EntrySigner, EntryVerifier) {
        let (private, public) = generate_key_pair().unwrap();
        let signer = EntrySigner::from_pem(kid, private.as_bytes()).unwrap();
        let key = EntryKey::from_pem(public.as_bytes()).unwrap();
        (
            signer,
            EntryVerifier::new(HashMap::from([(kid.to_string(), key)])),
        )
    }

    fn claims(exp_in: i64) -> EntryClaims {
        let now = chrono::Utc::now().timestamp();
        EntryClaims {
            sub: crate::queue::QueueId(Uuid::new_v4()),
            evt: Uuid::new_v4(),
            jti: TokenId::new_v4(),
            iat: now,
            exp: now + exp_in,
            max: 6,
        }
    }

    #[test]
    fn a_signed_token_verifies_with_its_public_key() {
        let (signer, verifier) = pair("k1");
        let claims = claims(60);
        let token = signer.sign(&claims).unwrap();
        assert_eq!(verifier.verify(&token), Ok(claims));
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let (signer, verifier) = pair("k1");
        let token = signer.sign(&claims(-120)).unwrap();
        assert_eq!(verifier.verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_verified_before_expires_all_the_same() {
        let (signer, verifier) = pair("k1");
        let token = signer.sign(&claims(60)).unwrap();
        assert!(verifier.verify(&token).is_ok());
        // Age the remembered claims past their expiry: the cache must not outlive the token.
        for claims in verifier.verified.lock().unwrap().values_mut() {
            claims.exp -= 3600;
        }
        assert_eq!(verifier.verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn a_tampered_copy_of_a_verified_token_is_still_refused() {
        let (signer, verifier) = pair("k1");
        let token = signer.sign(&claims(60)).unwrap();
        assert!(verifier.verify(&token).is_ok());
        let mut tampered = token.clone();
        tampered.push('A');
        assert_eq!(verifier.verify(&tampered), Err(TokenError::Invalid));
    }

    #[test]
    fn only_an_eddsa_signature_over_the_exact_text_verifies() {
        let (signer, verifier) = pair("k1");
        let token = signer.sign(&claims(60)).unwrap();
        let (message, signature) = token.rsplit_once('.').unwrap();
        let (header, _) = message.split_once('.').unwrap();
        // Another payload under the same signature.
        let other = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(3600)).unwrap());
        let swapped = format!("{header}.{other}.{signature}");
        assert_eq!(verifier.verify(&swapped), Err(TokenError::Invalid));
        // One bit of the signature flipped.
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[10] ^= 1;
        let flipped = format!("{message}.{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(verifier.verify(&flipped), Err(TokenError::Invalid));
        // The same signature padded, or cut short.
        assert_eq!(
            verifier.verify(&format!("{token}==")),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            verifier.verify(&token[..token.len() - 4]),
            Err(TokenError::Invalid)
        );
        // The same parts under a header naming HS256 (the key-confusion attack: an HMAC keyed
        // with the public key's text) or none: refused on the header, before any key is used.
        for alg in [
            r#"{"alg":"HS256","kid":"k1"}"#,
            r#"{"alg":"none","kid":"k1"}"#,
        ] {
            let forged = format!(
                "{}.{}.{signature}",
                URL_SAFE_NO_PAD.encode(alg),
                message.split_once('.').unwrap().1
            );
            assert_eq!(verifier.verify(&forged), Err(TokenError::Invalid), "{alg}");
        }
        // Still the genuine token verifies, after all of them.
        assert!(verifier.verify(&token).is_ok());
    }

    #[test]
    fn a_token_from_another_key_with_the_same_kid_is_refused() {
        let (_, verifier) = pair("k1");
        let (other, _) = pair("k1");
        let token = other.sign(&claims(60)).unwrap();
        assert_eq!(verifier.verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn tokens_of_every_configured_kid_verify() {
        let (old_private, old_public) = generate_key_pair().unwrap();
        let (new_private, new_public) = generate_key_pair().unwrap();
        let verifier = EntryVerifier::new(HashMap::from([
            (
                "old".to_string(),
                EntryKey::from_pem(old_public.as_bytes()).unwrap(),
            ),
            (
                "new".to_string(),
                EntryKey::from_pem(new_public.as_bytes()).unwrap(),
            ),
        ]));
        for (kid, private) in [("old", old_private), ("new", new_private)] {
            let signer = EntrySigner::from_pem(kid, private.as_bytes()).unwrap();
            assert!(verifier.verify(&signer.sign(&claims(60)).unwrap()).is_ok());
        }
    }
}

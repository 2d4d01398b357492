// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The gateway's own keys and certificates for its embedded defaults.
//!
//! On first use a data directory gets, under `keys/`, a local CA and two
//! certificates issued by it, one for timestamps and one for receipts, each
//! with an ECDSA P-256 key.
//! Key files are created with mode 0600 and never overwritten; certificates
//! are PEM so that `openssl` reads them as they are. The timestamping
//! certificate is what OpenSSL 3.0 demands of a TSA (RFC 3161 §2.3): an
//! extendedKeyUsage extension that is critical and holds only
//! id-kp-timeStamping, and a keyUsage limited to digitalSignature and
//! nonRepudiation. (rcgen marks extendedKeyUsage non-critical, which OpenSSL
//! refuses, so the certificates are built here with x509-cert.)
//!
//! A local CA proves nothing to a stranger by itself: whoever checks the
//! evidence must obtain the CA certificate through a channel they trust.
//! Production sites name keys and certificates of their own PKI in the
//! configuration's `[keys]` section instead ([`LocalPki::load`]), and may
//! stamp with external, accredited TSAs. Limit: those keys must be ECDSA
//! P-256 in PKCS#8, the one key type the gateway signs with.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use const_oid::AssociatedOid;
use der::{DecodePem, EncodePem, pem::LineEnding};
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use spki::EncodePublicKey;
use x509_cert::Certificate;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::AsExtension;
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;

use super::TsaError;
use crate::config::KeysConfig;

/// id-kp-timeStamping (RFC 3161 §2.3).
pub const ID_KP_TIME_STAMPING: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");

const CA_YEARS: u64 = 20;
const LEAF_YEARS: u64 = 10;
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// A key and the certificate that names it, ready to sign CMS: the key is
/// also held as a ring key pair (the fast signer), and the certificate's
/// DER and SHA-256 are computed once for the signingCertificateV2 attribute.
#[derive(Clone)]
pub struct KeyPair {
    pub key: SigningKey,
    pub certificate: Certificate,
    pub(crate) signer: std::sync::Arc<ring::signature::EcdsaKeyPair>,
    pub(crate) certificate_sha256: [u8; 32],
    /// Intermediate CA certificates embedded beside the certificate, so
    /// that a verifier holding only the root can build the path.
    pub(crate) chain: Vec<Certificate>,
}

impl KeyPair {
    /// Pairs a P-256 key with its certificate, checking that they match.
    pub fn new(key: SigningKey, certificate: Certificate) -> Result<KeyPair, TsaError> {
        use der::Encode;
        use sha2::Digest;
        let pkcs8 = key
            .to_pkcs8_der()
            .map_err(|e| pki_error("key encoding", e))?;
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8.as_bytes(),
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|e| pki_error("P-256 key", e))?;
        let public = certificate
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        if ring::signature::KeyPair::public_key(&signer).as_ref() != public {
            return Err(TsaError::Pki(format!(
                "the key does not belong to the certificate of {}",
                certificate.tbs_certificate.subject
            )));
        }
        let der = certificate
            .to_der()
            .map_err(|e| pki_error("certificate encoding", e))?;
        Ok(KeyPair {
            key,
            certificate,
            signer: std::sync::Arc::new(signer),
            certificate_sha256: sha2::Sha256::digest(&der).into(),
            chain: Vec::new(),
        })
    }
}

/// The gateway's CA, timestamping and receipt-signing identities: the
/// embedded defaults, or the operator's own PKI named in the configuration.
#[derive(Clone)]
pub struct LocalPki {
    pub ca: Certificate,
    pub tsa: KeyPair,
    pub receipt: KeyPair,
    /// Where the certificates live.
    pub files: CertFiles,
}

/// The certificate files a verifier or a bundle needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub ca: PathBuf,
    pub tsa: PathBuf,
    pub receipt: PathBuf,
}

impl CertFiles {
    /// The files in use for `data_dir` with the `[keys]` section `keys`.
    pub fn of(data_dir: &Path, keys: Option<&KeysConfig>) -> CertFiles {
        match keys {
            Some(k) => CertFiles {
                ca: k.ca_cert.clone(),
                tsa: k.tsa_cert.clone(),
                receipt: k.receipt_cert.clone(),
            },
            None => {
                let dir = data_dir.join("keys");
                CertFiles {
                    ca: dir.join("ca.cert.pem"),
                    tsa: dir.join("tsa.cert.pem"),
                    receipt: dir.join("receipt.cert.pem"),
                }
            }
        }
    }
}

/// extendedKeyUsage marked critical, as OpenSSL requires of a TSA.
struct CriticalExtendedKeyUsage(ExtendedKeyUsage);

impl AssociatedOid for CriticalExtendedKeyUsage {
    const OID: const_oid::ObjectIdentifier = ExtendedKeyUsage::OID;
}

impl der::Encode for CriticalExtendedKeyUsage {
    fn encoded_len(&self) -> der::Result<der::Length> {
        self.0.encoded_len()
    }

    fn encode(&self, writer: &mut impl der::Writer) -> der::Result<()> {
        self.0.encode(writer)
    }
}

impl AsExtension for CriticalExtendedKeyUsage {
    fn critical(&self, _: &Name, _: &[x509_cert::ext::Extension]) -> bool {
        true
    }
}

fn pki_error(what: &str, e: impl std::fmt::Display) -> TsaError {
    TsaError::Pki(format!("{what}: {e}"))
}

fn random_serial() -> Result<SerialNumber, TsaError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| pki_error("random serial", e))?;
    // A positive INTEGER without a leading zero byte (RFC 5280 §4.1.2.2).
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::new(&bytes).map_err(|e| pki_error("serial number", e))
}

fn new_key() -> SigningKey {
    SigningKey::random(&mut rand_core::OsRng)
}

fn public_key_info(key: &SigningKey) -> Result<spki::SubjectPublicKeyInfoOwned, TsaError> {
    let der = key
        .verifying_key()
        .to_public_key_der()
        .map_err(|e| pki_error("public key", e))?;
    spki::SubjectPublicKeyInfoOwned::try_from(der.as_bytes())
        .map_err(|e| pki_error("public key", e))
}

fn name(text: &str) -> Result<Name, TsaError> {
    Name::from_str(text).map_err(|e| pki_error("name", e))
}

/// Creates a self-signed CA.
fn make_ca(gateway: &str) -> Result<KeyPair, TsaError> {
    let key = new_key();
    let subject = name(&format!("CN={gateway} local CA,O=mailnotary"))?;
    let builder = CertificateBuilder::new(
        Profile::Root,
        random_serial()?,
        Validity::from_now(YEAR * CA_YEARS as u32).map_err(|e| pki_error("validity", e))?,
        subject,
        public_key_info(&key)?,
        &key,
    )
    .map_err(|e| pki_error("CA certificate", e))?;
    let certificate = builder
        .build::<DerSignature>()
        .map_err(|e| pki_error("CA certificate", e))?;
    KeyPair::new(key, certificate)
}

/// What a certificate issued by the local CA is for.
#[derive(Clone, Copy)]
enum Role {
    /// RFC 3161 timestamps: extendedKeyUsage critical, timeStamping only.
    Timestamping,
    /// CMS receipts: no extendedKeyUsage, so that OpenSSL's default S/MIME
    /// purpose check accepts it.
    Receipts,
}

/// A builder for an end-entity certificate of `key`, valid for the leaf
/// lifetime from now, signed by `signer` in the name of `issuer`.
fn leaf_builder<'s>(
    issuer: Name,
    subject: Name,
    key: &SigningKey,
    signer: &'s SigningKey,
) -> Result<CertificateBuilder<'s, SigningKey>, TsaError> {
    CertificateBuilder::new(
        Profile::Leaf {
            issuer,
            enable_key_agreement: false,
            enable_key_encipherment: false,
        },
        random_serial()?,
        Validity::from_now(YEAR * LEAF_YEARS as u32).map_err(|e| pki_error("validity", e))?,
        subject,
        public_key_info(key)?,
        signer,
    )
    .map_err(|e| pki_error("certificate", e))
}

/// Creates a certificate for `role`, issued by `ca`.
fn make_leaf(gateway: &str, ca: &KeyPair, role: Role) -> Result<KeyPair, TsaError> {
    let key = new_key();
    let what = match role {
        Role::Timestamping => "timestamping",
        Role::Receipts => "receipts",
    };
    let subject = name(&format!("CN={gateway} {what},O=mailnotary"))?;
    let mut builder = leaf_builder(
        ca.certificate.tbs_certificate.subject.clone(),
        subject,
        &key,
        &ca.key,
    )?;
    if let Role::Timestamping = role {
        builder
            .add_extension(&CriticalExtendedKeyUsage(ExtendedKeyUsage(vec![
                ID_KP_TIME_STAMPING,
            ])))
            .map_err(|e| pki_error("TSA certificate", e))?;
    }
    let certificate = builder
        .build::<DerSignature>()
        .map_err(|e| pki_error("certificate", e))?;
    KeyPair::new(key, certificate)
}

/// The STARTTLS identity of the SMTP listener on the embedded defaults:
/// `keys/smtp-tls.cert.pem` and its key, created on first use for
/// `hostname`, `localhost` and the loopback addresses. It is issued by the data directory's local
/// CA when there is one, so that a client can trust that CA; otherwise it
/// is self-signed. Returns the certificate and key files.
pub fn smtp_tls_identity(data_dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf), TsaError> {
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    let dir = data_dir.join("keys");
    let cert_path = dir.join("smtp-tls.cert.pem");
    let key_path = dir.join("smtp-tls.key.pem");
    if cert_path.exists() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| pki_error(&format!("cannot create {}", dir.display()), e))?;
    let ca = match (
        load_key(&dir.join("ca.key.pem")),
        load_cert(&dir.join("ca.cert.pem")),
    ) {
        (Ok(key), Ok(cert)) => Some(KeyPair::new(key, cert)?),
        _ => None,
    };
    let key = new_key();
    let subject = name(&format!("CN={hostname},O=mailnotary"))?;
    let issuer = match &ca {
        Some(ca) => ca.certificate.tbs_certificate.subject.clone(),
        None => subject.clone(),
    };
    let signer = ca.as_ref().map(|ca| &ca.key).unwrap_or(&key);
    let mut builder = leaf_builder(issuer, subject, &key, signer)?;
    let mut names = vec![hostname.to_string()];
    if hostname != "localhost" {
        names.push("localhost".into());
    }
    let mut names = names
        .into_iter()
        .map(|n| der::asn1::Ia5String::new(&n).map(GeneralName::DnsName))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pki_error("TLS host name", e))?;
    // Clients that connect to the loopback address by number check it too.
    for ip in [
        &[127u8, 0, 0, 1][..],
        &std::net::Ipv6Addr::LOCALHOST.octets()[..],
    ] {
        names.push(GeneralName::IpAddress(
            der::asn1::OctetString::new(ip).map_err(|e| pki_error("TLS address", e))?,
        ));
    }
    builder
        .add_extension(&SubjectAltName(names))
        .map_err(|e| pki_error("TLS certificate", e))?;
    builder
        .add_extension(&ExtendedKeyUsage(vec![ID_KP_SERVER_AUTH]))
        .map_err(|e| pki_error("TLS certificate", e))?;
    let certificate = builder
        .build::<DerSignature>()
        .map_err(|e| pki_error("TLS certificate", e))?;
    save(&dir, "smtp-tls", &KeyPair::new(key, certificate)?)?;
    Ok((cert_path, key_path))
}

/// id-kp-serverAuth (RFC 5280 §4.2.1.12).
const ID_KP_SERVER_AUTH: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");

/// Writes `bytes` to a new file; `secret` files get mode 0600 from the
/// moment they exist, so that no other user can ever read them.
fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<(), TsaError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options
        .open(path)
        .map_err(|e| pki_error(&format!("cannot create {}", path.display()), e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| pki_error(&format!("cannot write {}", path.display()), e))
}

fn save(dir: &Path, stem: &str, pair: &KeyPair) -> Result<(), TsaError> {
    let key_pem = pair
        .key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| pki_error("key encoding", e))?;
    let cert_pem = pair
        .certificate
        .to_pem(LineEnding::LF)
        .map_err(|e| pki_error("certificate encoding", e))?;
    write_new(
        &dir.join(format!("{stem}.key.pem")),
        key_pem.as_bytes(),
        true,
    )?;
    write_new(
        &dir.join(format!("{stem}.cert.pem")),
        cert_pem.as_bytes(),
        false,
    )
}

fn load_key(path: &Path) -> Result<SigningKey, TsaError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| pki_error(&format!("cannot read {}", path.display()), e))?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| {
        pki_error(
            &format!("{} is not a PKCS#8 PEM P-256 private key", path.display()),
            e,
        )
    })
}

fn load_cert(path: &Path) -> Result<Certificate, TsaError> {
    let text = std::fs::read(path)
        .map_err(|e| pki_error(&format!("cannot read {}", path.display()), e))?;
    Certificate::from_pem(&text)
        .map_err(|e| pki_error(&format!("{} is not a PEM certificate", path.display()), e))
}

impl LocalPki {
    /// Loads the local PKI from `data_dir/keys`, creating what is missing:
    /// the CA on first use, and each certificate it issues.
    pub fn open_or_create(data_dir: &Path, gateway: &str) -> Result<LocalPki, TsaError> {
        let dir = data_dir.join("keys");
        std::fs::create_dir_all(&dir)
            .map_err(|e| pki_error(&format!("cannot create {}", dir.display()), e))?;
        let pair = |stem: &str| -> Result<KeyPair, TsaError> {
            KeyPair::new(
                load_key(&dir.join(format!("{stem}.key.pem")))?,
                load_cert(&dir.join(format!("{stem}.cert.pem")))?,
            )
        };
        let exists = |stem: &str| dir.join(format!("{stem}.cert.pem")).exists();
        if !exists("ca") {
            save(&dir, "ca", &make_ca(gateway)?)?;
        }
        for (stem, role) in [("tsa", Role::Timestamping), ("receipt", Role::Receipts)] {
            if !exists(stem) {
                save(&dir, stem, &make_leaf(gateway, &pair("ca")?, role)?)?;
            }
        }
        Ok(LocalPki {
            ca: load_cert(&dir.join("ca.cert.pem"))?,
            tsa: pair("tsa")?,
            receipt: pair("receipt")?,
            files: CertFiles::of(data_dir, None),
        })
    }

    /// The operator's PKI when the configuration names one, else the
    /// embedded defaults of `data_dir` (created on first use).
    pub fn open(
        data_dir: &Path,
        gateway: &str,
        keys: Option<&KeysConfig>,
    ) -> Result<LocalPki, TsaError> {
        match keys {
            Some(keys) => LocalPki::load(keys),
            None => LocalPki::open_or_create(data_dir, gateway),
        }
    }

    /// Loads the PEM (or DER) files named in `[keys]`. A certificate file
    /// may hold the certificate followed by its intermediate CAs, which
    /// are then embedded in every signature. Keys are PKCS#8 P-256.
    pub fn load(keys: &KeysConfig) -> Result<LocalPki, TsaError> {
        let ca = read_chain(&keys.ca_cert)?.remove(0);
        let pair = |cert: &Path, key: &Path| -> Result<KeyPair, TsaError> {
            warn_if_readable_by_others(key);
            let mut chain = read_chain(cert)?;
            let leaf = chain.remove(0);
            let mut pair = KeyPair::new(load_key(key)?, leaf).map_err(|e| {
                TsaError::Pki(format!("{} and {}: {e}", cert.display(), key.display()))
            })?;
            pair.chain = chain;
            Ok(pair)
        };
        let tsa = pair(&keys.tsa_cert, &keys.tsa_key)?;
        check_timestamping_usage(&tsa.certificate)
            .map_err(|e| TsaError::Pki(format!("{}: {e}", keys.tsa_cert.display())))?;
        Ok(LocalPki {
            ca,
            tsa,
            receipt: pair(&keys.receipt_cert, &keys.receipt_key)?,
            files: CertFiles::of(Path::new(""), Some(keys)),
        })
    }

    /// The CA certificate's file, which verifiers need.
    pub fn ca_path(&self) -> PathBuf {
        self.files.ca.clone()
    }
}

/// The certificates of a file, the first one being the subject.
fn read_chain(path: &Path) -> Result<Vec<Certificate>, TsaError> {
    let bytes = std::fs::read(path)
        .map_err(|e| pki_error(&format!("cannot read {}", path.display()), e))?;
    crate::signing::read_certificates(&bytes).map_err(|e| {
        pki_error(
            &format!("{} holds no usable certificate", path.display()),
            e,
        )
    })
}

/// A key file others can read is a secret already half lost: say so.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %path.display(),
                "the private key file is readable by other users; chmod 600 it"
            );
        }
    }
}

/// RFC 3161 §2.3, as OpenSSL enforces it: extendedKeyUsage present,
/// critical, and holding only id-kp-timeStamping.
fn check_timestamping_usage(cert: &Certificate) -> Result<(), String> {
    use der::Decode;
    let extension = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == ExtendedKeyUsage::OID)
        .ok_or("a TSA certificate needs an extendedKeyUsage extension (RFC 3161 §2.3)")?;
    let usage = ExtendedKeyUsage::from_der(extension.extn_value.as_bytes())
        .map_err(|e| format!("its extendedKeyUsage does not decode: {e}"))?;
    if !extension.critical || usage.0 != [ID_KP_TIME_STAMPING] {
        return Err(
            "a TSA certificate's extendedKeyUsage must be critical and hold only \
                    timeStamping (RFC 3161 §2.3); OpenSSL refuses its tokens otherwise"
                .into(),
        );
    }
    Ok(())
}

//! Authenticode signatures of PE images (UKIs and other EFI binaries) for
//! UEFI Secure Boot: what firmware checks against its `db` before it starts
//! an image.
//!
//! Owns: the Authenticode digest of a PE file (streamed from the file: the
//! headers without the checksum and the certificate table entry, the
//! sections in file order, then what follows them), the
//! `SpcIndirectDataContent` that carries it, the PKCS#7 SignedData around it
//! (RSA PKCS#1 v1.5 with SHA-256, the signer's certificate included, no
//! signing time, so signing is byte-reproducible), and the certificate table
//! appended to the file. The CMS structures come from `cms` (RustCrypto);
//! the digest and the two small Microsoft structures are written here, as no
//! kept crate signs PE files on stable Rust (`sbsign` stamps a time). Checked
//! by `sbverify` in the tests. Must not know what the image is.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use cms::builder::{SignedDataBuilder, SignerInfoBuilder};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier};
use der::{Decode, DecodePem, Encode};
use sha2::{Digest as _, Sha256};
use x509_cert::spki::AlgorithmIdentifierOwned;

/// `1.3.6.1.4.1.311.2.1.4`: SPC_INDIRECT_DATA_OBJID.
const SPC_INDIRECT_DATA: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.4");
/// DER of the OID `1.3.6.1.4.1.311.2.1.15` (SPC_PE_IMAGE_DATAOBJ).
const SPC_PE_IMAGE_DATA: &[u8] = &[
    0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x01, 0x0f,
];
/// DER of the OID `2.16.840.1.101.3.4.2.1` (SHA-256).
const SHA256_OID_DER: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
];
const SHA256: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the signing key is no RSA private key in PEM (PKCS#8 or PKCS#1, not encrypted)")]
    Key,
    #[error("the signing certificate is no X.509 certificate in PEM: {0}")]
    Cert(String),
    #[error("the image is no PE32+ file: {0}")]
    NotPe(&'static str),
    #[error("the image is signed already")]
    Signed,
    #[error("cannot make the signature: {0}")]
    Cms(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A key and its certificate, as the firmware's `db` must trust them.
pub struct Signer {
    key: rsa::pkcs1v15::SigningKey<Sha256>,
    cert: x509_cert::Certificate,
}

impl Signer {
    /// From PEM texts: an unencrypted RSA key and an X.509 certificate.
    pub fn from_pem(key: &str, cert: &str) -> Result<Self, SignError> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(key)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(key))
            .map_err(|_| SignError::Key)?;
        let cert =
            x509_cert::Certificate::from_pem(cert).map_err(|e| SignError::Cert(e.to_string()))?;
        Ok(Signer {
            key: rsa::pkcs1v15::SigningKey::new(key),
            cert,
        })
    }
}

/// Where the Authenticode digest skips and what it hashes, from the headers.
struct Layout {
    /// The checksum field's offset.
    checksum: u64,
    /// The certificate table data directory entry's offset.
    cert_dir: u64,
    /// The same, to read it from the headers.
    cert_dir_at: usize,
    size_of_headers: u64,
    /// (file offset, size) of each section with data, in file order.
    sections: Vec<(u64, u64)>,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, SignError> {
    super::pe::u16_at(b, at).ok_or(SignError::NotPe("truncated headers"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, SignError> {
    super::pe::u32_at(b, at).ok_or(SignError::NotPe("truncated headers"))
}

/// Reads the layout from the first bytes of the file.
fn layout(h: &[u8]) -> Result<Layout, SignError> {
    if h.get(0..2) != Some(b"MZ") {
        return Err(SignError::NotPe("no MZ header"));
    }
    let pe = u32_at(h, 0x3c)? as usize;
    if h.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err(SignError::NotPe("no PE signature"));
    }
    let nsections = usize::from(u16_at(h, pe + 6)?);
    let opt = pe + 24;
    if u16_at(h, opt)? != 0x20b {
        return Err(SignError::NotPe("not PE32+"));
    }
    if u32_at(h, opt + 108)? < 5 {
        return Err(SignError::NotPe("no certificate table directory"));
    }
    let table = opt + usize::from(u16_at(h, pe + 20)?);
    let mut sections = Vec::new();
    for i in 0..nsections {
        let s = table + 40 * i;
        let (size, at) = (u32_at(h, s + 16)?, u32_at(h, s + 20)?);
        if size > 0 {
            sections.push((u64::from(at), u64::from(size)));
        }
    }
    sections.sort_unstable();
    Ok(Layout {
        checksum: (opt + 64) as u64,
        cert_dir: (opt + 144) as u64,
        cert_dir_at: opt + 144,
        size_of_headers: u64::from(u32_at(h, opt + 60)?),
        sections,
    })
}

/// Hashes `len` bytes of `file` from `at`.
fn hash_range(h: &mut Sha256, file: &File, at: u64, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0;
    while done < len {
        let n = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(0);
        file.read_exact_at(&mut buf[..n], at + done)?;
        h.update(&buf[..n]);
        done += n as u64;
    }
    Ok(())
}

/// The Authenticode SHA-256 digest of the unsigned PE `file` of `len` bytes.
fn digest(file: &File, l: &Layout, len: u64) -> io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    hash_range(&mut h, file, 0, l.checksum)?;
    hash_range(&mut h, file, l.checksum + 4, l.cert_dir - l.checksum - 4)?;
    hash_range(
        &mut h,
        file,
        l.cert_dir + 8,
        l.size_of_headers - l.cert_dir - 8,
    )?;
    let mut hashed = l.size_of_headers;
    for (at, size) in &l.sections {
        hash_range(&mut h, file, *at, *size)?;
        hashed += size;
    }
    if len > hashed {
        hash_range(&mut h, file, hashed, len - hashed)?;
    }
    Ok(h.finalize().into())
}

/// A DER tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    match u8::try_from(n) {
        Ok(short) if short < 0x80 => out.push(short),
        _ => {
            let bytes: Vec<u8> = n
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            // At most 8 length bytes: 0x81..=0x88.
            out.push(0x80 | u8::try_from(bytes.len()).unwrap_or(8));
            out.extend(bytes);
        }
    }
    out.extend_from_slice(content);
    out
}

/// `SpcIndirectDataContent` for a PE image with `digest`: the
/// `SPC_PE_IMAGE_DATAOBJ` attribute (no flags, the obsolete file link
/// every signer writes), then the SHA-256 `DigestInfo`.
fn indirect_data(digest: &[u8; 32]) -> Vec<u8> {
    let obsolete: Vec<u8> = "<<<Obsolete>>>"
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    let link = tlv(0xa2, &tlv(0x80, &obsolete));
    let pe_image = tlv(0x30, &[&[0x03, 0x01, 0x00][..], &tlv(0xa0, &link)].concat());
    let attr = tlv(0x30, &[SPC_PE_IMAGE_DATA, &pe_image].concat());
    let alg = tlv(0x30, &[SHA256_OID_DER, &[0x05, 0x00]].concat());
    let digest_info = tlv(0x30, &[alg, tlv(0x04, digest)].concat());
    tlv(0x30, &[attr, digest_info].concat())
}

/// The PKCS#7 SignedData over `content` (an `SpcIndirectDataContent`).
fn signed_data(signer: &Signer, content: &[u8]) -> Result<Vec<u8>, SignError> {
    let cms = |e: &dyn std::fmt::Display| SignError::Cms(e.to_string());
    let eci = EncapsulatedContentInfo {
        econtent_type: SPC_INDIRECT_DATA,
        econtent: Some(der::Any::from_der(content).map_err(|e| cms(&e))?),
    };
    let sha256 = AlgorithmIdentifierOwned {
        oid: SHA256,
        parameters: None,
    };
    let tbs = &signer.cert.tbs_certificate;
    let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: tbs.issuer.clone(),
        serial_number: tbs.serial_number.clone(),
    });
    let info = SignerInfoBuilder::new(&signer.key, sid, sha256.clone(), &eci, None)
        .map_err(|e| cms(&e))?;
    let built = SignedDataBuilder::new(&eci)
        .add_digest_algorithm(sha256)
        .map_err(|e| cms(&e))?
        .add_certificate(CertificateChoices::Certificate(signer.cert.clone()))
        .map_err(|e| cms(&e))?
        .add_signer_info::<_, rsa::pkcs1v15::Signature>(info)
        .map_err(|e| cms(&e))?
        .build()
        .map_err(|e| cms(&e))?;
    built.to_der().map_err(|e| cms(&e))
}

/// Signs the PE image in `file` (opened for reading and writing) in place:
/// pads it to 8 bytes, appends the certificate table holding the signature
/// and points the header's certificate table entry at it.
pub fn sign(file: &File, signer: &Signer) -> Result<(), SignError> {
    let mut head = vec![0u8; 4096];
    let len = file.metadata()?.len();
    let n = usize::try_from(len.min(4096)).unwrap_or(0);
    file.read_exact_at(&mut head[..n], 0)?;
    let l = layout(&head[..n])?;
    if u32_at(&head, l.cert_dir_at + 4)? != 0 {
        return Err(SignError::Signed);
    }
    if l.size_of_headers > len || l.sections.iter().any(|(at, size)| at + size > len) {
        return Err(SignError::NotPe("sections past the end of the file"));
    }
    let len = len.div_ceil(8) * 8;
    file.set_len(len)?;
    let d = digest(file, &l, len)?;
    let pkcs7 = signed_data(signer, &indirect_data(&d))?;
    let size = (8 + pkcs7.len()).div_ceil(8) * 8;
    let size32 = u32::try_from(size).map_err(|_| SignError::NotPe("signature too large"))?;
    let mut table = Vec::with_capacity(size);
    table.extend_from_slice(&size32.to_le_bytes());
    table.extend_from_slice(&0x0200u16.to_le_bytes());
    table.extend_from_slice(&0x0002u16.to_le_bytes());
    table.extend_from_slice(&pkcs7);
    table.resize(size, 0);
    file.write_all_at(&table, len)?;
    let at = u32::try_from(len).map_err(|_| SignError::NotPe("image over 4 GiB"))?;
    let mut entry = [0u8; 8];
    entry[..4].copy_from_slice(&at.to_le_bytes());
    entry[4..].copy_from_slice(&size32.to_le_bytes());
    file.write_all_at(&entry, l.cert_dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_der() {
        assert_eq!(tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = tlv(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn the_indirect_data_holds_the_digest_after_its_header() {
        let d = [0x5a; 32];
        let v = indirect_data(&d);
        assert_eq!(v[0], 0x30);
        assert_eq!(&v[v.len() - 32..], &d);
        assert!(v
            .windows(SPC_PE_IMAGE_DATA.len())
            .any(|w| w == SPC_PE_IMAGE_DATA));
        der::Any::from_der(&v).expect("valid DER");
    }
}

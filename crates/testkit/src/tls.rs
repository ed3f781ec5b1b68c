//! Certificates for tests: a CA made in the test and certificates it signs for the loopback
//! host (`rcgen`), so HTTPS is tested without a public CA.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A day: year, month, day (UTC).
pub type Day = (i32, u8, u8);

/// A certificate authority that exists only in this test.
#[derive(Debug)]
pub struct TestCa(CertifiedIssuer<'static, KeyPair>);

/// A certificate the [`TestCa`] signed, for `127.0.0.1` and `localhost`.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM private key.
    pub key_pem: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

impl TestCa {
    /// A new CA.
    ///
    /// # Panics
    ///
    /// When key generation fails.
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "obol test CA");
        let key = KeyPair::generate().expect("a CA key");
        Self(CertifiedIssuer::self_signed(params, key).expect("the CA certificate"))
    }

    /// The CA certificate, PEM (what a client trusts).
    pub fn pem(&self) -> String {
        self.0.pem()
    }

    /// A new certificate for `127.0.0.1` and `localhost`, named `name`.
    ///
    /// # Panics
    ///
    /// When key generation or signing fails.
    pub fn leaf(&self, name: &str) -> Leaf {
        self.signed(name, None)
    }

    /// Like [`TestCa::leaf`], valid from the start of day `from` to the start of day `until`
    /// (year, month, day; UTC).
    ///
    /// # Panics
    ///
    /// When key generation or signing fails.
    pub fn leaf_valid(&self, name: &str, from: Day, until: Day) -> Leaf {
        self.signed(name, Some((from, until)))
    }

    fn signed(&self, name: &str, validity: Option<(Day, Day)>) -> Leaf {
        let key = KeyPair::generate().expect("a key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("certificate parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        if let Some(((fy, fm, fd), (uy, um, ud))) = validity {
            params.not_before = rcgen::date_time_ymd(fy, fm, fd);
            params.not_after = rcgen::date_time_ymd(uy, um, ud);
        }
        let cert = params
            .signed_by(&key, &self.0)
            .expect("a signed certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

//! SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms
//! against a file of `user:password` lines.
use std::path::Path;
use subtle::ConstantTimeEq;

/// A users file larger than this is refused (it is a list of accounts, not data).
const MAX_USERS_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read users file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("users file {path} is larger than 1 MiB")]
    TooLarge { path: String },
}

/// `user:password` lines; empty lines and lines starting with `#` are skipped.
pub struct Users {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Users {
    /// Read at each authentication, so a rotated Secret applies at once.
    pub async fn load(path: &Path) -> Result<Users, UsersError> {
        let shown = path.display().to_string();
        let meta =
            tokio::fs::metadata(path).await.map_err(|source| UsersError::Read { path: shown.clone(), source })?;
        if meta.len() > MAX_USERS_FILE {
            return Err(UsersError::TooLarge { path: shown });
        }
        let text = tokio::fs::read(path).await.map_err(|source| UsersError::Read { path: shown, source })?;
        Ok(Users::parse(&text))
    }

    pub fn parse(text: &[u8]) -> Users {
        let entries = text
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
            .filter_map(|l| {
                let colon = l.iter().position(|&b| b == b':')?;
                Some((l[..colon].to_vec(), l[colon + 1..].to_vec()))
            })
            .collect();
        Users { entries }
    }

    /// Every entry is compared, in constant time per entry, so the time taken
    /// does not tell which user exists or how much of a password matched.
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        let mut ok = subtle::Choice::from(0);
        for (u, p) in &self.entries {
            ok |= u.as_slice().ct_eq(user) & p.as_slice().ct_eq(password);
        }
        ok.into()
    }
}

/// RFC 4616 message `[authzid] NUL authcid NUL passwd`. An authorization
/// identity other than the authentication identity is not allowed.
pub fn parse_plain(decoded: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut parts = decoded.split(|&b| b == 0);
    let (authz, authc, pass) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || authc.is_empty() || !(authz.is_empty() || authz == authc) {
        return None;
    }
    Some((authc.to_vec(), pass.to_vec()))
}

/// Standard base64 (RFC 4648 §4) with padding, as RFC 4954 requires.
/// Hand-written: the workspace has no base64 crate and AUTH needs only this
/// strict decoder.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (n, quad) in bytes.chunks(4).enumerate() {
        let last = n == bytes.len() / 4 - 1;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut acc = 0u32;
        for &c in &quad[..4 - pad] {
            acc = (acc << 6) | value(c)?;
        }
        acc <<= 6 * pad as u32;
        let three = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        out.extend_from_slice(&three[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(decode_base64("AHVzZXIAcGFzcw==").as_deref(), Some(&b"\0user\0pass"[..]));
        assert_eq!(decode_base64("VXNlcm5hbWU6").as_deref(), Some(&b"Username:"[..]));
        assert_eq!(decode_base64("").as_deref(), Some(&b""[..]));
        assert_eq!(decode_base64("YQ=").as_deref(), None);
        assert_eq!(decode_base64("YQ==YQ==").as_deref(), None);
        assert_eq!(decode_base64("Y!==").as_deref(), None);
    }

    #[test]
    fn plain_and_users() {
        assert_eq!(parse_plain(b"\0user\0pw"), Some((b"user".to_vec(), b"pw".to_vec())));
        assert_eq!(parse_plain(b"user\0user\0pw"), Some((b"user".to_vec(), b"pw".to_vec())));
        assert_eq!(parse_plain(b"admin\0user\0pw"), None);
        assert_eq!(parse_plain(b"\0user"), None);
        let users = Users::parse(b"# accounts\r\nalice:s3cret:with colon\r\n\r\nbob:pw\n");
        assert!(users.check(b"alice", b"s3cret:with colon"));
        assert!(users.check(b"bob", b"pw"));
        assert!(!users.check(b"bob", b"pw2"));
        assert!(!users.check(b"carol", b"pw"));
    }
}

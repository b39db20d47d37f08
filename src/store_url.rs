//! `--store URL` (`--rate-store`, its older name), a value: a checked `redis://` URL that is
//! shown without its password. A leaf: it imports nothing of the crate.

use std::fmt;
use std::str::FromStr;

use percent_encoding::percent_decode_str;
use ureq::http::Uri;

/// The longest a store's error may be in a warning.
const MAX_SHOWN: usize = 300;

/// `--store`: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, checked. Shown (and debugged)
/// without the user information, which may hold a password.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) db: u32,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
}

impl FromStr for StoreUrl {
    type Err = String;

    /// Says what is wrong without quoting the URL: it may hold a password.
    fn from_str(s: &str) -> Result<StoreUrl, String> {
        let uri: Uri = s
            .parse()
            .map_err(|_| "not a URL (expected redis://HOST:PORT[/DB])".to_string())?;
        match uri.scheme_str() {
            Some("redis") => {}
            Some("rediss") => {
                return Err(
                    "rediss:// (TLS) is not supported: use redis:// on a private \
                            network, or a TLS tunnel to the server"
                        .into(),
                )
            }
            _ => return Err("the scheme must be redis://".into()),
        }
        let authority = uri.authority().ok_or("no host")?;
        if uri.query().is_some() || s.contains('#') {
            return Err("a query or fragment has no place in it".into());
        }
        let (userinfo, hostport) = match authority.as_str().rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority.as_str()),
        };
        let host = authority.host();
        if host.is_empty() {
            return Err("no host".into());
        }
        // The URI parser lets a port out of range or not a number pass as no port.
        let port = match hostport[host.len()..].strip_prefix(':') {
            None => 6379,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|&port| port > 0)
                .ok_or("the port must be a number from 1 to 65535")?,
        };
        let db = match uri.path().trim_start_matches('/') {
            "" => 0,
            db => db
                .parse()
                .map_err(|_| "the path must be a database number, such as /0".to_string())?,
        };
        let decode = |part: &str| {
            percent_decode_str(part)
                .decode_utf8()
                .map(|p| p.into_owned())
                .map_err(|_| "the user information is not valid UTF-8".to_string())
        };
        let (username, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
            Some((user, password)) => (
                Some(decode(user)?).filter(|u| !u.is_empty()),
                Some(decode(password)?).filter(|p| !p.is_empty()),
            ),
            None => (None, None),
        };
        // Without a password there is no AUTH: a user alone would silently log in as default.
        if username.is_some() && password.is_none() {
            return Err("a user name needs a password: redis://USER:PASSWORD@HOST".into());
        }
        Ok(StoreUrl {
            host: host.trim_start_matches('[').trim_end_matches(']').into(),
            port,
            db,
            username,
            password,
        })
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = if self.username.is_some() || self.password.is_some() {
            "***@"
        } else {
            ""
        };
        match self.host.contains(':') {
            true => write!(f, "redis://{auth}[{}]:{}/{}", self.host, self.port, self.db),
            false => write!(f, "redis://{auth}{}:{}/{}", self.host, self.port, self.db),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

impl StoreUrl {
    /// What went wrong, as a warning may show it: on one line (a server's text may hold line
    /// breaks, or control characters for the terminal), not too long, and with the password,
    /// should a server or library ever echo it, replaced by `***`.
    pub fn shown(&self, why: impl fmt::Display) -> String {
        let mut text = why.to_string();
        if let Some(password) = &self.password {
            text = text.replace(password.as_str(), "***");
        }
        let text = text.replace(|c: char| c.is_control(), " ");
        let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some((cut, _)) = text.char_indices().nth(MAX_SHOWN) {
            text.truncate(cut);
            text.push_str("...");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Result<StoreUrl, String> {
        s.parse()
    }

    #[test]
    fn urls_name_a_host_an_optional_port_and_database() {
        let u = url("redis://10.0.0.5:6380/2").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("10.0.0.5", 6380, 2));
        assert_eq!(u.to_string(), "redis://10.0.0.5:6380/2");
        assert_eq!(
            url("redis://cache.internal").unwrap().to_string(),
            "redis://cache.internal:6379/0"
        );
        assert_eq!(
            url("redis://[::1]:7000/").unwrap().to_string(),
            "redis://[::1]:7000/0"
        );
    }

    #[test]
    fn a_password_is_kept_for_the_server_and_never_shown() {
        let u = url("redis://:s%40cret@h:1/0").unwrap();
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert_eq!(u.username, None);
        assert_eq!(u.to_string(), "redis://***@h:1/0");
        assert!(!format!("{u:?}").contains("cret"));
        assert_eq!(u.shown("WRONGPASS s@cret"), "WRONGPASS ***");
        let u = url("redis://ci:pw@h").unwrap();
        assert_eq!(u.username.as_deref(), Some("ci"));
        assert_eq!(u.password.as_deref(), Some("pw"));
    }

    #[test]
    fn a_stores_error_is_shown_on_one_short_line() {
        let u = url("redis://h").unwrap();
        assert_eq!(
            u.shown("Parse error:\r\n  Unexpected `x`\n\tExpected `\\r\\n`\u{1b}[31m"),
            "Parse error: Unexpected `x` Expected `\\r\\n` [31m"
        );
        let long = u.shown("é".repeat(1000));
        assert_eq!(long.chars().count(), MAX_SHOWN + 3);
        assert!(long.ends_with("é..."));
    }

    #[test]
    fn bad_urls_say_why_without_quoting_them() {
        for (bad, why) in [
            ("", "not a URL"),
            ("localhost:6379", "scheme"),
            ("http://h:1", "scheme"),
            ("rediss://h:1", "TLS"),
            ("redis://h:0", "port"),
            ("redis://h:/0", "port"),
            ("redis://h:99999", "port"),
            ("redis://h:x", "port"),
            ("redis://h:1/x", "database number"),
            ("redis://h:1/0/1", "database number"),
            ("redis://h:1/0?x=1", "query"),
            ("redis://h:1/0#f", "fragment"),
            ("redis://:pw@:1", "host"),
            ("redis://ci@h:1", "needs a password"),
            ("redis://ci:@h:1", "needs a password"),
        ] {
            let err = url(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(!err.contains("pw"), "{bad:?}: {err}");
        }
    }
}

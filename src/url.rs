//! A strict reading of the URLs `bnx` is given (the API origin, a proxy), so that what is checked
//! is exactly where the request goes: a port past 65535 is an error here, never a port the HTTP
//! stack wraps or drops. Only the shape these URLs can take is accepted:
//! `scheme://[userinfo@]host[:port][/path][?query][#fragment]`.

use std::fmt;
use std::net::Ipv6Addr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url<'a> {
    /// Lower-cased.
    pub scheme: String,
    pub userinfo: Option<&'a str>,
    /// Lower-cased; an IPv6 address keeps its brackets.
    pub host: String,
    pub port: Option<u16>,
    /// As written, empty or starting with `/`.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub fragment: Option<&'a str>,
}

impl<'a> Url<'a> {
    /// Reads `s`, or says why it is not a URL of that shape. The reason never quotes user
    /// information, a query or a fragment.
    pub fn parse(s: &'a str) -> Result<Url<'a>, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or("it has no scheme such as https://")?;
        let mut chars = scheme.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            || !chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Err("the scheme is not valid".into());
        }
        // User information is found before anything else, as `masked` finds it, so that a `#`
        // or `?` in a password can never make part of it look like a host, port or path.
        let (userinfo, rest) = match rest[..rest.find('/').unwrap_or(rest.len())].rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (rest, fragment) = split(rest, '#');
        let (rest, query) = split(rest, '?');
        let (host_port, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = host_and_port(host_port)?;
        if let Some(c) = path.chars().find(|&c| !is_path_char(c)) {
            return Err(format!(
                "the path holds {c:?}, which a URL path cannot hold"
            ));
        }
        if !percent_escapes_are_complete(path) {
            return Err("the path holds a % that is not followed by two hex digits".into());
        }
        Ok(Url {
            scheme: scheme.to_ascii_lowercase(),
            userinfo,
            host,
            port,
            path,
            query,
            fragment,
        })
    }

    /// The port, or the scheme's default one.
    pub fn port_or_default(&self) -> Option<u16> {
        self.port.or(match self.scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        })
    }

    /// The host without an IPv6 address's brackets.
    pub fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// `scheme://host[:port]`, the port only when it is not the scheme's default.
    pub fn origin(&self) -> String {
        let default = Url {
            port: None,
            ..self.clone()
        }
        .port_or_default();
        match self.port.filter(|&p| Some(p) != default) {
            Some(port) => format!("{}://{}:{port}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

impl fmt::Display for Url<'_> {
    /// The URL for messages: user information, query and fragment shown as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        if self.userinfo.is_some() {
            f.write_str("***@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        f.write_str(self.path)?;
        if self.query.is_some() {
            f.write_str("?***")?;
        }
        if self.fragment.is_some() {
            f.write_str("#***")?;
        }
        Ok(())
    }
}

/// `s` for a message when it may not even parse: whatever could be user information (before
/// the last `@` of the authority), a query or a fragment is shown as `***`.
pub fn masked(s: &str) -> String {
    let start = s.find("://").map_or(0, |i| i + 3);
    let authority_end = s[start..].find('/').map_or(s.len(), |i| start + i);
    let (head, authority, tail) = (&s[..start], &s[start..authority_end], &s[authority_end..]);
    let mut shown = head.to_string();
    let after_userinfo = match authority.rfind('@') {
        Some(at) => {
            shown.push_str("***@");
            &authority[at + 1..]
        }
        None => authority,
    };
    let rest = format!("{after_userinfo}{tail}");
    match rest.find(['?', '#']) {
        Some(i) => {
            shown.push_str(&rest[..=i]);
            shown.push_str("***");
        }
        None => shown.push_str(&rest),
    }
    shown
}

fn split(s: &str, at: char) -> (&str, Option<&str>) {
    match s.split_once(at) {
        Some((before, after)) => (before, Some(after)),
        None => (s, None),
    }
}

fn host_and_port(s: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']').ok_or("the IPv6 address has no closing ]")?;
        let (host, rest) = s.split_at(end + 1);
        if host[1..end].parse::<Ipv6Addr>().is_err() {
            return Err(format!("{host} is not an IPv6 address"));
        }
        match rest {
            "" => (host, None),
            _ => match rest.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err("only a :port may follow the IPv6 address".into()),
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("it has no host".into());
    }
    if !host.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        return Err(format!(
            "{host:?} is not a host name (a name that is not ASCII goes in its xn-- form)"
        ));
    }
    let port = port.map(parse_port).transpose()?;
    Ok((host.to_ascii_lowercase(), port))
}

fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err("the port after : is empty".into());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("the port {port:?} is not a number"));
    }
    port.parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("the port {port} is not between 1 and 65535"))
}

/// RFC 3986's `pchar` and `/`: unreserved, sub-delims, `:`, `@` and percent escapes.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/%".contains(c)
}

fn percent_escapes_are_complete(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_read_strictly() {
        let url = Url::parse("HTTPS://User:pw@API.Example:8443/gw/x?q=1#f").unwrap();
        assert_eq!(url.scheme, "https");
        assert_eq!(url.userinfo, Some("User:pw"));
        assert_eq!(url.host, "api.example");
        assert_eq!(url.port, Some(8443));
        assert_eq!(url.path, "/gw/x");
        assert_eq!((url.query, url.fragment), (Some("q=1"), Some("f")));
        assert_eq!(url.to_string(), "https://***@api.example:8443/gw/x?***#***");
        let v6 = Url::parse("http://[::1]:80").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.bare_host(), v6.port),
            ("[::1]", "::1", Some(80))
        );
        assert_eq!(v6.origin(), "http://[::1]");
        assert_eq!(Url::parse("https://h:443/").unwrap().origin(), "https://h");
        assert_eq!(Url::parse("https://h:0443").unwrap().port, Some(443));
    }

    #[test]
    fn ports_out_of_range_or_empty_are_refused() {
        for (url, why) in [
            ("http://127.0.0.1:99999", "not between 1 and 65535"),
            ("http://127.0.0.1:65616", "not between 1 and 65535"),
            ("http://127.0.0.1:0", "not between 1 and 65535"),
            ("http://127.0.0.1:99999999999999999999999", "not between"),
            ("http://127.0.0.1:", "empty"),
            ("http://127.0.0.1:8o", "not a number"),
            ("http://127.0.0.1:+80", "not a number"),
            ("http://[::1]:", "empty"),
        ] {
            let err = Url::parse(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn malformed_urls_are_refused() {
        for url in [
            "h.example",
            "://h",
            "1http://h",
            "https://",
            "https://:80",
            "https://user@",
            "https://[::1",
            "https://[nope]",
            "https://[::1]x",
            "https://h st",
            "https://hé.example",
            "https://h/a b",
            "https://h/%zz",
            "https://h/%4",
            "https://h/\"",
        ] {
            assert!(Url::parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn masked_hides_userinfo_query_and_fragment_even_when_malformed() {
        assert_eq!(
            masked("https://u:p@h:99999/x?t=1"),
            "https://***@h:99999/x?***"
        );
        assert_eq!(masked("https://u:p#w@h"), "https://***@h");
        let tricky = Url::parse("https://u:p#w@h:1?x").unwrap();
        assert_eq!(
            (tricky.userinfo, tricky.host.as_str()),
            (Some("u:p#w"), "h")
        );
        assert_eq!(masked("https://h#frag"), "https://h#***");
        assert_eq!(masked("u:p@h"), "***@h");
        assert_eq!(masked("https://h/a"), "https://h/a");
    }
}

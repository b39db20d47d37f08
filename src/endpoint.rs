//! Where requests go: the API origin (`--base-url`) and the agent, made into the chat
//! endpoint's URL by the rules of SPEC "Base URL". A leaf: it imports only the crate's other
//! value types (`url`, and `wire`'s path), and says what it refuses without an exit code,
//! which is the caller's to give.

use std::fmt;
use std::net::IpAddr;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ureq::http::Uri;

use crate::url::{self, Url};
use crate::wire;

pub const DEFAULT_BASE_URL: &str = "https://api.bluenexus.ai";

/// Everything but RFC 3986's unreserved characters is encoded, `/` included, so an agent id is
/// always exactly one path segment.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a base URL or an agent id cannot be used, and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub message: String,
    pub hint: Option<String>,
}

impl Refused {
    fn new(message: String) -> Refused {
        Refused {
            message,
            hint: None,
        }
    }

    fn with_hint(self, hint: impl Into<String>) -> Refused {
        Refused {
            hint: Some(hint.into()),
            ..self
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An agent id is one path segment: never empty, `.` or `..`, nor holding a control character.
pub fn check_agent(agent: &str) -> std::result::Result<(), &'static str> {
    match agent {
        "" => Err("it is empty"),
        "." | ".." => Err("it would name another path"),
        _ if agent.chars().any(char::is_control) => Err("it holds a control character"),
        _ => Ok(()),
    }
}

/// The chat endpoint's URL, and whether its host is loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    /// The API origin, normalised (`scheme://host[:port][/prefix]`, the port only when it is not
    /// the scheme's default): what tells one API from another.
    pub origin: String,
    pub host: String,
    pub loopback: bool,
}

/// The chat endpoint for `agent` under the API origin `base_url` (SPEC "Base URL").
pub fn endpoint(base_url: &str, agent: &str) -> Result<Endpoint, Refused> {
    let bad_url = |why: &str| {
        Refused::new(format!("bad base URL {:?}: {why}", url::masked(base_url)))
            .with_hint("use the API origin, such as https://api.bluenexus.ai")
    };
    let parsed = Url::parse(base_url).map_err(|why| bad_url(&why))?;
    if parsed.userinfo.is_some() {
        return Err(bad_url(
            "a user name or password does not belong in it (the token is sent as a header)",
        ));
    }
    if parsed.query.is_some() || parsed.fragment.is_some() {
        return Err(bad_url(
            "a query or fragment has no place in the API origin",
        ));
    }
    let loopback = is_loopback(&parsed.host);
    match parsed.scheme.as_str() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(Refused::new(format!(
                "refusing plain http:// to {}: the token would cross the network unencrypted",
                parsed.host
            ))
            .with_hint("use https://, or http:// only for 127.0.0.1, [::1] or localhost"))
        }
        _ => return Err(bad_url("the scheme must be https")),
    }
    let prefix = parsed.path.trim_end_matches('/');
    let origin = format!("{}{prefix}", parsed.origin());
    if let Some(before) = api_path_start(prefix) {
        return Err(
            bad_url("the path already holds /api/v1, which bnx adds").with_hint(format!(
                "use the origin {}{}",
                parsed.origin(),
                &prefix[..before]
            )),
        );
    }
    if let Err(why) = check_agent(agent) {
        return Err(Refused::new(format!("bad agent id {agent:?}: {why}")));
    }
    let agent = utf8_percent_encode(agent, PATH_SEGMENT).to_string();
    let port = parsed.port.map(|p| format!(":{p}")).unwrap_or_default();
    let url = format!(
        "{}://{}{port}{prefix}{}",
        parsed.scheme,
        parsed.host,
        wire::chat_path(&agent)
    );
    // The HTTP stack reads the URL again: it must find the same host and port, or the token
    // could go where no check above looked.
    let uri: Uri = url.parse().map_err(|_| bad_url("not a URL"))?;
    if uri.host() != Some(parsed.host.as_str()) || uri.port_u16() != parsed.port {
        return Err(bad_url("the host or port is ambiguous"));
    }
    Ok(Endpoint {
        url,
        origin,
        host: parsed.bare_host().to_string(),
        loopback,
    })
}

/// Where `/api/v1` starts in `path`, if it holds it as whole segments, in any case and even
/// percent-encoded (`/%61pi/v1`, which a server reads as `/api/v1`).
fn api_path_start(path: &str) -> Option<usize> {
    let is = |segment: &str, name: &str| {
        percent_decode_str(segment)
            .decode_utf8_lossy()
            .eq_ignore_ascii_case(name)
    };
    let mut starts = path.match_indices('/').map(|(at, _)| at).peekable();
    let mut segments = path.split('/').skip(1).peekable();
    while let (Some(at), Some(segment)) = (starts.next(), segments.next()) {
        if is(segment, "api") && segments.peek().is_some_and(|next| is(next, "v1")) {
            return Some(at);
        }
    }
    None
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_is_one_encoded_path_segment() {
        assert_eq!(
            endpoint("https://h", "a/b c?d#é").unwrap().url,
            "https://h/api/v1/agents/a%2Fb%20c%3Fd%23%C3%A9/chat/completions"
        );
        assert!(endpoint("https://h", "..").is_err());
        assert!(endpoint("https://h", "").is_err());
    }

    #[test]
    fn base_url_rules() {
        assert_eq!(
            endpoint("https://h.example/prefix/", "x").unwrap().url,
            "https://h.example/prefix/api/v1/agents/x/chat/completions"
        );
        for ok in [
            "http://127.0.0.1:8787",
            "http://[::1]:1",
            "http://LOCALHOST",
            "http://127.3.4.5",
        ] {
            assert!(endpoint(ok, "x").unwrap().loopback, "{ok}");
        }
        assert!(endpoint("https://localhost:8443", "x").unwrap().loopback);
        assert!(!endpoint("https://api.bluenexus.ai", "x").unwrap().loopback);
        for bad in [
            "http://example.com",
            "http://10.0.0.1",
            "ftp://h",
            "h.example",
            "https://user:pw@h",
            "https://h/?q=1",
            "https://h/#f",
            "",
        ] {
            assert!(endpoint(bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn a_path_holding_api_v1_in_any_spelling_is_refused_with_the_origin_to_use() {
        for (pasted, origin) in [
            ("https://h/api/v1", "https://h"),
            ("https://h/t%20m/API/V1/agents/x", "https://h/t%20m"),
            ("https://h/team/%61pi/v%31/", "https://h/team"),
        ] {
            let err = endpoint(pasted, "x").unwrap_err();
            assert!(err.message.contains("already holds /api/v1"), "{pasted}");
            assert_eq!(
                err.hint.as_deref(),
                Some(format!("use the origin {origin}").as_str())
            );
        }
        for fine in [
            "https://h/apiv1",
            "https://h/api/v10",
            "https://h/my-api/v1",
            "https://h/v1/api",
        ] {
            assert!(endpoint(fine, "x").is_ok(), "{fine}");
        }
    }

    #[test]
    fn agent_with_control_characters_is_refused() {
        assert!(endpoint("https://h", "a\r\nX-Evil: 1").is_err());
    }
}

//! Which proxy carries the request, as curl chooses it: `https_proxy`/`HTTPS_PROXY`, else
//! `all_proxy`/`ALL_PROXY` (the lower-case name first), unless `no_proxy`/`NO_PROXY` names the
//! host. HTTP CONNECT and SOCKS (`socks4`, `socks4a`, `socks5`, `socks5h`) proxies alike; a
//! proxy URL that cannot be used is a configuration error, never a silent direct connection.
//! A loopback API is never proxied: a proxy cannot reach our loopback, and must not see the
//! request.

use std::ffi::OsString;
use std::net::IpAddr;

use percent_encoding::percent_decode_str;
use ureq::{Proxy, ProxyProtocol};

use crate::error::{Error, Kind, Result};
use crate::url::{self, Url};

const PROXY_VARS: [&str; 4] = ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"];
const NO_PROXY_VARS: [&str; 2] = ["no_proxy", "NO_PROXY"];

/// The proxy to use, and how to name it in a message (no credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub proxy: Proxy,
    pub shown: String,
}

/// The proxy for a request to `host` (bare, without IPv6 brackets), if one applies.
pub fn choose(
    env: &impl Fn(&str) -> Option<OsString>,
    host: &str,
    loopback: bool,
) -> Result<Option<Chosen>> {
    if loopback {
        return Ok(None);
    }
    let Some((name, value)) = first_set(env, &PROXY_VARS)? else {
        return Ok(None);
    };
    // Checked even for a host that NO_PROXY lets go direct: a broken setting shows at once.
    let chosen = parse(&value).map_err(|why| {
        Error::msg(
            Kind::Config,
            format!(
                "{name} is not a proxy URL bnx can use ({:?}): {why}",
                url::masked(&value)
            ),
        )
        .with_hint("give http://HOST:PORT, socks5://HOST:PORT or socks5h://HOST:PORT, or unset it")
    })?;
    match first_set(env, &NO_PROXY_VARS)? {
        Some((_, no_proxy)) if bypasses(&no_proxy, host) => Ok(None),
        _ => Ok(Some(chosen)),
    }
}

/// The first of `names` that is set and not empty, with its value.
fn first_set(
    env: &impl Fn(&str) -> Option<OsString>,
    names: &[&'static str],
) -> Result<Option<(&'static str, String)>> {
    for &name in names {
        match env(name).filter(|v| !v.is_empty()) {
            None => continue,
            Some(value) => {
                let value = value
                    .into_string()
                    .map_err(|_| Error::msg(Kind::Config, format!("{name} is not valid UTF-8")))?;
                return Ok(Some((name, value)));
            }
        }
    }
    Ok(None)
}

/// A proxy URL; without a scheme it is an HTTP proxy, as curl reads it.
fn parse(value: &str) -> Result<Chosen, String> {
    let value = value.trim();
    let with_scheme;
    let value = if value.contains("://") {
        value
    } else {
        with_scheme = format!("http://{value}");
        &with_scheme
    };
    let parsed = Url::parse(value)?;
    let protocol = match parsed.scheme.as_str() {
        "http" => ProxyProtocol::Http,
        "https" => ProxyProtocol::Https,
        "socks4" => ProxyProtocol::Socks4,
        "socks4a" => ProxyProtocol::Socks4A,
        "socks5" => ProxyProtocol::Socks5,
        "socks5h" => ProxyProtocol::Socks5h,
        other => {
            return Err(format!(
                "{other}:// is not a proxy scheme (http, https, socks4, socks4a, socks5, socks5h)"
            ))
        }
    };
    if !matches!(parsed.path, "" | "/") || parsed.query.is_some() || parsed.fragment.is_some() {
        return Err("a proxy URL has no path, query or fragment".into());
    }
    let mut builder = Proxy::builder(protocol).host(&parsed.host);
    if let Some(port) = parsed.port {
        builder = builder.port(port);
    }
    if let Some(userinfo) = parsed.userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        let decode = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| "the user name or password is not UTF-8 once decoded".to_string())
        };
        builder = builder.username(&decode(user)?);
        if let Some(password) = password {
            builder = builder.password(&decode(password)?);
        }
    }
    let proxy = builder.build().map_err(|e| e.to_string())?;
    let shown = Url {
        port: Some(proxy.port()),
        ..parsed
    }
    .to_string();
    Ok(Chosen { proxy, shown })
}

/// Whether a `NO_PROXY` list names `host`: `*`; the host itself or a domain it is in
/// (`example.com` and `.example.com` both cover `api.example.com`); an IP address or a
/// CIDR range holding it. An entry's `:port` is ignored.
fn bypasses(list: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    list.split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let (Some(ip), Some((net, bits))) = (ip, entry.split_once('/')) {
                return in_range(ip, net, bits);
            }
            let entry = strip_port(entry)
                .trim_start_matches("*.")
                .trim_start_matches('.');
            let entry = entry.trim_end_matches('.').to_ascii_lowercase();
            match (ip, entry.parse::<IpAddr>()) {
                (Some(ip), Ok(listed)) => ip == listed,
                (None, Err(_)) => {
                    host == entry
                        || host
                            .strip_suffix(entry.as_str())
                            .is_some_and(|sub| sub.ends_with('.'))
                }
                _ => false,
            }
        })
}

fn strip_port(entry: &str) -> &str {
    if let Some(v6) = entry.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => entry,
    }
}

fn in_range(ip: IpAddr, net: &str, bits: &str) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => (u32::from(ip) as u128, u32::from(net) as u128, 32),
        (IpAddr::V6(ip), IpAddr::V6(net)) => (u128::from(ip), u128::from(net), 128),
        _ => return false,
    };
    if bits > width {
        return false;
    }
    let mask = match bits {
        0 => 0,
        bits => (u128::MAX << (width - bits)) & (u128::MAX >> (128 - width)),
    };
    ip & mask == net & mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn choose_with(vars: &[(&str, &str)], host: &str) -> Result<Option<Chosen>> {
        let vars: HashMap<&str, OsString> = vars.iter().map(|(k, v)| (*k, v.into())).collect();
        choose(&|name: &str| vars.get(name).cloned(), host, false)
    }

    fn chosen(vars: &[(&str, &str)], host: &str) -> Option<String> {
        choose_with(vars, host).unwrap().map(|c| c.shown)
    }

    #[test]
    fn https_proxy_beats_all_proxy_and_lower_case_comes_first() {
        let h = "api.example";
        assert_eq!(chosen(&[], h), None);
        assert_eq!(
            chosen(
                &[
                    ("ALL_PROXY", "socks5h://a:1"),
                    ("HTTPS_PROXY", "http://b:2")
                ],
                h
            ),
            Some("http://b:2".into())
        );
        assert_eq!(
            chosen(&[("all_proxy", "socks5://a:1"), ("https_proxy", "b:2")], h),
            Some("http://b:2".into())
        );
        assert_eq!(
            chosen(
                &[
                    ("HTTPS_PROXY", "http://upper:1"),
                    ("https_proxy", "http://lower:2")
                ],
                h
            ),
            Some("http://lower:2".into())
        );
        assert_eq!(
            chosen(&[("HTTPS_PROXY", ""), ("ALL_PROXY", "socks4://c")], h),
            Some("socks4://c:1080".into())
        );
        let loopback = choose(&|_: &str| Some("http://p:1".into()), "127.0.0.1", true);
        assert_eq!(loopback.unwrap(), None);
    }

    #[test]
    fn socks_proxies_resolve_where_their_scheme_says() {
        let proxy = |url: &str| {
            choose_with(&[("ALL_PROXY", url)], "h")
                .unwrap()
                .unwrap()
                .proxy
        };
        assert!(proxy("socks5://p").resolve_target());
        assert!(!proxy("socks5h://p").resolve_target());
        assert_eq!(proxy("socks5h://p").protocol(), ProxyProtocol::Socks5h);
        assert_eq!(proxy("socks4://p:9").port(), 9);
        let with_user = proxy("socks5://us%40er:p%3Ass@p:1");
        assert_eq!(
            (with_user.username(), with_user.password()),
            (Some("us@er"), Some("p:ss"))
        );
    }

    #[test]
    fn unusable_proxy_urls_are_errors_that_never_show_credentials() {
        for bad in [
            "ftp://p:1",
            "http://127.0.0.1:99999",
            "socks5://p:",
            "socks5://[::1",
            "http://p:1/path",
            "http://user:hunter2@p:1?q",
            "http://p:1#frag",
        ] {
            let err = choose_with(&[("HTTPS_PROXY", bad)], "h").unwrap_err();
            assert_eq!(err.kind, Kind::Config, "{bad}");
            assert!(
                err.line().starts_with("HTTPS_PROXY is not a proxy URL"),
                "{}",
                err.line()
            );
            assert!(!err.line().contains("hunter2"), "{}", err.line());
        }
        let shown = chosen(&[("HTTPS_PROXY", "http://user:hunter2@p:1")], "h");
        assert_eq!(shown.as_deref(), Some("http://***@p:1"));
    }

    #[test]
    fn no_proxy_names_hosts_domains_addresses_and_ranges() {
        for (list, host) in [
            ("*", "api.example"),
            ("api.example", "api.example"),
            ("example", "api.example"),
            (".example", "api.example"),
            ("*.example", "API.Example"),
            ("other, example:443", "api.example"),
            ("10.1.2.3", "10.1.2.3"),
            ("10.0.0.0/8", "10.1.2.3"),
            ("[::1]:80", "::1"),
            ("fd00::/8", "fd12::1"),
        ] {
            assert!(bypasses(list, host), "{list} should cover {host}");
        }
        for (list, host) in [
            ("xample", "api.example"),
            ("api.example.org", "api.example"),
            ("10.0.0.0/8", "11.1.2.3"),
            ("10.0.0.0/33", "10.1.2.3"),
            ("10.1.2.3", "api.example"),
            ("", "api.example"),
        ] {
            assert!(!bypasses(list, host), "{list} should not cover {host}");
        }
        let vars = [("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", ".example")];
        assert_eq!(chosen(&vars, "api.example"), None);
        assert_eq!(chosen(&vars, "api.other"), Some("http://p:1".into()));
        let bad_and_bypassed = [("HTTPS_PROXY", "ftp://p"), ("no_proxy", "*")];
        assert!(
            choose_with(&bad_and_bypassed, "h").is_err(),
            "still an error"
        );
    }
}

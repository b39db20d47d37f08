//! Proxies: SOCKS4, 4a, 5 and 5h carry the request and resolve where their scheme says,
//! HTTPS_PROXY beats ALL_PROXY, NO_PROXY goes direct, an unusable proxy URL is refused (never a
//! direct connection), and a loopback API never goes through a proxy.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// What a SOCKS proxy was asked.
#[derive(Debug, Clone, Default)]
struct SocksSeen {
    version: u8,
    /// `host:port` as the client named it.
    target: String,
    /// The first bytes the client sent through the tunnel.
    tunnelled: Vec<u8>,
}

/// A minimal SOCKS4/4a/5 server: it records the target, grants the connection, records what
/// comes through, and closes.
struct Socks {
    url_host: String,
    seen: Arc<Mutex<Vec<SocksSeen>>>,
}

impl Socks {
    fn start() -> Socks {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url_host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let seen = socks_session(&mut stream).unwrap_or_default();
                record.lock().unwrap().push(seen);
            }
        });
        Socks { url_host, seen }
    }

    /// The sessions so far, every connection made before this call included: a sentinel
    /// connection (version 0) is made and waited for, as sessions are served in order.
    fn seen(&self) -> Vec<SocksSeen> {
        drop(TcpStream::connect(&self.url_host).unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.seen.lock().unwrap().clone();
            if let Some(at) = seen.iter().position(|s| s.version == 0) {
                self.seen.lock().unwrap().remove(at);
                return seen[..at].to_vec();
            }
            assert!(Instant::now() < deadline, "the sentinel never arrived");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

fn socks_session(s: &mut TcpStream) -> std::io::Result<SocksSeen> {
    let mut byte = [0u8; 1];
    let read = |s: &mut TcpStream, n: usize| -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; n];
        s.read_exact(&mut buf)?;
        Ok(buf)
    };
    s.read_exact(&mut byte)?;
    let mut seen = SocksSeen {
        version: byte[0],
        ..SocksSeen::default()
    };
    if byte[0] == 4 {
        let head = read(s, 7)?; // command, port, address
        let port = u16::from_be_bytes([head[1], head[2]]);
        let until_nul = |s: &mut TcpStream| -> std::io::Result<String> {
            let mut text = Vec::new();
            let mut b = [0u8; 1];
            loop {
                s.read_exact(&mut b)?;
                if b[0] == 0 {
                    return Ok(String::from_utf8_lossy(&text).into_owned());
                }
                text.push(b[0]);
            }
        };
        until_nul(s)?; // user id
        let host = if head[3..6] == [0, 0, 0] {
            until_nul(s)?
        } else {
            format!("{}.{}.{}.{}", head[3], head[4], head[5], head[6])
        };
        seen.target = format!("{host}:{port}");
        s.write_all(&[0, 90, 0, 0, 0, 0, 0, 0])?;
    } else {
        let methods = read(s, 1)?;
        read(s, methods[0] as usize)?;
        s.write_all(&[5, 0])?;
        let request = read(s, 4)?; // version, command, reserved, address type
        let host = match request[3] {
            1 => {
                let ip = read(s, 4)?;
                format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])
            }
            3 => {
                let len = read(s, 1)?;
                String::from_utf8_lossy(&read(s, len[0] as usize)?).into_owned()
            }
            _ => "?".into(),
        };
        let port = read(s, 2)?;
        seen.target = format!("{host}:{}", u16::from_be_bytes([port[0], port[1]]));
        s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 80])?;
    }
    let mut tunnelled = [0u8; 64];
    let n = s.read(&mut tunnelled).unwrap_or(0);
    seen.tunnelled = tunnelled[..n].to_vec();
    Ok(seen)
}

/// A proxy that records one CONNECT line and refuses it.
fn connect_recorder() -> Scripted {
    Scripted::answering(|_| b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec())
}

fn through_proxy(dir: &Path, base_url: &str, vars: &[(&str, &str)]) -> Output {
    let mut cmd = bnx_in(dir);
    cmd.env("BLUENEXUS_TOKEN", TOKEN_ECHOED)
        .env("BLUENEXUS_BASE_URL", base_url)
        .args(["--retries", "0", "--connect-timeout", "5", "x"]);
    for (name, value) in vars {
        cmd.env(name, value);
    }
    cmd.output().unwrap()
}

#[test]
fn socks_proxies_carry_the_request_and_resolve_where_their_scheme_says() {
    let dir = tempfile::tempdir().unwrap();
    for (scheme, base_url, version, target) in [
        (
            "socks5h",
            "https://api.bluenexus.test",
            5,
            "api.bluenexus.test:443",
        ),
        ("socks5", "https://192.0.2.10:8443", 5, "192.0.2.10:8443"),
        ("socks4", "https://192.0.2.10", 4, "192.0.2.10:443"),
        (
            "socks4a",
            "https://api.bluenexus.test:444",
            4,
            "api.bluenexus.test:444",
        ),
    ] {
        let socks = Socks::start();
        let proxy = format!("{scheme}://{}", socks.url_host);
        let output = through_proxy(dir.path(), base_url, &[("ALL_PROXY", &proxy)]);
        assert_eq!(
            output.status.code(),
            Some(69),
            "{scheme}: {}",
            all_of(&output)
        );
        assert!(
            stderr_of(&output).contains(&format!("through the proxy {proxy}")),
            "{scheme}: {}",
            stderr_of(&output)
        );
        let seen = socks.seen();
        assert_eq!(seen.len(), 1, "{scheme}: {seen:?}");
        assert_eq!(
            (seen[0].version, seen[0].target.as_str()),
            (version, target)
        );
        assert_eq!(
            seen[0].tunnelled.first(),
            Some(&0x16),
            "{scheme}: TLS starts inside the tunnel"
        );
        let tunnelled = String::from_utf8_lossy(&seen[0].tunnelled);
        assert!(!tunnelled.contains("ECHO"), "{scheme}: {tunnelled}");
    }
}

#[test]
fn https_proxy_beats_all_proxy_in_either_case() {
    let dir = tempfile::tempdir().unwrap();
    for (https_var, all_var) in [("HTTPS_PROXY", "ALL_PROXY"), ("https_proxy", "all_proxy")] {
        let socks = Socks::start();
        let connect = connect_recorder();
        let output = through_proxy(
            dir.path(),
            "https://api.bluenexus.test",
            &[
                (all_var, &format!("socks5h://{}", socks.url_host)),
                (https_var, &connect.origin),
            ],
        );
        assert_eq!(output.status.code(), Some(69), "{}", all_of(&output));
        let requests = connect.requests();
        assert_eq!(requests.len(), 1, "{https_var}");
        assert!(requests[0]
            .head
            .starts_with("CONNECT api.bluenexus.test:443 HTTP/1.1"));
        assert!(!requests[0].head.contains("ECHO"));
        assert!(socks.seen().is_empty(), "{all_var} was not used");
    }
}

#[test]
fn no_proxy_sends_the_host_direct_and_a_dns_failure_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let connect = connect_recorder();
    let output = through_proxy(
        dir.path(),
        "https://api.bluenexus.invalid",
        &[
            ("HTTPS_PROXY", &connect.origin),
            ("NO_PROXY", "localhost,.invalid"),
        ],
    );
    assert_eq!(output.status.code(), Some(69), "{}", all_of(&output));
    assert!(
        stderr_of(&output).contains("cannot resolve the host name api.bluenexus.invalid"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(connect.requests(), Vec::<Request>::new());
}

#[test]
fn an_unusable_proxy_url_is_exit_78_never_a_direct_connection() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("ALL_PROXY", "ftp://127.0.0.1:1"),
        ("HTTPS_PROXY", "socks5://127.0.0.1:99999"),
        ("https_proxy", "http://me:hunter2@127.0.0.1:"),
        ("all_proxy", "socks5h://[::1"),
        ("HTTPS_PROXY", "http://127.0.0.1:1/path?k=hunter2"),
    ] {
        // A direct connection would end in a DNS failure (69), not 78.
        let output = through_proxy(dir.path(), "https://api.bluenexus.invalid", &[(var, value)]);
        assert_eq!(
            output.status.code(),
            Some(78),
            "{var}={value}: {}",
            all_of(&output)
        );
        let stderr = stderr_of(&output);
        assert!(
            stderr.contains(&format!("{var} is not a proxy URL")),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

/// Through no HTTP proxy, whichever variable names it, nor a SOCKS one.
#[test]
fn a_loopback_api_is_never_sent_through_a_proxy() {
    let socks = Socks::start();
    let mock = Mock::start(&[]);
    mock.bnx()
        .env("ALL_PROXY", format!("socks5h://{}", socks.url_host))
        .arg("x")
        .assert()
        .success()
        .stdout("[turn 1] x\n");
    mock.only_request();
    assert!(socks.seen().is_empty());
    let proxy =
        Scripted::answering(|_| b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n".to_vec());
    for var in [
        "ALL_PROXY",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "all_proxy",
        "http_proxy",
    ] {
        mock.bnx()
            .env(var, &proxy.origin)
            .arg("x")
            .assert()
            .success()
            .stdout("[turn 1] x\n");
    }
    assert_eq!(proxy.received(), "");
}

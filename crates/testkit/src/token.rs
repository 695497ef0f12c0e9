//! A token server for a test registry, as Docker Hub and most private
//! registries authenticate: the registry answers 401 with a Bearer
//! challenge naming this server; a client asks it for a token (with HTTP
//! Basic credentials) and presents the token to the registry.
//!
//! Tokens are JWTs the real docker-registry verifies: RS256, signed with
//! openssl by a key whose certificate travels in the `x5c` header and is
//! the registry's `rootcertbundle`.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine;

/// What the registry's config names: the service and issuer tokens are for.
pub(crate) const SERVICE: &str = "berth-test-registry";
pub(crate) const ISSUER: &str = "berth-test-token-server";

pub(crate) struct TokenServer {
    pub port: u16,
    /// The signing certificate: the registry's `rootcertbundle`.
    pub cert: PathBuf,
    user: String,
    signer: Arc<Signer>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    /// Issues tokens to `user` with `password`, for whatever pull or push
    /// access it asks.
    pub fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        std::fs::create_dir_all(dir).unwrap();
        let (key, cert) = (dir.join("token.key"), dir.join("token.crt"));
        crate::run(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=berth test token signer", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        let der = Command::new("openssl").args(["x509", "-outform", "DER", "-in"]).arg(&cert).output().unwrap().stdout;
        let signer = Arc::new(Signer { key, x5c: base64::engine::general_purpose::STANDARD.encode(der) });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
        let (stopped, subject, serving) = (stop.clone(), user.to_string(), signer.clone());
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = answer(stream, &serving, &expected, &subject);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TokenServer { port, cert, user: user.to_string(), signer, stop, thread: Some(thread) }
    }

    /// A token for `scope`, as the server would give it.
    pub fn token(&self, scope: &str) -> String {
        self.signer.token(&self.user, &[scope.to_string()])
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Signer {
    key: PathBuf,
    x5c: String,
}

/// One request, one answer, then the connection closes.
fn answer(stream: TcpStream, signer: &Signer, expected: &str, user: &str) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = value.trim().to_string();
            }
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let scopes: Vec<String> =
        target.split_once('?').map(|(_, query)| query.split('&').filter_map(|p| p.strip_prefix("scope=")).map(percent_decode).collect()).unwrap_or_default();
    let (status, body) = if authorization == expected {
        let token = signer.token(user, &scopes);
        ("200 OK", format!("{{\"token\":\"{token}\",\"expires_in\":300}}"))
    } else {
        ("401 Unauthorized", "{\"details\":\"wrong credentials\"}".to_string())
    };
    let mut stream = stream;
    write!(stream, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

impl Signer {
    /// A JWT granting the actions of each `repository:<name>:<actions>`.
    fn token(&self, user: &str, scopes: &[String]) -> String {
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|scope| {
                let mut parts = scope.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(serde_json::json!({ "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>() }))
            })
            .collect();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "x5c": [self.x5c] });
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": user, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": format!("{now}-{}", scopes.len()), "access": access,
        });
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signing_input = format!("{}.{}", url.encode(header.to_string()), url.encode(claims.to_string()));
        let mut openssl =
            Command::new("openssl").args(["dgst", "-sha256", "-sign"]).arg(&self.key).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        openssl.stdin.take().unwrap().write_all(signing_input.as_bytes()).unwrap();
        let signature = openssl.wait_with_output().unwrap().stdout;
        format!("{signing_input}.{}", url.encode(signature))
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

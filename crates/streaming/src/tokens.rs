//! Single-use, expiring tokens: the last path segment of each URL handed
//! out by Exec, Attach and PortForward. A token names the request it was
//! made for, so a client cannot turn an exec URL into another command.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// A request waiting for its client to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    Exec { container_id: String, cmd: Vec<String>, tty: bool, stdin: bool, stdout: bool, stderr: bool },
    Attach { container_id: String, tty: bool, stdin: bool, stdout: bool, stderr: bool },
    PortForward { pod_id: String },
}

impl Pending {
    /// The URL path segment for this kind of request.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Pending::Exec { .. } => "exec",
            Pending::Attach { .. } => "attach",
            Pending::PortForward { .. } => "portforward",
        }
    }
}

pub(crate) struct Tokens {
    ttl: Duration,
    pending: Mutex<HashMap<String, (Instant, Pending)>>,
}

impl Tokens {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self { ttl, pending: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn insert(&self, request: Pending) -> std::io::Result<String> {
        let token = random_token()?;
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        pending.retain(|_, (made, _)| now.duration_since(*made) < self.ttl);
        pending.insert(token.clone(), (now, request));
        Ok(token)
    }

    /// The request for `token`, once: the token is spent by this call.
    pub(crate) fn take(&self, token: &str) -> Option<Pending> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (made, request) = pending.remove(token)?;
        (made.elapsed() < self.ttl).then_some(request)
    }
}

/// 128 random bits, URL-safe.
fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward() -> Pending {
        Pending::PortForward { pod_id: "p".into() }
    }

    #[test]
    fn a_token_works_once() {
        let tokens = Tokens::new(Duration::from_secs(60));
        let t = tokens.insert(forward()).unwrap();
        assert_eq!(t.len(), 32);
        assert_eq!(tokens.take(&t), Some(forward()));
        assert_eq!(tokens.take(&t), None);
        assert_eq!(tokens.take("nonsense"), None);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let tokens = Tokens::new(Duration::from_millis(1));
        let t = tokens.insert(forward()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(tokens.take(&t), None);
    }
}

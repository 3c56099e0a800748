//! Optional bearer-token access control.
//!
//! Task dumps pause the service's runtime and everything the exporter serves describes the
//! service's internals: on anything but loopback, put them behind a token. The token comes
//! from the environment (`TASKSCOPE_TOKEN`, or a file named by `TASKSCOPE_TOKEN_FILE`), never
//! a command-line flag that `ps` would show. Comparison is constant-time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// Environment variable holding the token.
pub const TOKEN_ENV: &str = "TASKSCOPE_TOKEN";
/// Environment variable naming a file whose content (trimmed) is the token.
pub const TOKEN_FILE_ENV: &str = "TASKSCOPE_TOKEN_FILE";
/// Environment variable choosing what the token guards: `all` (default) or `debug`.
pub const TOKEN_SCOPE_ENV: &str = "TASKSCOPE_TOKEN_SCOPE";

/// What a token guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScope {
    /// Every endpoint, `/metrics` included (give Prometheus the token:
    /// `authorization: { credentials: ... }` in its scrape config).
    Everything,
    /// Everything but `/metrics` and the index: dumps, snapshots, locks, baselines.
    DebugOnly,
}

/// The exporter's access rule.
#[derive(Clone, Default)]
pub(crate) struct Access {
    token: Option<(Arc<[u8]>, TokenScope)>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        match &self.token {
            None => f.write_str("Access(open)"),
            Some((_, scope)) => write!(f, "Access(token, {scope:?})"),
        }
    }
}

/// Why the token settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file could not be read.
    #[error("cannot read the token file {path} ({TOKEN_FILE_ENV})")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The token is empty.
    #[error("the taskscope token is empty ({TOKEN_ENV} or {TOKEN_FILE_ENV})")]
    Empty,
    /// The scope is not `all` or `debug`.
    #[error("{TOKEN_SCOPE_ENV}={0:?} is not valid: use all or debug")]
    Scope(String),
}

impl Access {
    pub(crate) fn token(token: &str, scope: TokenScope) -> Result<Access, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        Ok(Access {
            token: Some((Arc::from(token.as_bytes()), scope)),
        })
    }

    /// From `TASKSCOPE_TOKEN` / `TASKSCOPE_TOKEN_FILE` and `TASKSCOPE_TOKEN_SCOPE`; open when
    /// neither is set.
    pub(crate) fn from_env() -> Result<Access, TokenError> {
        let scope = match std::env::var(TOKEN_SCOPE_ENV).ok().as_deref() {
            None | Some("all") | Some("") => TokenScope::Everything,
            Some("debug") => TokenScope::DebugOnly,
            Some(other) => return Err(TokenError::Scope(other.to_string())),
        };
        if let Ok(token) = std::env::var(TOKEN_ENV) {
            return Access::token(&token, scope);
        }
        if let Ok(path) = std::env::var(TOKEN_FILE_ENV) {
            let token = std::fs::read_to_string(&path)
                .map_err(|source| TokenError::File { path, source })?;
            return Access::token(&token, scope);
        }
        Ok(Access::default())
    }

    pub(crate) fn is_open(&self) -> bool {
        self.token.is_none()
    }

    pub(crate) fn describe(&self) -> &'static str {
        match &self.token {
            None => "no token",
            Some((_, TokenScope::Everything)) => "token required on every endpoint",
            Some((_, TokenScope::DebugOnly)) => "token required on debug endpoints",
        }
    }

    fn allows(&self, path: &str, authorization: Option<&[u8]>) -> bool {
        let Some((token, scope)) = &self.token else {
            return true;
        };
        if *scope == TokenScope::DebugOnly && (path == "/metrics" || path == "/") {
            return true;
        }
        let Some(given) = authorization.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        // Constant time in the content; the length is not secret.
        given.len() == token.len() && bool::from(given.ct_eq(token))
    }
}

/// The middleware: 401 without the right `Authorization: Bearer` header.
pub(crate) async fn check(State(access): State<Access>, req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if access.allows(req.uri().path(), auth) {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"taskscope\"")],
        format!(
            "this taskscope exporter needs a token: send Authorization: Bearer <token> (the \
             taskscope CLI and TUI send ${TOKEN_ENV} or the file named by ${TOKEN_FILE_ENV})\n"
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_guard_what_their_scope_says() {
        let open = Access::default();
        assert!(open.allows("/debug/taskscope/dump", None));
        let all = Access::token(" s3cret\n", TokenScope::Everything).unwrap();
        assert!(!all.allows("/metrics", None));
        assert!(!all.allows("/metrics", Some(b"Bearer wrong!")));
        assert!(!all.allows("/metrics", Some(b"Bearer s3cre")));
        assert!(!all.allows("/metrics", Some(b"s3cret")));
        assert!(all.allows("/metrics", Some(b"Bearer s3cret")));
        let debug = Access::token("s3cret", TokenScope::DebugOnly).unwrap();
        assert!(debug.allows("/metrics", None));
        assert!(debug.allows("/", None));
        assert!(!debug.allows("/debug/pprof/tasks", None));
        assert!(debug.allows("/debug/pprof/tasks", Some(b"Bearer s3cret")));
        assert!(matches!(
            Access::token("  ", TokenScope::Everything),
            Err(TokenError::Empty)
        ));
        assert_eq!(format!("{all:?}"), "Access(token, Everything)");
    }
}

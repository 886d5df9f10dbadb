//! Bearer-token authentication with three roles, as one tower layer.
//!
//! Tokens are configured as `token:role` pairs (`reader`, `writer`, `admin`); each
//! service declares the role of every RPC in one [`RoleTable`] (a test per service
//! checks the table against its descriptor with [`undeclared`]; an undeclared RPC
//! needs `admin`). No tokens configured means
//! auth is off (the default for `mlops up`). On: a missing or unknown token is
//! `UNAUTHENTICATED`, a token whose role is too low is `PERMISSION_DENIED`.
//! Health checks and reflection are always open.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::Status;

/// What a caller may do; each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read-only calls.
    Reader,
    /// Reads and ordinary writes.
    Writer,
    /// Everything, including destructive administration.
    Admin,
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "reader" => Ok(Role::Reader),
            "writer" => Ok(Role::Writer),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role `{other}`; expected reader, writer or admin"
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        })
    }
}

/// The configured tokens. Never printed: `Debug` shows only their count.
#[derive(Clone, Default)]
pub struct Tokens(HashMap<String, Role>);

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens({} configured)", self.0.len())
    }
}

impl Tokens {
    /// Parses `token:role,token:role`; empty means no tokens (auth off).
    pub fn parse(spec: &str) -> Result<Tokens, String> {
        let mut map = HashMap::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (token, role) = item.rsplit_once(':').ok_or_else(|| {
                "each auth token must be written token:role (role reader, writer or admin)"
                    .to_owned()
            })?;
            if token.is_empty() {
                return Err("an auth token is empty".to_owned());
            }
            map.insert(token.to_owned(), role.parse()?);
        }
        Ok(Tokens(map))
    }

    /// Whether any token is configured (auth on).
    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// The role of a presented token, comparing in constant time per token.
    pub fn role_of(&self, presented: &str) -> Option<Role> {
        let mut found = None;
        for (token, role) in &self.0 {
            if constant_time_eq(token.as_bytes(), presented.as_bytes()) {
                found = Some(*role);
            }
        }
        found
    }
}

impl FromStr for Tokens {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tokens::parse(s)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The role each RPC of one gRPC service needs: `(method, role)` for every method,
/// declared in one table by the service (a test checks it against the descriptor
/// with [`undeclared`]).
pub type RoleTable = &'static [(&'static str, Role)];

/// The roles of every RPC a port serves, by full path (`/pkg.Service/Method`).
/// A path no table declares needs [`Role::Admin`]: an RPC added without a
/// declaration is closed, not open.
#[derive(Clone, Default)]
pub struct Policy(Arc<HashMap<String, Role>>);

impl Policy {
    /// Adds the table of the gRPC service `service` (`mlops.tracking.v1.TrackingService`).
    pub fn with(self, service: &str, table: RoleTable) -> Self {
        let mut map = Arc::unwrap_or_clone(self.0);
        for (method, role) in table {
            map.insert(format!("/{service}/{method}"), *role);
        }
        Policy(Arc::new(map))
    }

    /// The role a request to `path` needs.
    pub fn role(&self, path: &str) -> Role {
        self.0.get(path).copied().unwrap_or(Role::Admin)
    }
}

/// What `table` gets wrong about `service` in the encoded `FileDescriptorSet`:
/// methods it does not declare, then declared names that are not methods. Both
/// empty when the table is complete.
pub fn undeclared(
    descriptor_set: &[u8],
    service: &str,
    table: RoleTable,
) -> (Vec<String>, Vec<String>) {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(descriptor_set)
        .expect("the embedded descriptor set decodes");
    let methods: Vec<String> = set
        .file
        .iter()
        .flat_map(|f| {
            let package = f.package().to_owned();
            f.service.iter().filter_map(move |s| {
                let full = format!("{package}.{}", s.name());
                (full == service).then(|| s.method.iter().map(|m| m.name().to_owned()))
            })
        })
        .flatten()
        .collect();
    let missing = methods
        .iter()
        .filter(|m| !table.iter().any(|(d, _)| d == m))
        .cloned()
        .collect();
    let unknown = table
        .iter()
        .filter(|(d, _)| !methods.iter().any(|m| m == d))
        .map(|(d, _)| (*d).to_owned())
        .collect();
    (missing, unknown)
}

/// Checks the token of a request to `path`; `Ok` when it may proceed.
pub fn authorize(
    tokens: &Tokens,
    policy: &Policy,
    path: &str,
    authorization: Option<&str>,
) -> Result<(), Status> {
    if !tokens.enabled()
        || path.starts_with("/grpc.health.")
        || path.starts_with("/grpc.reflection.")
    {
        return Ok(());
    }
    let token = authorization
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            Status::unauthenticated(
                "missing bearer token: send the metadata `authorization: Bearer <token>`",
            )
        })?;
    let role = tokens
        .role_of(token)
        .ok_or_else(|| Status::unauthenticated("unknown bearer token"))?;
    let method = crate::metrics::method_of(path);
    let needed = policy.role(path);
    if role < needed {
        return Err(Status::permission_denied(format!(
            "{method} needs the {needed} role; this token has the {role} role"
        )));
    }
    Ok(())
}

/// Panics, naming them, when `table` leaves out a method of `service` or names one
/// it does not have: the body of each service's test of its table.
pub fn assert_declared(descriptor_set: &[u8], service: &str, table: RoleTable) {
    let (missing, unknown) = undeclared(descriptor_set, service, table);
    assert!(
        missing.is_empty(),
        "RPCs of {service} without a declared role: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "the role table of {service} names RPCs it does not have: {unknown:?}"
    );
}

/// The tower layer applying [`authorize`] to every request.
#[derive(Clone)]
pub struct AuthLayer {
    tokens: Tokens,
    policy: Policy,
}

impl AuthLayer {
    /// A layer checking `tokens` against `policy`.
    pub fn new(tokens: Tokens, policy: Policy) -> Self {
        AuthLayer { tokens, policy }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S, ReqB, ResB> tower::Service<http::Request<ReqB>> for AuthService<S>
where
    S: tower::Service<http::Request<ReqB>, Response = http::Response<ResB>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
    ResB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        let header = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        match authorize(
            &self.layer.tokens,
            &self.layer.policy,
            req.uri().path(),
            header,
        ) {
            Ok(()) => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move { inner.call(req).await })
            }
            Err(status) => {
                let resp = status.into_http::<ResB>();
                Box::pin(async move { Ok(resp) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::default()
            .with(
                "mlops.tracking.v1.TrackingService",
                &[("CreateRun", Role::Writer)],
            )
            .with("x.S", &[("GetRun", Role::Reader)])
    }

    #[test]
    fn parses_tokens_and_rejects_bad_roles() {
        let t = Tokens::parse("abc:reader, def:admin").unwrap();
        assert_eq!(t.role_of("abc"), Some(Role::Reader));
        assert_eq!(t.role_of("def"), Some(Role::Admin));
        assert_eq!(t.role_of("zzz"), None);
        assert!(Tokens::parse("abc:root")
            .unwrap_err()
            .contains("unknown role"));
        assert!(Tokens::parse("abc").is_err());
        assert!(!Tokens::parse("").unwrap().enabled());
        assert!(!format!("{t:?}").contains("abc"));
    }

    #[test]
    fn authorize_codes() {
        let t = Tokens::parse("r:reader,w:writer").unwrap();
        let p = policy();
        let path = "/mlops.tracking.v1.TrackingService/CreateRun";
        assert_eq!(
            authorize(&t, &p, path, None).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            authorize(&t, &p, path, Some("Bearer x"))
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
        let denied = authorize(&t, &p, path, Some("Bearer r")).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(denied.message().contains("writer"));
        assert!(authorize(&t, &p, path, Some("Bearer w")).is_ok());
        assert!(authorize(&t, &p, "/x.S/GetRun", Some("Bearer r")).is_ok());
        assert!(authorize(&t, &p, "/grpc.health.v1.Health/Check", None).is_ok());
        // An RPC no table declares needs the admin role.
        let undeclared = authorize(&t, &p, "/x.S/Predict", Some("Bearer w")).unwrap_err();
        assert_eq!(undeclared.code(), tonic::Code::PermissionDenied);
        assert!(undeclared.message().contains("admin"), "{undeclared:?}");
        assert!(authorize(&Tokens::default(), &p, path, None).is_ok());
    }
}

//! Basic auth for every route when the web config file lists users.
//!
//! Checking a bcrypt hash costs tens of milliseconds of CPU by design; a scraper sends the
//! same credentials every time, so credentials once verified are remembered and the check
//! runs off the async workers.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
};

use axum::{
    extract::{Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::Engine;

#[derive(Clone)]
pub struct Users {
    hashes: Arc<BTreeMap<String, String>>,
    /// `Authorization` values already verified.
    verified: Arc<Mutex<HashSet<String>>>,
}

impl Users {
    pub fn new(hashes: BTreeMap<String, String>) -> Users {
        Users {
            hashes: Arc::new(hashes),
            verified: Arc::default(),
        }
    }

    async fn allows(&self, authorization: &str) -> bool {
        if self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(authorization)
        {
            return true;
        }
        let Some((user, password)) = credentials(authorization) else {
            return false;
        };
        let Some(hash) = self.hashes.get(&user).cloned() else {
            return false;
        };
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if ok {
            self.verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(authorization.to_string());
        }
        ok
    }
}

/// (user, password) from `Basic base64(user:password)`.
fn credentials(authorization: &str) -> Option<(String, String)> {
    let encoded = authorization.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

pub async fn require(State(users): State<Users>, request: Request, next: Next) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if users.allows(authorization).await {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"trafficd\"")],
        "Unauthorized: this trafficd requires the user and password of its web config file\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_listed_users_with_their_password_pass() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let users = Users::new(BTreeMap::from([("alice".to_string(), hash)]));
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(users.allows(&basic("alice:secret")).await);
        // Remembered, and still right.
        assert!(users.allows(&basic("alice:secret")).await);
        assert!(!users.allows(&basic("alice:wrong")).await);
        assert!(!users.allows(&basic("bob:secret")).await);
        assert!(!users.allows("").await);
        assert!(!users.allows("Bearer x").await);
    }
}

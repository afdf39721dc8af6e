//! The HTTP API: /top, /explain, /exposure, /metrics and /healthz, over plain HTTP or TLS, with basic auth when
//! the web config file asks for it.

mod auth;
mod by_owner;
mod explain;
mod exposure;
mod links;
mod metrics;
mod rank;
mod remotes;
mod tls;
mod top;
mod web_config;

pub use metrics::{MetricsConfig, Programs};
pub use web_config::WebConfig;

use std::{
    future::Future,
    sync::{Arc, RwLock},
    time::Instant,
};

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use prometheus_client::registry::Registry;

use crate::{
    api::{self, ApiError, ErrorBody, TopQuery},
    enrich::peers::PeerNames,
    exposure::Report,
    stats::Store,
};

/// What the daemon knows besides the store: peer names and the exposure pass's findings.
#[derive(Clone)]
pub struct Sources {
    pub peers: PeerNames,
    pub exposure: Report,
}

#[derive(Clone)]
struct AppState {
    store: Arc<RwLock<Store>>,
    registry: Arc<Registry>,
    sources: Sources,
}

pub fn router(
    store: Arc<RwLock<Store>>,
    metrics: &MetricsConfig,
    web: &WebConfig,
    sources: Sources,
) -> Router {
    let mut registry = metrics::registry(store.clone(), metrics);
    registry.register_collector(Box::new(metrics::ExposureCollector::new(
        sources.exposure.clone(),
        metrics,
    )));
    registry.register_collector(Box::new(metrics::RemoteCollector::new(
        store.clone(),
        sources.peers.clone(),
        metrics,
    )));
    let registry = Arc::new(registry);
    let router = Router::new()
        .route("/top", get(get_top))
        .route("/explain", get(get_explain))
        .route("/exposure", get(get_exposure))
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(get_healthz))
        .fallback(not_found)
        .with_state(AppState {
            store,
            registry,
            sources,
        });
    if web.users.is_empty() {
        return router;
    }
    let users = auth::Users::new(web.users.clone());
    router.layer(axum::middleware::from_fn_with_state(users, auth::require))
}

/// Serves `router` on `listener`, over TLS when the web config has it, until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    web: &WebConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match &web.tls {
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => {
            let listener = tls::TlsListener::new(listener, config.clone())?;
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody::from(&self))).into_response()
    }
}

/// The query as (name, value) pairs rather than a map, so that a parameter given twice is
/// seen and refused instead of one of its values silently winning.
type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

async fn get_top(State(state): State<AppState>, pairs: Pairs) -> Result<Response, ApiError> {
    let Query(pairs) = pairs.map_err(|rejection| ApiError::QueryString(rejection.to_string()))?;
    let query = TopQuery::from_pairs(&pairs)?;
    let store = state.store.read().unwrap_or_else(|e| e.into_inner());
    let top = top::top(&store, &query, Instant::now(), &state.sources.peers);
    Ok(Json(top).into_response())
}

async fn get_explain(State(state): State<AppState>, pairs: Pairs) -> Result<Response, ApiError> {
    let Query(pairs) = pairs.map_err(|rejection| ApiError::QueryString(rejection.to_string()))?;
    let target = explain::Target::from_pairs(&pairs)?;
    let explanation = explain::explain(&state.store, &state.sources.peers, &target).await?;
    Ok(Json(explanation).into_response())
}

async fn get_exposure(State(state): State<AppState>) -> Response {
    let sources = &state.sources;
    Json(exposure::exposure(&sources.exposure, &sources.peers)).into_response()
}

/// OpenMetrics for clients that ask for it (Prometheus does), the classic text format for
/// the others, as Prometheus' own client libraries negotiate.
async fn get_metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (body, content_type) = if openmetrics {
        (
            metrics::encode(&state.registry),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            metrics::encode_classic(&state.registry),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    };
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(_) => ApiError::EncodeMetrics.into_response(),
    }
}

async fn get_healthz(State(state): State<AppState>) -> Response {
    let store = state.store.read().unwrap_or_else(|e| e.into_inner());
    let health = &store.health;
    Json(api::Health {
        status: "ok".to_string(),
        drains: health.drains,
        uptime_seconds: health.started.elapsed().as_secs(),
        last_drain_microseconds: health.last_drain.as_micros() as u64,
        longest_drain_microseconds: health.longest_drain.as_micros() as u64,
    })
    .into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

//! The HTTP API: /top, /metrics and /healthz.

mod links;
mod metrics;
mod top;

use std::{
    sync::{Arc, RwLock},
    time::Instant,
};

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use prometheus_client::registry::Registry;

use crate::{
    api::{self, ApiError, ErrorBody, TopQuery},
    stats::Store,
};

#[derive(Clone)]
struct AppState {
    store: Arc<RwLock<Store>>,
    registry: Arc<Registry>,
}

pub fn router(store: Arc<RwLock<Store>>) -> Router {
    let registry = Arc::new(metrics::registry(store.clone()));
    Router::new()
        .route("/top", get(get_top))
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(get_healthz))
        .fallback(not_found)
        .with_state(AppState { store, registry })
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
    Ok(Json(top::top(&store, &query, Instant::now())).into_response())
}

async fn get_metrics(State(state): State<AppState>) -> Response {
    match metrics::encode(&state.registry) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
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

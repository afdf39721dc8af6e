//! The HTTP API: /top, /metrics and /healthz.

mod metrics;
mod query;
mod top;

use std::{
    collections::HashMap,
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
use serde_json::json;

use crate::stats::Store;

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

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn get_top(
    State(state): State<AppState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(params)) => params,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid query string: {rejection}"),
            )
        }
    };
    let query = match query::parse(&params) {
        Ok(query) => query,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let store = state.store.read().unwrap_or_else(|e| e.into_inner());
    Json(top::top(&store, &query, Instant::now())).into_response()
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
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed".to_string(),
        ),
    }
}

async fn get_healthz(State(state): State<AppState>) -> Response {
    let store = state.store.read().unwrap_or_else(|e| e.into_inner());
    let health = &store.health;
    Json(json!({
        "status": "ok",
        "drains": health.drains,
        "uptime_seconds": health.started.elapsed().as_secs(),
        "last_drain_microseconds": health.last_drain.as_micros() as u64,
        "longest_drain_microseconds": health.longest_drain.as_micros() as u64,
    }))
    .into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint; try /top, /metrics or /healthz".to_string(),
    )
}

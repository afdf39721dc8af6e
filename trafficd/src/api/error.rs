//! What the API answers when it cannot answer: a typed error whose message is the body's
//! `{"error": "..."}`, naming the problem and what to send instead.

use serde::{Deserialize, Serialize};

use super::MAX_LIMIT;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("invalid query string: {0}")]
    QueryString(String),

    #[error("invalid limit {value:?}: expected a whole number from 1 to {MAX_LIMIT}")]
    Limit { value: String },

    #[error("invalid {name} {value:?}: expected one of {allowed}")]
    Choice {
        name: &'static str,
        value: String,
        allowed: String,
    },

    #[error("parameter {name} is given {count} times: give it once")]
    Duplicate { name: &'static str, count: usize },

    #[error("no such endpoint; try /top, /explain, /exposure, /metrics or /healthz")]
    NotFound,

    #[error(
        "flow {flow} is not known: it is gone (idle past --retention) or never was; \
         /top?by=flow lists the current flows and their ids"
    )]
    FlowGone { flow: String },

    #[error(
        "invalid /explain parameters: {0}; give flow=ID (an id from /top?by=flow) or \
         local=IP:PORT&remote=IP:PORT&protocol=tcp|udp"
    )]
    ExplainParams(String),

    #[error("encoding metrics failed")]
    EncodeMetrics,
}

impl ApiError {
    /// The HTTP status: the client's mistake or the server's.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::QueryString(_)
            | ApiError::Limit { .. }
            | ApiError::Choice { .. }
            | ApiError::Duplicate { .. }
            | ApiError::ExplainParams(_) => 400,
            ApiError::NotFound | ApiError::FlowGone { .. } => 404,
            ApiError::EncodeMetrics => 500,
        }
    }
}

/// The body of every error answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: String,
}

impl From<&ApiError> for ErrorBody {
    fn from(err: &ApiError) -> Self {
        ErrorBody {
            error: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_message() {
        let err = ApiError::Duplicate {
            name: "by",
            count: 2,
        };
        let body = serde_json::to_value(ErrorBody::from(&err)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "parameter by is given 2 times: give it once"})
        );
        assert_eq!(err.status(), 400);
        assert_eq!(ApiError::NotFound.status(), 404);
    }

    #[test]
    fn a_gone_flow_is_not_found_and_says_where_the_ids_are() {
        let gone = ApiError::FlowGone {
            flow: "00ab".into(),
        };
        assert_eq!(gone.status(), 404);
        assert!(gone.to_string().contains("/top?by=flow"), "{gone}");
        let bad = ApiError::ExplainParams("no flow given".into());
        assert_eq!(bad.status(), 400);
        assert!(bad.to_string().contains("flow=ID"), "{bad}");
    }
}

//! A small SQS client: the actions the connector uses, sent as SQS's AWS JSON 1.0
//! protocol (a `POST` of a JSON document, the action in `X-Amz-Target`) over
//! reqwest, signed with [SigV4](super::sigv4), and tried again through the
//! failures that pass (the endpoint unreachable or restarting, throttling, 5xx).

use std::time::Duration;

use serde_json::Value;

use super::settings::SqsSettings;
use super::sigv4::{self, Keys};
use crate::ConnectorError;

/// Why one call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The endpoint could not be reached or did not answer in time.
    Transport(reqwest::Error),
    /// SQS answered with an error: its HTTP status, its code
    /// (`QueueDoesNotExist`, ...) and message.
    Service {
        status: u16,
        code: String,
        message: String,
    },
    /// The answer was not the JSON expected.
    Reply(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(e) => {
                write!(f, "{e}")?;
                // reqwest's own text is terse; the cause says what happened.
                let mut cause = std::error::Error::source(e);
                while let Some(c) = cause {
                    write!(f, ": {c}")?;
                    cause = c.source();
                }
                Ok(())
            }
            Self::Service {
                status,
                code,
                message,
            } => write!(f, "{code} (HTTP {status}): {message}"),
            Self::Reply(why) => write!(f, "an unexpected answer: {why}"),
        }
    }
}

impl std::error::Error for CallError {}

impl CallError {
    /// Whether the same call may succeed later.
    pub(crate) fn transient(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Service { status, code, .. } => {
                *status >= 500
                    || matches!(
                        code.as_str(),
                        "ThrottlingException" | "RequestThrottled" | "ServiceUnavailable"
                    )
            }
            Self::Reply(_) => false,
        }
    }

    /// The service's error code, if SQS answered with one.
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether SQS refused the credentials or the signature.
    pub(crate) fn refused_credentials(&self) -> bool {
        matches!(self, Self::Service { status: 403, .. })
            || matches!(
                self.code(),
                Some(
                    "InvalidClientTokenId"
                        | "UnrecognizedClientException"
                        | "SignatureDoesNotMatch"
                        | "IncompleteSignature"
                        | "InvalidSecurity"
                        | "AccessDenied"
                        | "AccessDeniedException"
                        | "ExpiredToken"
                )
            )
    }
}

/// A client of one SQS endpoint; cheap to clone.
#[derive(Clone)]
pub(crate) struct SqsClient {
    pub settings: SqsSettings,
    http: reqwest::Client,
    endpoint: String,
    host: String,
    region: String,
    keys: Keys,
}

impl SqsClient {
    /// A client for `settings`, with credentials from the environment.
    pub(crate) fn new(settings: &SqsSettings) -> Result<Self, ConnectorError> {
        let endpoint = settings.endpoint_url()?;
        let region = settings.region_name()?;
        let url = reqwest::Url::parse(&endpoint)
            .map_err(|e| settings.error("the endpoint is not a URL").caused_by(e))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(settings.error("the endpoint URL has no host")),
        };
        let keys = settings.keys()?;
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeout_duration())
            .build()
            .map_err(|e| settings.error("cannot make an HTTP client").caused_by(e))?;
        Ok(Self {
            settings: settings.clone(),
            http,
            endpoint,
            host,
            region,
            keys,
        })
    }

    /// Sends `action` (`ReceiveMessage`, ...) with `body` once; `wait` is how long
    /// the server may hold the call (long polling) beyond the settings' timeout.
    pub(crate) async fn call_once(
        &self,
        action: &str,
        body: &Value,
        wait: Duration,
    ) -> Result<Value, CallError> {
        let payload = serde_json::to_vec(body).map_err(|e| CallError::Reply(e.to_string()))?;
        let amz_date = sigv4::amz_date(std::time::SystemTime::now());
        let target = format!("AmazonSQS.{action}");
        let mut headers = vec![
            (
                "content-type".to_string(),
                "application/x-amz-json-1.0".to_string(),
            ),
            ("host".to_string(), self.host.clone()),
            ("x-amz-date".to_string(), amz_date.clone()),
            ("x-amz-target".to_string(), target),
        ];
        if let Some(token) = &self.keys.session_token {
            headers.push(("x-amz-security-token".to_string(), token.clone()));
        }
        let request = sigv4::Request {
            method: "POST",
            path: "/",
            headers,
            body: &payload,
        };
        let auth = sigv4::authorization(&self.keys, &self.region, "sqs", &amz_date, &request);
        let mut builder = self
            .http
            .post(format!("{}/", self.endpoint))
            .timeout(self.settings.timeout_duration() + wait)
            .header("authorization", auth);
        for (name, value) in request.headers {
            if name != "host" {
                builder = builder.header(name, value);
            }
        }
        let response = builder
            .body(payload)
            .send()
            .await
            .map_err(CallError::Transport)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(CallError::Transport)?;
        let value: Value = if bytes.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                if status >= 400 {
                    return CallError::Service {
                        status,
                        code: format!("HTTP {status}"),
                        message: text,
                    };
                }
                CallError::Reply(format!("{e}: {text}"))
            })?
        };
        if status >= 400 {
            let field = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
            let code = field("__type")
                .map(|t| t.rsplit('#').next().unwrap_or(&t).to_string())
                .unwrap_or_else(|| format!("HTTP {status}"));
            let message = field("message")
                .or_else(|| field("Message"))
                .unwrap_or_default();
            return Err(CallError::Service {
                status,
                code,
                message,
            });
        }
        Ok(value)
    }

    /// Sends `action` until it is answered, trying again through transient
    /// failures for at most `patience` (`None`: for ever), saying once on stderr
    /// that `what` waits. Only calls that are safe to send twice belong here.
    pub(crate) async fn call(
        &self,
        action: &str,
        body: &Value,
        wait: Duration,
        what: &(dyn Fn() -> String + Sync),
        patience: Option<Duration>,
    ) -> Result<Value, CallError> {
        let give_up = patience.map(|p| tokio::time::Instant::now() + p);
        let mut pause = Duration::from_millis(100);
        let mut waited = false;
        loop {
            match self.call_once(action, body, wait).await {
                Ok(v) => {
                    if waited {
                        eprintln!("sqs at {}: {} goes on", self.settings.server(), what());
                    }
                    return Ok(v);
                }
                Err(e)
                    if e.transient() && give_up.is_none_or(|t| tokio::time::Instant::now() < t) =>
                {
                    if !waited {
                        waited = true;
                        eprintln!(
                            "sqs at {}: {} waits for the endpoint: {e}",
                            self.settings.server(),
                            what()
                        );
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The error for a failed call about `queue`: a missing queue and refused
    /// credentials said as such, anything else as `doing`.
    pub(crate) fn error(&self, queue: &str, doing: &str, e: CallError) -> ConnectorError {
        let action = match e.code() {
            Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue") => {
                format!("queue {queue:?} does not exist ({doing})")
            }
            _ if e.refused_credentials() => format!(
                "the credentials were refused {doing} queue {queue:?} (check \
                 AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN)"
            ),
            _ => format!("{doing} queue {queue:?}"),
        };
        self.settings.error(action).caused_by(e)
    }

    /// The URL of the queue named `queue` (a URL is taken as it is).
    pub(crate) async fn queue_url(&self, queue: &str) -> Result<String, ConnectorError> {
        if queue.starts_with("https://") || queue.starts_with("http://") {
            return Ok(queue.to_string());
        }
        let what = || format!("looking up queue {queue:?}");
        let answer = self
            .call(
                "GetQueueUrl",
                &serde_json::json!({ "QueueName": queue }),
                Duration::ZERO,
                &what,
                Some(self.settings.timeout_duration()),
            )
            .await
            .map_err(|e| self.error(queue, "looking up", e))?;
        answer
            .get("QueueUrl")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                self.settings
                    .error(format!("no QueueUrl in the answer for queue {queue:?}"))
            })
    }
}

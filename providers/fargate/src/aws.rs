//! The AWS clients (ECS, CloudWatch Logs, Secrets Manager) and what their
//! errors mean for the core.
//!
//! Clients come from the SDK's default chain: credentials from the
//! environment, a profile, web identity (IRSA) or the container's
//! credentials endpoint; endpoints from the standard settings
//! (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_ECS`...), which is how VPC endpoints
//! and the tests point them elsewhere. TLS is rustls with ring. The SDK's
//! standard retry handles transient errors first; what is left after it is
//! [`ProviderError::Unavailable`], with the throttled call's `Retry-After`
//! when the answer had one.

use std::error::Error as StdError;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ecs::config::http::HttpResponse;
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{Provider as TlsProvider, rustls_provider::CryptoMode};
use vk_core::provider::ProviderError;

/// The three clients the provider uses.
#[derive(Clone, Debug)]
pub struct Clients {
    /// ECS: clusters, task definitions, tasks.
    pub ecs: aws_sdk_ecs::Client,
    /// CloudWatch Logs: the containers' output.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// Secrets Manager: the pods' Secret-backed env values.
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Clients {
    /// Clients for `region` from the default credential and endpoint chain.
    pub async fn load(region: &str) -> Clients {
        Clients::from_loader(region, aws_config::defaults(BehaviorVersion::latest())).await
    }

    /// Clients for `region` from `loader` (the tests' endpoint and
    /// credentials), over the provider's HTTPS client.
    pub async fn from_loader(region: &str, loader: aws_config::ConfigLoader) -> Clients {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(TlsProvider::Rustls(CryptoMode::Ring))
            .build_https();
        let sdk = loader
            .region(Region::new(region.to_string()))
            .http_client(http)
            .load()
            .await;
        Clients {
            ecs: aws_sdk_ecs::Client::new(&sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
        }
    }
}

/// Error codes AWS APIs use when they throttle a caller.
const THROTTLING: [&str; 6] = [
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
];

/// The retry hint when a throttled answer gave none: ECS refills its token
/// buckets every second.
const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(1);

/// The error code of a service error (`ThrottlingException`...), if the
/// call got an answer.
pub fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// Whether an error says the thing asked for does not exist.
pub fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    error_code(err).is_some_and(|c| c.ends_with("NotFoundException") || c.ends_with("NotFound"))
}

/// A call that failed after the SDK's retries, for the core: `what` names
/// the call and the pod (`RunTask for ns/web`). Throttling is
/// [`ProviderError::Unavailable`] with a retry hint (the answer's
/// `Retry-After`, else a second); an invalid parameter is
/// [`ProviderError::InvalidInput`]; anything else is `Unavailable`.
pub fn provider_error<E>(what: &str, err: SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let code = error_code(&err).map(str::to_string);
    let message = match &err {
        SdkError::ServiceError(e) => {
            let m = e.err().message().unwrap_or("no message");
            format!("{what}: {}: {m}", code.as_deref().unwrap_or("error"))
        }
        other => format!("{what}: {}", chain(other)),
    };
    match code.as_deref() {
        Some(c) if THROTTLING.contains(&c) => {
            let hint = err
                .raw_response()
                .and_then(|r| r.headers().get("retry-after"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_THROTTLE_WAIT);
            ProviderError::unavailable(message).retry_after(hint)
        }
        Some("InvalidParameterException") => ProviderError::InvalidInput(message),
        _ => ProviderError::unavailable(message),
    }
}

/// An error and its sources, on one line.
fn chain(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use aws_sdk_ecs::error::ErrorMetadata;
    use aws_sdk_ecs::operation::run_task::RunTaskError;
    use aws_sdk_ecs::types::error::{ClientException, InvalidParameterException};
    use aws_smithy_types::body::SdkBody;

    fn response(status: u16, retry_after: Option<&str>) -> HttpResponse {
        let mut r = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        if let Some(v) = retry_after {
            r.headers_mut().insert("retry-after", v.to_string());
        }
        r
    }

    fn service(code: &str, retry_after: Option<&str>) -> SdkError<RunTaskError, HttpResponse> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("Rate exceeded")
            .build();
        let err = RunTaskError::generic(meta);
        SdkError::service_error(err, response(400, retry_after))
    }

    #[test]
    fn errors_mean_what_they_say_to_the_core() {
        let throttled = provider_error("RunTask for ns/web", service("ThrottlingException", None));
        assert!(matches!(throttled, ProviderError::Unavailable { .. }));
        assert_eq!(throttled.retry_hint(), Some(Duration::from_secs(1)));
        assert_eq!(
            throttled.message(),
            "RunTask for ns/web: ThrottlingException: Rate exceeded"
        );
        let hinted = provider_error("x", service("TooManyRequestsException", Some("7")));
        assert_eq!(hinted.retry_hint(), Some(Duration::from_secs(7)));

        let invalid = SdkError::service_error(
            RunTaskError::InvalidParameterException(
                InvalidParameterException::builder()
                    .message("bad subnet")
                    .meta(
                        ErrorMetadata::builder()
                            .code("InvalidParameterException")
                            .message("bad subnet")
                            .build(),
                    )
                    .build(),
            ),
            response(400, None),
        );
        let invalid = provider_error("RunTask", invalid);
        assert!(
            matches!(invalid, ProviderError::InvalidInput(_)),
            "{invalid:?}"
        );
        assert!(invalid.message().contains("bad subnet"));

        let client = SdkError::service_error(
            RunTaskError::ClientException(
                ClientException::builder()
                    .meta(ErrorMetadata::builder().code("ClientException").build())
                    .build(),
            ),
            response(400, None),
        );
        let client = provider_error("RunTask", client);
        assert!(matches!(
            client,
            ProviderError::Unavailable {
                retry_after: None,
                ..
            }
        ));

        let timeout: SdkError<RunTaskError, HttpResponse> =
            SdkError::timeout_error("took too long");
        let timeout = provider_error("ListTasks", timeout);
        assert!(matches!(
            timeout,
            ProviderError::Unavailable {
                retry_after: None,
                ..
            }
        ));
        assert!(timeout.message().starts_with("ListTasks: "), "{timeout:?}");
    }

    #[test]
    fn not_found_codes() {
        assert!(is_not_found(&service("ResourceNotFoundException", None)));
        assert!(is_not_found(&service("ClusterNotFoundException", None)));
        assert!(!is_not_found(&service("ThrottlingException", None)));
    }
}

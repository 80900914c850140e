//! `GET /containerLogs/{namespace}/{pod}/{container}`: query parsing (pure, fuzzed)
//! and the streamed response, with `limitBytes` enforced by the core.

use std::collections::HashMap;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;

use crate::provider::{ByteStream, LogOptions};

/// Parses the kubelet log query parameters. Errors name the parameter.
pub fn parse_log_query(query: &str) -> Result<LogOptions, String> {
    let mut params: HashMap<String, String> = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k).ok_or_else(|| format!("invalid query parameter {k:?}"))?;
        let v = percent_decode(v).ok_or_else(|| format!("invalid value for {k}"))?;
        params.insert(k, v);
    }
    let flag = |name: &str| -> Result<bool, String> {
        match params.get(name).map(String::as_str) {
            None | Some("false") | Some("0") => Ok(false),
            Some("") | Some("true") | Some("1") => Ok(true),
            Some(other) => Err(format!("{name}: {other:?} is not a boolean")),
        }
    };
    let number = |name: &str| -> Result<Option<i64>, String> {
        params
            .get(name)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| format!("{name}: {v:?} is not an integer"))
            })
            .transpose()
    };
    let since_seconds = number("sinceSeconds")?;
    let since_time = params.get("sinceTime");
    if since_seconds.is_some() && since_time.is_some() {
        return Err("at most one of sinceSeconds or sinceTime may be specified".into());
    }
    let since = match (since_seconds, since_time) {
        (Some(s), _) if s < 1 => return Err("sinceSeconds must be greater than 0".into()),
        (Some(s), _) => Some(
            jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(s))
                .map_err(|_| "sinceSeconds is too large".to_string())?,
        ),
        (None, Some(t)) => Some(
            t.parse::<jiff::Timestamp>()
                .map_err(|_| format!("sinceTime: {t:?} is not RFC3339"))?,
        ),
        (None, None) => None,
    };
    let tail_lines = match number("tailLines")? {
        Some(n) if n < 0 => return Err("tailLines must be zero or positive".into()),
        Some(n) => Some(n as u64),
        None => None,
    };
    let limit_bytes = match number("limitBytes")? {
        Some(n) if n < 1 => return Err("limitBytes must be greater than 0".into()),
        Some(n) => Some(n as u64),
        None => None,
    };
    Ok(LogOptions {
        follow: flag("follow")?,
        previous: flag("previous")?,
        timestamps: flag("timestamps")?,
        since,
        tail_lines,
        limit_bytes,
    })
}

/// Decodes `%XX` escapes and `+` in a query component; `None` when malformed or not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Streams a provider's log stream to the client, cut at `limit_bytes`.
pub fn stream_response(stream: ByteStream, limit_bytes: Option<u64>) -> Response {
    let limited = futures::stream::unfold((stream, limit_bytes), |(mut s, left)| async move {
        if left == Some(0) {
            return None;
        }
        let chunk = s.next().await?;
        Some(match chunk {
            Ok(mut b) => {
                let left = left.map(|l| {
                    if (b.len() as u64) > l {
                        b = b.slice(..l as usize);
                    }
                    l - b.len() as u64
                });
                (Ok::<Bytes, std::io::Error>(b), (s, left))
            }
            Err(e) => (Err(e), (s, Some(0))),
        })
    });
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(limited),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_parameter() {
        let o =
            parse_log_query("follow=true&previous=1&timestamps=true&tailLines=5&limitBytes=100")
                .unwrap();
        assert!(o.follow && o.previous && o.timestamps);
        assert_eq!(o.tail_lines, Some(5));
        assert_eq!(o.limit_bytes, Some(100));
        let o = parse_log_query("sinceTime=2026-01-02T03%3A04%3A05Z").unwrap();
        assert_eq!(o.since.unwrap().to_string(), "2026-01-02T03:04:05Z");
        let o = parse_log_query("sinceSeconds=10").unwrap();
        assert!(o.since.unwrap() < jiff::Timestamp::now());
        assert_eq!(parse_log_query("").unwrap(), LogOptions::default());
    }

    #[test]
    fn rejects_bad_values() {
        for q in [
            "follow=maybe",
            "tailLines=-1",
            "tailLines=x",
            "limitBytes=0",
            "sinceSeconds=0",
            "sinceSeconds=5&sinceTime=2026-01-02T03:04:05Z",
            "sinceTime=yesterday",
            "sinceSeconds=99999999999999",
            "follow=%ZZ",
        ] {
            assert!(parse_log_query(q).is_err(), "{q}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_queries(q in ".{0,200}") {
            let _ = parse_log_query(&q);
        }

        #[test]
        fn never_panics_on_parameter_soup(
            parts in proptest::collection::vec(
                (proptest::sample::select(vec!["follow", "previous", "timestamps", "sinceSeconds", "sinceTime", "tailLines", "limitBytes", "x"]),
                 "[-0-9a-zA-Z%:.TZ+]{0,24}"),
                0..8,
            )
        ) {
            let q: Vec<String> = parts.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = parse_log_query(&q.join("&"));
        }

        #[test]
        fn valid_numbers_round_trip(tail in 0u32..1_000_000, limit in 1u32..1_000_000) {
            let o = parse_log_query(&format!("tailLines={tail}&limitBytes={limit}")).unwrap();
            proptest::prop_assert_eq!(o.tail_lines, Some(u64::from(tail)));
            proptest::prop_assert_eq!(o.limit_bytes, Some(u64::from(limit)));
        }
    }

    #[tokio::test]
    async fn limit_bytes_cuts_the_stream() {
        let chunks: Vec<std::io::Result<Bytes>> =
            vec![Ok(Bytes::from("hello ")), Ok(Bytes::from("world\n"))];
        let resp = stream_response(Box::pin(futures::stream::iter(chunks)), Some(8));
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"hello wo");
    }
}

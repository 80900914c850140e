//! A token cache in front of the azure_identity credential, so that a
//! short-lived token is not fetched again for every ARM call.
//!
//! azure_core's bearer token policy and azure_identity's own cache both
//! renew a token once it is within 5 minutes of expiring. With tokens that
//! live less than that (Entra ID's token lifetime policies go down to 10
//! minutes; the tests use 2), every token is "about to expire" and every ARM
//! call asks Entra ID for a new one: twice the calls, against an endpoint
//! that throttles too. This cache hands out the token it holds until it
//! has lived half its lifetime or is within 5 minutes of expiring, whichever
//! comes later, so a 2-minute token is renewed once a minute and a 1-hour
//! token at 55 minutes, as before. When renewing fails and the held token
//! is still valid, the held token is used and the next call tries again.

use std::sync::Arc;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::time::{Duration, OffsetDateTime};
use tokio::sync::Mutex;

/// The most a token is renewed ahead of its expiry (azure_core's window).
const RENEW_AHEAD_MAX: Duration = Duration::minutes(5);

/// When a token fetched at `fetched` and expiring at `expires_on` is
/// renewed: half its lifetime ahead of expiry, at most 5 minutes ahead.
pub fn renew_at(fetched: OffsetDateTime, expires_on: OffsetDateTime) -> OffsetDateTime {
    let lifetime = expires_on - fetched;
    let ahead = if lifetime / 2 < RENEW_AHEAD_MAX {
        lifetime / 2
    } else {
        RENEW_AHEAD_MAX
    };
    expires_on - ahead
}

/// The held token: for which scopes, and when to renew it.
#[derive(Debug)]
struct Held {
    scopes: Vec<String>,
    token: AccessToken,
    renew_at: OffsetDateTime,
}

/// A [`TokenCredential`] that caches `inner`'s token (see the module doc).
#[derive(Debug)]
pub struct RenewingCredential {
    inner: Arc<dyn TokenCredential>,
    held: Mutex<Option<Held>>,
}

impl RenewingCredential {
    /// A cache in front of `inner`.
    pub fn new(inner: Arc<dyn TokenCredential>) -> RenewingCredential {
        RenewingCredential {
            inner,
            held: Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl TokenCredential for RenewingCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let mut held = self.held.lock().await;
        let now = OffsetDateTime::now_utc();
        let same_scopes = |h: &Held| {
            h.scopes
                .iter()
                .map(String::as_str)
                .eq(scopes.iter().copied())
        };
        if let Some(h) = held.as_ref()
            && same_scopes(h)
            && now < h.renew_at
        {
            return Ok(h.token.clone());
        }
        match self.inner.get_token(scopes, options).await {
            Ok(token) => {
                *held = Some(Held {
                    scopes: scopes.iter().map(|s| s.to_string()).collect(),
                    renew_at: renew_at(now, token.expires_on),
                    token: token.clone(),
                });
                Ok(token)
            }
            Err(e) => match held.as_ref() {
                Some(h) if same_scopes(h) && h.token.expires_on > OffsetDateTime::now_utc() => {
                    tracing::warn!(error = %e, "renewing the Entra ID token failed; the held token is still valid");
                    Ok(h.token.clone())
                }
                _ => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicU32, Ordering};

    use azure_core::error::{Error, ErrorKind};

    use super::*;

    /// Issues `token-<n>` living `lifetime`, or fails when `fail` is set.
    #[derive(Debug)]
    struct Issuer {
        lifetime: Duration,
        issued: AtomicU32,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl TokenCredential for Issuer {
        async fn get_token(
            &self,
            _scopes: &[&str],
            _options: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(Error::with_message(ErrorKind::Credential, "AADSTS7000215"));
            }
            let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(AccessToken::new(
                format!("token-{n}"),
                OffsetDateTime::now_utc() + self.lifetime,
            ))
        }
    }

    fn issuer(lifetime: Duration) -> Arc<Issuer> {
        Arc::new(Issuer {
            lifetime,
            issued: AtomicU32::new(0),
            fail: Default::default(),
        })
    }

    #[test]
    fn renewal_is_at_half_life_or_five_minutes_ahead() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        for (lifetime, ahead) in [
            (Duration::minutes(2), Duration::minutes(1)),
            (Duration::minutes(10), Duration::minutes(5)),
            (Duration::minutes(60), Duration::minutes(5)),
            (Duration::seconds(1), Duration::milliseconds(500)),
        ] {
            assert_eq!(
                renew_at(t0, t0 + lifetime),
                t0 + lifetime - ahead,
                "{lifetime}"
            );
        }
    }

    #[tokio::test]
    async fn a_short_lived_token_is_reused_until_half_its_life() {
        let inner = issuer(Duration::minutes(2));
        let cache = RenewingCredential::new(inner.clone());
        let scopes = ["https://management.azure.com/.default"];
        for _ in 0..20 {
            let t = cache.get_token(&scopes, None).await.unwrap();
            assert_eq!(t.token.secret(), "token-1");
        }
        assert_eq!(inner.issued.load(Ordering::SeqCst), 1);
        // Other scopes: another token.
        let other = cache.get_token(&["other/.default"], None).await.unwrap();
        assert_eq!(other.token.secret(), "token-2");
    }

    #[tokio::test]
    async fn a_token_past_half_life_is_renewed_and_kept_when_renewal_fails() {
        let inner = issuer(Duration::milliseconds(400));
        let cache = RenewingCredential::new(inner.clone());
        let scopes = ["s/.default"];
        assert_eq!(
            cache.get_token(&scopes, None).await.unwrap().token.secret(),
            "token-1"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        assert_eq!(
            cache.get_token(&scopes, None).await.unwrap().token.secret(),
            "token-2"
        );
        // Past half-life, renewal fails: the valid token is still handed out.
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        inner.fail.store(true, Ordering::SeqCst);
        assert_eq!(
            cache.get_token(&scopes, None).await.unwrap().token.secret(),
            "token-2"
        );
        // Expired, renewal still failing: the error.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let e = cache.get_token(&scopes, None).await.unwrap_err();
        assert!(e.to_string().contains("AADSTS7000215"), "{e}");
    }
}

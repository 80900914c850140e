//! The Entra ID token endpoint: client-credential requests answered with
//! tokens the ARM routes then accept.

use std::collections::HashMap;

use serde_json::json;

use super::routes::{Answer, Shape, answer};
use super::state::State;

pub(super) fn token(st: &mut State, tenant: &str, raw: &[u8]) -> Answer {
    let form: HashMap<String, String> = String::from_utf8_lossy(raw)
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let decode = |s: &str| {
                let s = s.replace('+', " ");
                percent_decode(&s)
            };
            Some((decode(k), decode(v)))
        })
        .collect();
    if tenant != st.options.tenant {
        return answer(
            400,
            json!({"error": "invalid_request", "error_description": format!("AADSTS90002: Tenant '{tenant}' not found.")}),
            Shape::Other,
        );
    }
    if let Some(secret) = &st.options.client_secret
        && form.get("client_secret") != Some(secret)
    {
        return answer(
            401,
            json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
            Shape::Other,
        );
    }
    let token = format!("fake-token-{}", st.next_id);
    st.next_id += 1;
    let lifetime = st.options.token_lifetime;
    st.tokens
        .insert(token.clone(), std::time::Instant::now() + lifetime);
    let lifetime = lifetime.as_secs();
    answer(
        200,
        json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}),
        Shape::Other,
    )
}

pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(hex), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

//! The fake ARM server itself, called directly: what the tests above rely
//! on it to catch (an expired token, a write served whose answer is lost).

use std::time::Duration;

use serde_json::{Value, json};
use vk_test_support::fake_arm::ACI_API_VERSION;
use vk_test_support::{FakeArm, FakeArmOptions};

/// An HTTPS client trusting the fake's CA.
fn client(arm: &FakeArm) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(arm.ca_file()).unwrap();
    reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
        .build()
        .unwrap()
}

async fn token(arm: &FakeArm, http: &reqwest::Client) -> String {
    let o = arm.options();
    let answer: Value = http
        .post(format!("{}/{}/oauth2/v2.0/token", arm.endpoint(), o.tenant))
        .body("grant_type=client_credentials&client_id=c&client_secret=s3cret&scope=x")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    answer["access_token"].as_str().unwrap().to_string()
}

fn group_url(arm: &FakeArm, name: &str) -> String {
    let o = arm.options();
    format!(
        "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerInstance/containerGroups/{name}?api-version={ACI_API_VERSION}",
        arm.endpoint(),
        o.subscription,
        o.resource_group
    )
}

#[tokio::test]
async fn the_fake_refuses_an_expired_token() {
    let arm = FakeArm::start(FakeArmOptions {
        token_lifetime: Duration::from_secs(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let http = client(&arm);
    let token = token(&arm, &http).await;
    let get = || http.get(group_url(&arm, "none")).bearer_auth(&token).send();
    assert_eq!(get().await.unwrap().status(), 404, "valid: served");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = get().await.unwrap();
    assert_eq!(expired.status(), 401);
    let body: Value = serde_json::from_slice(&expired.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "ExpiredAuthenticationToken");
}

#[tokio::test]
async fn a_500_from_the_fault_share_is_sent_after_the_write_is_served() {
    let arm = FakeArm::start(FakeArmOptions::default()).await.unwrap();
    let http = client(&arm);
    let token = token(&arm, &http).await;
    let body = json!({"location": "westeurope", "tags": {"io.vk-rs.pod-name": "p"},
        "properties": {"osType": "Linux", "containers": [{"name": "c", "properties": {
            "image": "busybox", "resources": {"requests": {"cpu": 1.0, "memoryInGB": 1.0}}}}]}});
    let put = || {
        http.put(group_url(&arm, "g1"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    // Every call faulted: 429 (not served), then 500 (served, answer lost).
    arm.fault_share(1.0, 1);
    let first = put().await.unwrap();
    assert_eq!(first.status(), 429);
    assert_eq!(first.headers()["retry-after"], "1");
    assert!(arm.created_groups().is_empty(), "a 429 serves nothing");
    assert_eq!(put().await.unwrap().status(), 500);
    let created = arm.created_groups();
    assert_eq!(created.len(), 1, "the 500 came after the group was made");
    assert_eq!(created[0].1["io.vk-rs.pod-name"], "p");
    arm.fault_share(0.0, 0);
    // The retry is an update, not a second group.
    assert_eq!(put().await.unwrap().status(), 200);
    assert_eq!(arm.created_groups().len(), 1);
    assert!(arm.violations().is_empty(), "{:?}", arm.violations());
}

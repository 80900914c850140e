//! The `vk-edge` image: built by `cargo xtask build-images` (every provider
//! in one cargo invocation), loaded into rootful podman and run.

use vk_test_support::provider_image;

#[tokio::test]
async fn the_image_loads_runs_and_declares_its_user_entrypoint_and_labels() {
    let Some(image) = provider_image("edge").await else {
        return;
    };
    image.assert_runs_and_declares();
}

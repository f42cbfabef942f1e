//! The foreign client's Python.

use std::time::Duration;

use gastown_testkit::python_with_nats;
use tokio::time::timeout;

#[tokio::test]
async fn python_with_nats_should_import_nats() {
    let python = timeout(Duration::from_secs(300), python_with_nats()).await.expect("venv creation hung (pip?)").unwrap();
    let out = std::process::Command::new(&python)
        .args(["-c", "import nats, importlib.metadata as m; print(m.version('nats-py'))"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2.16.0");
    // A second call is served from the cache.
    assert_eq!(python_with_nats().await.unwrap(), python);
}

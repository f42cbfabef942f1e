//! Finding and installing the pinned binary (crosses the process boundary: pip, the binary).

use std::path::PathBuf;

use gastown_natsd::{MIN_VERSION, find_or_install};

fn workspace_tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(".gastown").join("tools")
}

#[test]
fn find_or_install_should_give_a_supported_binary() {
    let binary = find_or_install(&workspace_tools_dir()).unwrap();
    assert!(binary.version >= MIN_VERSION, "{binary:?}");
    assert!(binary.path.is_file(), "{binary:?}");
}

#[test]
fn concurrent_installs_into_a_fresh_dir_should_agree() {
    // Skip when an environment override would bypass the install path.
    if std::env::var_os("NATS_SERVER_BIN").is_some() || which_nats_server() {
        eprintln!("skipped: NATS_SERVER_BIN or a nats-server on PATH bypasses the install");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || find_or_install(&dir))
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
    assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
    assert_eq!(results[0].path, dir.path().join("nats-server-2.15.1").join("nats-server"));
    assert_eq!(results[0].version.to_string(), "2.15.1");
}

fn which_nats_server() -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join("nats-server").is_file())).unwrap_or(false)
}

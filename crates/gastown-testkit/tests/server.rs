//! A single real `nats-server`: start, JetStream, restart with the same store, kill -9, drop.

use std::time::Duration;

use gastown_testkit::TestServer;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);

/// Whether a process is gone (no /proc entry, or a zombie waiting to be reaped).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_gone(pid: u32) -> bool {
    for _ in 0..100 {
        if process_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The server's greeting (`INFO {...}`), read from a fresh TCP connection.
async fn read_info(port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut buf = vec![0_u8; 4096];
    let n = stream.read(&mut buf).await?;
    buf.truncate(n);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[tokio::test]
async fn server_should_accept_connections_and_report_jetstream() {
    let server = timeout(LIMIT, TestServer::start()).await.expect("server start hung").unwrap();
    assert!(server.url().starts_with("nats://127.0.0.1:"), "{}", server.url());
    let info = timeout(LIMIT, read_info(server.port())).await.expect("INFO hung").unwrap();
    assert!(info.starts_with("INFO {"), "{info}");
    assert!(info.contains("\"jetstream\":true"), "{info}");
    let jsz = timeout(LIMIT, server.jsz()).await.expect("/jsz hung").unwrap();
    assert!(jsz.get("config").is_some(), "{jsz}");
    assert_ne!(jsz.get("disabled").and_then(|v| v.as_bool()), Some(true), "{jsz}");
}

#[tokio::test]
async fn restart_should_keep_port_and_store() {
    let mut server = timeout(LIMIT, TestServer::start()).await.expect("server start hung").unwrap();
    let (url, first_pid) = (server.url(), server.pid().unwrap());
    let jetstream_dir = server.store_dir().join("jetstream");
    assert!(jetstream_dir.is_dir(), "JetStream should create {}", jetstream_dir.display());
    let marker = jetstream_dir.join("kept-by-restart");
    std::fs::write(&marker, b"x").unwrap();

    timeout(LIMIT, server.restart()).await.expect("restart hung").unwrap();
    assert_eq!(server.url(), url);
    assert_ne!(server.pid().unwrap(), first_pid);
    assert!(wait_gone(first_pid).await, "old process {first_pid} should be gone");
    assert!(marker.is_file(), "store should survive a restart");
    let info = timeout(LIMIT, read_info(server.port())).await.expect("INFO hung").unwrap();
    assert!(info.contains("\"jetstream\":true"), "{info}");
}

#[tokio::test]
async fn kill_should_end_the_process_and_restart_should_recover() {
    let mut server = timeout(LIMIT, TestServer::start()).await.expect("server start hung").unwrap();
    let pid = server.pid().unwrap();
    timeout(LIMIT, server.kill()).await.expect("kill hung").unwrap();
    assert!(server.pid().is_none());
    assert!(wait_gone(pid).await, "killed process {pid} should be gone");
    assert!(TcpStream::connect(("127.0.0.1", server.port())).await.is_err(), "nothing should listen after kill");

    timeout(LIMIT, server.restart()).await.expect("restart after kill hung").unwrap();
    let info = timeout(LIMIT, read_info(server.port())).await.expect("INFO hung").unwrap();
    assert!(info.starts_with("INFO {"), "{info}");
}

#[tokio::test]
async fn stop_should_end_the_process() {
    let mut server = timeout(LIMIT, TestServer::start()).await.expect("server start hung").unwrap();
    let pid = server.pid().unwrap();
    timeout(LIMIT, server.stop()).await.expect("stop hung").unwrap();
    assert!(wait_gone(pid).await, "stopped process {pid} should be gone");
}

#[tokio::test]
async fn drop_should_kill_the_process_and_remove_the_store() {
    let server = timeout(LIMIT, TestServer::start()).await.expect("server start hung").unwrap();
    let pid = server.pid().unwrap();
    let dir = server.temp_dir().to_path_buf();
    drop(server);
    assert!(wait_gone(pid).await, "dropped server's process {pid} should be gone");
    assert!(!dir.exists(), "temporary store {} should be deleted", dir.display());
}

#[tokio::test]
async fn parallel_servers_should_get_distinct_ports() {
    let (a, b, c) = timeout(LIMIT, async { tokio::join!(TestServer::start(), TestServer::start(), TestServer::start()) })
        .await
        .expect("parallel starts hung");
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert!(a.port() != b.port() && b.port() != c.port() && a.port() != c.port());
}

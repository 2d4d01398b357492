// SPDX-License-Identifier: Apache-2.0 OR MIT
//! A private DNS server for DKIM key records, shared by the integration
//! tests (through `common`) and by `bench/dkim.rs` (by path), so it uses
//! nothing but the standard library.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// A private dnsmasq (Debian package dnsmasq-base) answering TXT queries
/// on a loopback port from the records it was started with; names under
/// their domains that it does not hold get NXDOMAIN. Stopped on drop.
pub struct DnsServer {
    child: Option<std::process::Child>,
    pub port: u16,
}

impl DnsServer {
    /// Starts dnsmasq in `dir` with `records` (name, TXT text) and waits
    /// until it answers; the error says what to install when dnsmasq is
    /// missing.
    pub fn launch(dir: &Path, records: &[(String, String)]) -> Result<DnsServer, String> {
        let program = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or("dnsmasq is not installed (Debian package dnsmasq-base)")?;
        let mut records_conf = String::new();
        let mut domains: Vec<String> = Vec::new();
        for (name, text) in records {
            // A TXT string holds at most 255 bytes: longer records are
            // served as several strings, which readers join.
            let chunks: Vec<String> = text
                .as_bytes()
                .chunks(200)
                .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
                .collect();
            records_conf.push_str(&format!("txt-record={name},{}\n", chunks.join(",")));
            if let Some((_, domain)) = name.split_once("._domainkey.")
                && !domains.iter().any(|d| d == domain)
            {
                domains.push(domain.to_string());
            }
        }
        for domain in &domains {
            records_conf.push_str(&format!("local=/{domain}/\n"));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join("dnsmasq.conf");
        let log_path = dir.join("dnsmasq.log");
        // The port is free for UDP when picked, but dnsmasq also listens on
        // TCP, where a busy machine may have it in use: then dnsmasq stops
        // at once, and another port is tried.
        let mut last = String::new();
        for _ in 0..5 {
            let port = std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .expect("a free UDP port")
                .port();
            let conf = format!(
                "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
                 local-ttl=300\n{records_conf}"
            );
            std::fs::write(&path, conf)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            let log = std::fs::File::create(&log_path)
                .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
            let child = Command::new(program)
                .arg("--keep-in-foreground")
                .arg(format!("--conf-file={}", path.display()))
                .arg("--pid-file")
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .expect("dnsmasq starts");
            let mut server = DnsServer {
                child: Some(child),
                port,
            };
            // Ready once it answers a query.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                if server.answers() {
                    return Ok(server);
                }
                if let Some(Ok(Some(status))) = server.child.as_mut().map(|c| c.try_wait()) {
                    last = format!(
                        "dnsmasq stopped ({status}) on port {port}: {}",
                        std::fs::read_to_string(&log_path)
                            .unwrap_or_default()
                            .trim()
                    );
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "dnsmasq did not answer on port {port}"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        panic!("{last}");
    }

    /// `127.0.0.1:PORT`, for `[dns] nameservers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn answers(&self) -> bool {
        let Ok(socket) = std::net::UdpSocket::bind("127.0.0.1:0") else {
            return false;
        };
        let _ = socket.set_read_timeout(Some(std::time::Duration::from_millis(200)));
        // A query for the TXT records of "probe.invalid".
        let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["probe", "invalid"] {
            query.push(label.len() as u8);
            query.extend_from_slice(label.as_bytes());
        }
        query.extend_from_slice(&[0, 0, 16, 0, 1]);
        let mut buf = [0u8; 512];
        socket.send_to(&query, ("127.0.0.1", self.port)).is_ok() && socket.recv(&mut buf).is_ok()
    }

    /// Stops the server: from now on its port does not answer.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

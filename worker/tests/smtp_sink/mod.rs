//! A real SMTP server for the worker's tests: aiosmtpd (Debian's python3-aiosmtpd, which
//! bin/test installs) storing what it receives in a maildir; stopped and cleaned up when
//! dropped.
#![allow(dead_code)]

use std::{net::IpAddr, path::Path, path::PathBuf, process::Child, time::Duration};

pub struct SmtpServer {
    child: Child,
    pub maildir: PathBuf,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

/// aiosmtpd listening on `ip:port`, storing what it receives in a maildir.
pub fn smtp_server(ip: IpAddr, port: u16) -> SmtpServer {
    let maildir = std::env::temp_dir().join(format!("quire-mailer-{}", uuid::Uuid::new_v4().simple()));
    let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
    let child = std::process::Command::new(python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("{ip}:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .spawn()
        .expect("start aiosmtpd (bin/test installs python3-aiosmtpd)");
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect((ip, port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "aiosmtpd did not listen on {ip}:{port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    SmtpServer { child, maildir }
}

pub fn received(server: &SmtpServer) -> Vec<Vec<u8>> {
    std::fs::read_dir(server.maildir.join("new"))
        .map(|d| d.flatten().filter_map(|e| std::fs::read(e.path()).ok()).collect())
        .unwrap_or_default()
}

pub fn free_port(ip: IpAddr) -> u16 {
    std::net::TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}


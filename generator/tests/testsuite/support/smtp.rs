//! A real SMTP server for the e-mail tests: aiosmtpd (`tests/smtp/server.py`, installed
//! into `.tools/py` by scripts/setup.sh), on a loopback port, keeping what it accepts.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

use base64::Engine as _;

use super::local_d1::repo_root;

/// A message as the server received it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The whole message (headers and body) as sent.
    pub data: String,
}

impl Received {
    /// A header's value (RFC 2047 encoded words decoded), the first of that name.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        // Unfold continuation lines first.
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| decode_words(v.trim()))
        })
    }

    /// The body, its Content-Transfer-Encoding undone.
    pub(crate) fn body(&self) -> String {
        let body = self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        match self
            .header("Content-Transfer-Encoding")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            Some("base64") => {
                let joined: String = body.split_whitespace().collect();
                String::from_utf8_lossy(
                    &base64::engine::general_purpose::STANDARD
                        .decode(joined)
                        .expect("a base64 body"),
                )
                .into_owned()
            }
            Some("quoted-printable") => quoted_printable(body),
            _ => body.to_owned(),
        }
        .replace("\r\n", "\n")
    }
}

fn quoted_printable(text: &str) -> String {
    let text = text.replace("=\r\n", "");
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
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

/// `=?utf-8?b?…?=` and `=?utf-8?q?…?=` words decoded (what lettre writes for a
/// non-ASCII subject or name).
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut last_encoded = false;
    for (i, word) in value.split(' ').enumerate() {
        let decoded = word
            .strip_prefix("=?")
            .and_then(|w| w.strip_suffix("?="))
            .and_then(|inner| {
                let parts: Vec<&str> = inner.splitn(3, '?').collect();
                match parts[..] {
                    [_, enc, text] if enc.eq_ignore_ascii_case("b") => {
                        base64::engine::general_purpose::STANDARD
                            .decode(text)
                            .ok()
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                    }
                    [_, enc, text] if enc.eq_ignore_ascii_case("q") => {
                        Some(quoted_printable(&text.replace('_', " ")))
                    }
                    _ => None,
                }
            });
        // RFC 2047: the space between two encoded words is not part of the text.
        if i > 0 && !(last_encoded && decoded.is_some()) {
            out.push(' ');
        }
        last_encoded = decoded.is_some();
        out.push_str(&decoded.unwrap_or_else(|| word.to_owned()));
    }
    out
}

/// The running server; it stops when this is dropped.
pub(crate) struct Smtp {
    /// `smtp://127.0.0.1:<port>` (with credentials when started with some).
    pub url: String,
    outdir: tempfile::TempDir,
    child: Child,
    _stdin: ChildStdin,
}

impl Smtp {
    /// A server accepting mail without authentication.
    pub(crate) fn start() -> Smtp {
        Smtp::start_with(None)
    }

    /// A server that requires `user` and `password` (AUTH without TLS: loopback only).
    pub(crate) fn start_with(credentials: Option<(&str, &str)>) -> Smtp {
        let python = repo_root().join(".tools/py/bin/python");
        assert!(
            python.is_file(),
            "{} is missing: run `bash scripts/setup.sh` (it installs aiosmtpd, the tests' SMTP server)",
            python.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let outdir = tempfile::tempdir().expect("a folder for the mail");
        let mut command = Command::new(&python);
        command
            .arg(repo_root().join("tests/smtp/server.py"))
            .arg(port.to_string())
            .arg(outdir.path());
        if let Some((user, password)) = credentials {
            command.args([user, password]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting aiosmtpd");
        let stdin = child.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("aiosmtpd's first line");
        assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
        let url = match credentials {
            Some((user, password)) => format!("smtp://{user}:{password}@127.0.0.1:{port}"),
            None => format!("smtp://127.0.0.1:{port}"),
        };
        Smtp {
            url,
            outdir,
            child,
            _stdin: stdin,
        }
    }

    /// What the server accepted so far, in order.
    pub(crate) fn received(&self) -> Vec<Received> {
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(self.outdir.path())
            .expect("the mail folder")
            .filter_map(|e| {
                let path = e.ok()?.path();
                let n = path.file_stem()?.to_str()?.parse().ok()?;
                (path.extension()? == "json").then_some((n, path))
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, path)| {
                let v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).expect("a message file"))
                        .expect("a message record");
                Received {
                    mail_from: v["mail_from"].as_str().unwrap_or_default().to_owned(),
                    rcpt_tos: v["rcpt_tos"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|s| s.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    data: v["data"].as_str().unwrap_or_default().to_owned(),
                }
            })
            .collect()
    }

    /// The messages to `address`.
    pub(crate) fn to(&self, address: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|m| m.rcpt_tos.iter().any(|r| r == address))
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

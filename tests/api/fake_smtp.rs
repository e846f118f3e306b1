//! A real SMTP server on loopback that records every message, and can be told to misbehave
//! as real ones do: refuse for now or for good, drop the connection mid-message, answer
//! slowly, or not at all.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::Notify,
};

/// One received message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub raw: String,
}

impl Mail {
    /// The six-digit code in the text part (a verification or a sign-in code).
    pub fn otp(&self) -> String {
        let marker = "code is: ";
        let start = self.text.find(marker).expect("no code in the email") + marker.len();
        self.text[start..start + 6].to_owned()
    }

    /// The first link in the text part that contains `path`.
    pub fn link(&self, path: &str) -> String {
        self.text
            .split_whitespace()
            .find(|word| word.starts_with("http") && word.contains(path))
            .unwrap_or_else(|| panic!("no {path} link in {:?}", self.text))
            .to_owned()
    }

    /// The last segment (the token) of the first link containing `path`.
    pub fn link_token(&self, path: &str) -> String {
        let link = self.link(path);
        link.trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// The `(uidb64, token)` of the first link containing `path`.
    pub fn link_parts(&self, path: &str) -> (String, String) {
        let link = self.link(path);
        let tail = link.split(path).nth(1).expect("link has no tail");
        let mut parts = tail.trim_matches('/').split('/');
        (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
        )
    }
}

/// How the server treats what it is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Takes every message.
    #[default]
    Accept,
    /// Answers each message `451` (try again later).
    RefuseForNow,
    /// Answers each message `550` (never).
    RefuseForGood,
    /// Closes the connection halfway through a message's DATA.
    DropMidData,
    /// Waits this long before greeting each connection.
    SlowGreeting(Duration),
    /// Greets, then never answers again.
    Stall,
}

#[derive(Default)]
struct Shared {
    mails: Mutex<Vec<Mail>>,
    arrived: Notify,
    behaviour: Mutex<Behaviour>,
    refused: AtomicUsize,
    failed: AtomicUsize,
}

impl Shared {
    fn behaviour(&self) -> Behaviour {
        *self.behaviour.lock().unwrap()
    }

    /// Counts a message or connection that did not go through.
    fn fail(&self) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        self.arrived.notify_waiters();
    }
}

/// The server's handle.
#[derive(Clone)]
pub struct FakeSmtp {
    pub port: u16,
    shared: Arc<Shared>,
}

impl FakeSmtp {
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// Starts on `port` (0 for any), e.g. one a server was told of while nothing listened.
    pub async fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let accept = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, Arc::clone(&accept)));
            }
        });
        Self { port, shared }
    }

    /// Answers every message with a temporary failure until told otherwise.
    pub fn refuse_mail(&self, refuse: bool) {
        self.behave(if refuse {
            Behaviour::RefuseForNow
        } else {
            Behaviour::Accept
        });
    }

    /// Treats what arrives from now on as `behaviour` says.
    pub fn behave(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = behaviour;
    }

    /// Waits until `count` messages or connections in all did not go through (refused,
    /// dropped, slow or stalled; 10 s at most).
    pub async fn wait_for_failures(&self, count: usize) {
        self.wait_until(|| {
            let failed = self.shared.failed.load(Ordering::SeqCst);
            (failed >= count)
                .then_some(())
                .ok_or_else(|| format!("{failed} of {count} deliveries failed in time"))
        })
        .await;
    }

    /// How many messages or connections did not go through so far.
    pub fn failures(&self) -> usize {
        self.shared.failed.load(Ordering::SeqCst)
    }

    pub fn all(&self) -> Vec<Mail> {
        self.shared.mails.lock().unwrap().clone()
    }

    pub fn to(&self, address: &str) -> Vec<Mail> {
        self.all()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == address))
            .collect()
    }

    /// Waits until `count` messages have been refused in all (10 s at most).
    pub async fn wait_for_refusals(&self, count: usize) {
        self.wait_until(|| {
            let refused = self.shared.refused.load(Ordering::SeqCst);
            (refused >= count)
                .then_some(())
                .ok_or_else(|| format!("{refused} of {count} messages were refused in time"))
        })
        .await;
    }

    /// Waits until `address` has received `count` messages (10 s at most) and returns them.
    pub async fn wait_for(&self, address: &str, count: usize) -> Vec<Mail> {
        self.wait_until(|| {
            let mails = self.to(address);
            let got = mails.len();
            (got >= count)
                .then_some(mails)
                .ok_or_else(|| format!("{address} got {got} of {count} emails in time"))
        })
        .await
    }

    /// Re-checks `done` whenever a message arrives or fails, until it gives a value; after
    /// 10 s, fails the test with the reason `done` gave last.
    async fn wait_until<T>(&self, done: impl Fn() -> Result<T, String>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let arrived = self.shared.arrived.notified();
            let why = match done() {
                Ok(value) => return value,
                Err(why) => why,
            };
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("{why}");
            }
        }
    }

    /// The newest message whose subject contains `subject`, waiting for it to be the `nth` such.
    pub async fn nth_with_subject(&self, address: &str, subject: &str, nth: usize) -> Mail {
        self.wait_until(|| {
            let mut matching: Vec<Mail> = self
                .to(address)
                .into_iter()
                .filter(|m| m.subject.contains(subject))
                .collect();
            let got = matching.len();
            (got >= nth)
                .then(|| matching.swap_remove(nth - 1))
                .ok_or_else(|| format!("{address} got {got} of {nth} {subject:?} emails in time"))
        })
        .await
    }
}

async fn session(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    match shared.behaviour() {
        Behaviour::SlowGreeting(delay) => {
            shared.fail();
            tokio::time::sleep(delay).await;
        }
        Behaviour::Stall => {
            let _ = write.write_all(b"220 fake-smtp ready\r\n").await;
            shared.fail();
            // Reads (so the peer's writes succeed) and never answers, until it hangs up.
            let mut sink = String::new();
            while lines.read_line(&mut sink).await.unwrap_or(0) > 0 {
                sink.clear();
            }
            return;
        }
        _ => {}
    }
    let _ = write.write_all(b"220 fake-smtp ready\r\n").await;
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") {
            b"250-fake-smtp\r\n250 8BITMIME\r\n"
        } else if command.starts_with("HELO")
            || command.starts_with("MAIL FROM")
            || command.starts_with("RSET")
            || command.starts_with("NOOP")
        {
            b"250 ok\r\n"
        } else if command.starts_with("RCPT TO") {
            let address = line.trim_end()[8..]
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned();
            to.push(address);
            b"250 ok\r\n"
        } else if command == "DATA" {
            let _ = write.write_all(b"354 go ahead\r\n").await;
            if shared.behaviour() == Behaviour::DropMidData {
                // Takes the first line of the message, then hangs up.
                line.clear();
                let _ = lines.read_line(&mut line).await;
                shared.fail();
                return;
            }
            let mut raw = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                raw.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            let behaviour = shared.behaviour();
            if matches!(
                behaviour,
                Behaviour::RefuseForNow | Behaviour::RefuseForGood
            ) {
                to.clear();
                shared.refused.fetch_add(1, Ordering::SeqCst);
                shared.fail();
                if behaviour == Behaviour::RefuseForNow {
                    b"451 try again later\r\n"
                } else {
                    b"550 mailbox unavailable\r\n"
                }
            } else {
                let mail = parse(std::mem::take(&mut to), raw);
                shared.mails.lock().unwrap().push(mail);
                shared.arrived.notify_waiters();
                b"250 queued\r\n"
            }
        } else if command == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"502 not implemented\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

fn parse(to: Vec<String>, raw: String) -> Mail {
    let subject = raw
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default()
        .to_owned();
    // The text/plain part: from its header block to the next boundary.
    let text = raw
        .split("Content-Type: text/plain")
        .nth(1)
        .and_then(|part| {
            let (headers, body) = part.split_once("\r\n\r\n")?;
            let body = body.split("\r\n--").next()?;
            Some(if headers.contains("quoted-printable") {
                decode_qp(body)
            } else {
                body.to_owned()
            })
        })
        .unwrap_or_default()
        .replace("\r\n", "\n");
    Mail {
        to,
        subject,
        text,
        raw,
    }
}

fn decode_qp(body: &str) -> String {
    let joined = body.replace("=\r\n", "");
    let mut out = Vec::new();
    let bytes = joined.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
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

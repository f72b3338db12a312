//! [`Server`]: the loop that runs [`route`] over a listener on worker threads, and the responder
//! threads that answer writes once decided.

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::format::command;
use crate::model::names;
use crate::node::security::{self, TOKEN_HEADER};
use crate::node::transport::RAFTDUMP_HEADER;

use super::{
    authorized, forward_to,
    limits::{no_space, rpc_reservation},
    route,
    routes::{db_key, not_utf8, rpc_http_answer, token_header},
    write_answer, Answer, Api, ApiError, HttpOptions, Request, Rpc, FORWARDED_HEADER, MAX_HEADERS,
    MAX_HEADER_BYTES, MAX_HEADER_LINE, MAX_REQUEST_LINE,
};

/// The HTTP server over one listener: requests are handled on the thread of their connection
/// (`workers == 0`), or handed to a pool of worker threads. Either way a write is proposed
/// without waiting and answered by a responder thread once decided.
pub struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    responders: Vec<JoinHandle<()>>,
    outbox: Arc<Outbox>,
    /// Connection-thread mode: the server (dropped on stop) and the requests being handled.
    direct: Option<(Arc<tiny_http::Server>, Arc<AtomicUsize>, Duration)>,
}

/// Counts a request in progress for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        InFlight(n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request answered on a responder thread.
enum Job {
    /// A decided write.
    Write(Pending),
    /// An answer already computed (an AppendEntries handled without waiting).
    Answer(tiny_http::Request, Answer),
}

/// A write whose answer is computed once its proposal is decided (on a responder thread).
struct Pending {
    rq: tiny_http::Request,
    method: String,
    url: String,
    body: Vec<u8>,
    forwarded: bool,
    result: Result<(), ApiError>,
}

/// Threads that answer writes decided by the runtime, so that HTTP threads never wait.
const RESPONDERS: usize = 2;

/// A batch of at least this many answers is shared between two responders.
const SHARED_BATCH: usize = 8;

/// Decided writes waiting for a responder. The runtime decides writes in batches: the first
/// of a batch wakes one idle responder, which takes every write queued by then (one wake-up
/// per batch, not per write).
#[derive(Default)]
struct Outbox {
    state: Mutex<OutboxState>,
    ready: std::sync::Condvar,
    /// Writes proposed and not decided yet (counted without the lock: one per write).
    outstanding: AtomicUsize,
    /// No more writes are proposed: responders leave once nothing is outstanding.
    closed: AtomicBool,
    /// Whoever decides writes calls [`Outbox::flush`] after each batch: a push does not
    /// wake a responder itself (which would take the first job of a batch alone).
    deferred: AtomicBool,
}

#[derive(Default)]
struct OutboxState {
    jobs: Vec<Job>,
    /// Responders waiting for jobs.
    idle: usize,
    /// A responder was woken and has not taken the jobs yet.
    waking: bool,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A proposed write was decided, or an answer is ready.
    fn push(&self, p: Job) {
        let deferred = self.deferred.load(Ordering::Relaxed);
        let wake = {
            let mut s = self.lock();
            s.jobs.push(p);
            let wake = !deferred && s.idle > 0 && !s.waking;
            s.waking |= wake;
            wake
        };
        // Notified after the lock is released, so the responder does not wake up only to
        // block on it.
        if wake {
            self.ready.notify_one();
        }
    }

    /// The end of a batch of pushes: wakes a responder for them.
    fn flush(&self) {
        let wake = {
            let mut s = self.lock();
            let wake = !s.jobs.is_empty() && s.idle > 0 && !s.waking;
            s.waking |= wake;
            wake
        };
        // Notified after the lock is released, so the responder does not wake up only to
        // block on it.
        if wake {
            self.ready.notify_one();
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _guard = self.lock();
        self.ready.notify_all();
    }

    /// Everything decided so far; `None` once closed with nothing left to answer.
    fn take(&self) -> Option<Vec<Job>> {
        let mut s = self.lock();
        loop {
            s.waking = false;
            if s.jobs.len() >= SHARED_BATCH && s.idle > 0 {
                // A large batch is shared with an idle responder: each answer is a loopback
                // send that also delivers it, and two cores send it in about half the time.
                // This one takes the first half (the oldest writes).
                let half = s.jobs.len() / 2;
                let rest = s.jobs.split_off(half);
                let mine = std::mem::replace(&mut s.jobs, rest);
                s.waking = true;
                drop(s);
                self.ready.notify_one();
                return Some(mine);
            }
            if !s.jobs.is_empty() {
                return Some(std::mem::take(&mut s.jobs));
            }
            if self.closed.load(Ordering::SeqCst) && self.outstanding.load(Ordering::SeqCst) == 0 {
                self.ready.notify_all();
                return None;
            }
            s.idle += 1;
            // Bounded wait: `closed` is also rechecked by time.
            s = match self.ready.wait_timeout(s, Duration::from_millis(100)) {
                Ok((s, _)) => s,
                Err(e) => e.into_inner().0,
            };
            s.idle -= 1;
        }
    }
}

/// One write proposed and not decided yet: counted in [`Outbox::outstanding`] until it
/// is pushed or dropped (a callback the runtime never called still lets the responders stop).
struct Ticket(Arc<Outbox>);

impl Ticket {
    fn new(outbox: Arc<Outbox>) -> Ticket {
        outbox.outstanding.fetch_add(1, Ordering::SeqCst);
        Ticket(outbox)
    }

    fn push(&self, p: Job) {
        self.0.push(p);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::SeqCst);
        if self.0.closed.load(Ordering::SeqCst) {
            let _guard = self.0.lock();
            self.0.ready.notify_all();
        }
    }
}

impl Server {
    /// Serves `api` on `listener` until [`Server::stop`] or until `shutdown` is set. With
    /// `workers == 0` (the fastest: no hand-off between threads before the runtime), each
    /// request is handled on its connection's thread; otherwise `workers` threads take
    /// requests from a queue.
    pub fn start(
        listener: TcpListener,
        api: Arc<dyn Api>,
        opts: HttpOptions,
        workers: usize,
        shutdown: Arc<AtomicBool>,
    ) -> std::io::Result<Server> {
        let limits = tiny_http::Limits {
            idle_timeout: Some(opts.idle_timeout),
            write_timeout: Some(opts.idle_timeout),
            header_timeout: opts.header_timeout,
            max_request_line: MAX_REQUEST_LINE,
            max_header_line: MAX_HEADER_LINE,
            max_headers: MAX_HEADERS,
            max_header_bytes: MAX_HEADER_BYTES,
            max_connections: opts.max_connections,
        };
        let agent = security::with_token(
            ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_millis(500))
                .timeout(opts.timeout + Duration::from_secs(1)),
            opts.token.as_deref(),
        )
        .build();
        let opts = Arc::new(opts);
        let outbox = Arc::new(Outbox::default());
        let o = outbox.clone();
        if api.on_batch_done(Box::new(move || o.flush())) {
            outbox.deferred.store(true, Ordering::Relaxed);
        }
        let mut responders = Vec::new();
        for _ in 0..RESPONDERS {
            let (outbox, api, opts, agent) =
                (outbox.clone(), api.clone(), opts.clone(), agent.clone());
            responders.push(
                std::thread::Builder::new()
                    .name("http-respond".into())
                    .spawn(move || responder(&outbox, &*api, &opts, &agent))?,
            );
        }
        if workers == 0 {
            let inflight = Arc::new(AtomicUsize::new(0));
            let drain = opts.timeout + Duration::from_secs(1);
            let (n, stop, out) = (inflight.clone(), shutdown.clone(), outbox.clone());
            let handler: tiny_http::Handler = Arc::new(move |rq| {
                let _busy = InFlight::new(&n);
                if stop.load(Ordering::SeqCst) {
                    // Dropped unanswered: tiny_http answers 500 and the connection closes.
                    return;
                }
                handle(rq, &*api, &opts, &agent, &out);
            });
            let server =
                tiny_http::Server::from_listener_with_handler(listener, None, limits, handler)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            return Ok(Server {
                stop: shutdown,
                threads: Vec::new(),
                responders,
                outbox,
                direct: Some((Arc::new(server), inflight, drain)),
            });
        }
        let server = tiny_http::Server::from_listener_with_limits(listener, None, limits)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let server = Arc::new(server);
        let mut threads = Vec::new();
        for _ in 0..workers {
            let (server, api, opts, stop, agent, outbox) = (
                server.clone(),
                api.clone(),
                opts.clone(),
                shutdown.clone(),
                agent.clone(),
                outbox.clone(),
            );
            threads.push(
                std::thread::Builder::new()
                    .name("http".into())
                    .spawn(move || worker(&server, &*api, &opts, &stop, &agent, &outbox))?,
            );
        }
        Ok(Server {
            stop: shutdown,
            threads,
            responders,
            outbox,
            direct: None,
        })
    }

    /// Stops accepting and waits for the HTTP threads (workers notice within 100 ms; in
    /// connection-thread mode, the requests being handled, for at most the request timeout
    /// and a second) and for the responders (once every write proposed is answered).
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some((server, inflight, drain)) = self.direct {
            drop(server);
            let deadline = Instant::now() + drain;
            while inflight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for t in self.threads {
            let _ = t.join();
        }
        self.outbox.close();
        for t in self.responders {
            let _ = t.join();
        }
    }
}

fn responder(outbox: &Outbox, api: &dyn Api, opts: &HttpOptions, agent: &ureq::Agent) {
    while let Some(jobs) = outbox.take() {
        for job in jobs {
            let p = match job {
                Job::Write(p) => p,
                Job::Answer(rq, answer) => {
                    send(rq, answer);
                    continue;
                }
            };
            let answer = match p.result {
                // The common case, without building a `Request`.
                Ok(()) => Answer::empty(200),
                result => {
                    let req = Request {
                        method: &p.method,
                        url: &p.url,
                        body: &p.body,
                        forwarded: p.forwarded,
                    };
                    write_answer(
                        api,
                        opts,
                        &req,
                        &|leader, r| forward_to(agent, leader, r),
                        result,
                    )
                }
            };
            send(p.rq, answer);
        }
    }
}

/// Writes `answer` with the headers raftd's would have, in Go's net/http order (the vendored
/// tiny_http writes a response's own headers sorted by name, then Date and Content-Length): an
/// error's Content-Type and X-Content-Type-Options are set by the handler (Go's `http.Error`),
/// a 200's Content-Type is the one net/http detects from the body, written after
/// Content-Length.
fn send(rq: tiny_http::Request, answer: Answer) {
    let mut resp = tiny_http::Response::from_data(answer.body).with_status_code(answer.status);
    match answer.content_type {
        Some(ct) if answer.status >= 400 => {
            if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", ct) {
                resp.add_header(h);
            }
            if let Ok(h) = tiny_http::Header::from_bytes("X-Content-Type-Options", "nosniff") {
                resp.add_header(h);
            }
        }
        Some(ct) => resp = resp.with_detected_content_type(ct),
        None => {}
    }
    if answer.raftdump {
        if let Ok(h) = tiny_http::Header::from_bytes(RAFTDUMP_HEADER, env!("CARGO_PKG_VERSION")) {
            resp.add_header(h);
        }
    }
    let _ = rq.respond(resp);
}

fn worker(
    server: &tiny_http::Server,
    api: &dyn Api,
    opts: &HttpOptions,
    stop: &AtomicBool,
    agent: &ureq::Agent,
    outbox: &Arc<Outbox>,
) {
    while !stop.load(Ordering::SeqCst) {
        match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(rq)) => handle(rq, api, opts, agent, outbox),
            Ok(None) => continue,
            Err(_) => break,
        }
    }
}

/// Answers one request; a write is proposed without waiting, and a responder thread answers
/// it once decided.
fn handle(
    mut rq: tiny_http::Request,
    api: &dyn Api,
    opts: &HttpOptions,
    agent: &ureq::Agent,
    outbox: &Arc<Outbox>,
) {
    if let Some(token) = &opts.token {
        if !authorized(token, rq.url(), token_header(&rq)) {
            // raftd reads no body here: the connection is closed after the answer.
            send(
                rq,
                Answer::text(
                    401,
                    format!("raftdump: this route needs a valid {TOKEN_HEADER} header\n"),
                ),
            );
            return;
        }
    }
    let is_rpc = rq.url().starts_with("/raft/");
    let limit = if is_rpc {
        opts.max_rpc_body
    } else {
        opts.max_body
    } as u64
        + 1;
    let reserved = match rpc_reservation(&rq, is_rpc, opts) {
        Ok(r) => r,
        Err(a) => {
            send(rq, a);
            return;
        }
    };
    // Sized from the length when known: growing by doubling would hold up to twice the body.
    let known = rq
        .body_length()
        .map_or(0, |n| (n as u64).min(limit) as usize);
    let mut body = Vec::with_capacity(known);
    if rq.as_reader().take(limit).read_to_end(&mut body).is_err() {
        // raftd: a body that cannot be read is a 400 with an empty body.
        send(rq, Answer::text(400, if is_rpc { "\n" } else { "" }));
        return;
    }
    // An AppendEntries is handed to the runtime without waiting: this thread goes back to
    // reading the connection, where the leader's next request may already wait (pipelining),
    // and a responder answers once the entries are durable. Answers go out in request order
    // (tiny_http orders a connection's answers). The body moves into the request the core
    // gets, and its reservation lives until the answer: the entries are written from the body.
    if is_rpc
        && rq.url() == "/raft/appendEntries"
        && rq.method() == &tiny_http::Method::Post
        && body.len() <= opts.max_rpc_body
    {
        let ticket = Ticket::new(outbox.clone());
        let mut rq = Some(rq);
        api.rpc_async(
            Rpc::AppendEntries,
            body,
            opts.timeout,
            Box::new(move |answer| {
                let _reserved = reserved;
                if let Some(rq) = rq.take() {
                    let answer = rpc_http_answer(answer);
                    // The runtime's thread writes the answer itself when the answers before
                    // it on the connection are written (the leader's stream: always), which
                    // saves waking a responder on the path of every replication round. An
                    // answer that would wait for another one goes to a responder.
                    if rq.answer_ready() {
                        send(rq, answer);
                    } else {
                        ticket.push(Job::Answer(rq, answer));
                    }
                }
            }),
        );
        return;
    }
    let method = rq.method().as_str().to_ascii_uppercase();
    let url = rq.url().to_string();
    let forwarded = rq.headers().iter().any(|h| h.field.equiv(FORWARDED_HEADER));
    // A write is proposed without waiting: the runtime calls back when it is decided and a
    // responder thread answers. Everything else is answered here by `route`.
    if method == "POST" && body.len() <= opts.max_body {
        if let Some(key) = db_key(&url).filter(|k| k.len() <= opts.max_key) {
            if let Some(a) = not_utf8(&key, &body) {
                send(rq, a);
                return;
            }
            let payload = command::encode_write(&key, &body);
            if opts
                .space
                .as_ref()
                .is_some_and(|g| !g.admits(payload.len()))
            {
                send(rq, no_space());
                return;
            }
            let ticket = Ticket::new(outbox.clone());
            let mut pending = Some((rq, method, url, body, forwarded));
            api.propose_async(
                names::WRITE,
                payload,
                opts.timeout,
                Box::new(move |result| {
                    if let Some((rq, method, url, body, forwarded)) = pending.take() {
                        ticket.push(Job::Write(Pending {
                            rq,
                            method,
                            url,
                            body,
                            forwarded,
                            result,
                        }));
                    }
                }),
            );
            return;
        }
    }
    let req = Request {
        method: &method,
        url: &url,
        body: &body,
        forwarded,
    };
    let answer = route(api, opts, req, &|leader, r| forward_to(agent, leader, r));
    send(rq, answer);
}

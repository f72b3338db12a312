use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Write};

use std::net::SocketAddr;
use std::str::FromStr;

use crate::common::{HTTPVersion, Method};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // raftdump: bounds on a request head (see `Limits`)
    limits: crate::Limits,
    // raftdump: when the head of the request being read must be complete
    head_deadline: Option<std::time::Instant>,
    // raftdump: tells the slot policy whether this connection waits for a request head
    mark: crate::slots::IdleMark,
}

// raftdump: how long, and how many bytes, a refused connection's input is read and dropped
// before the socket closes (`ClientConnection::refuse`).
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
const LINGER_BYTES: usize = 64 << 10;

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    /// raftdump: the request line is over `Limits::max_request_line` (414)
    UriTooLong,
    /// raftdump: a header line, the headers' count or their total size is over the limit (431)
    HeadersTooLarge(HTTPVersion),
    ReadIoError(IoError),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: crate::Limits,
        mark: crate::slots::IdleMark,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            limits,
            head_deadline: None,
            mark,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    // raftdump: answers `status` to a request that ends the connection, then closes it gently:
    // the write side first (the client reads the answer, then an end of stream), then what the
    // client still sends is read and dropped, for at most `LINGER` and `LINGER_BYTES`, before the
    // socket is closed (the connection counts as idle meanwhile, the first one a new
    // connection without a slot closes). Closing with unread input makes the kernel reset the connection, and a
    // reset can discard the answer before the client reads it (a slow client cut off at the
    // head deadline saw no 408). Only with an idle timeout, which bounds each read.
    fn refuse(&mut self, status: u16, ver: HTTPVersion, do_not_send_body: bool) {
        let writer = self.sink.next().unwrap();
        crate::Response::new_empty(crate::StatusCode(status))
            .raw_print(writer, ver, &[], do_not_send_body, None)
            .ok();
        // The writer waited for its turn before writing: every earlier answer is written too.
        self.sink.with_writer(|w| {
            let _ = w.flush();
            let _ = w.get_mut().shutdown_write();
        });
        if self.limits.idle_timeout.is_none() {
            return;
        }
        // Nothing more is served here: a new connection may take this slot at once.
        self.mark.idle();
        let until = std::time::Instant::now() + LINGER;
        let mut left = LINGER_BYTES;
        let mut buf = [0u8; 4096];
        while left > 0 && std::time::Instant::now() < until {
            match std::io::Read::read(&mut self.next_header_source, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    fn read_next_line(&mut self, max_line: usize) -> IoResult<AsciiString> {
        use std::io::BufRead;
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;

        loop {
            // raftdump: scans what the buffer holds (one `read` per segment received, not
            // one call per byte); the time is checked after every wait for data, so a head
            // that trickles in is still cut at `header_timeout` from its first byte.
            // raftdump: a head that stalls until the socket's idle timeout is too slow as well
            // (408), like one whose deadline passes; a connection idle between requests just
            // closes.
            let started = self.head_deadline.is_some();
            let available = self.next_header_source.fill_buf().map_err(|e| {
                let timed_out = matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
                if timed_out && started {
                    IoError::new(ErrorKind::TimedOut, "request head too slow")
                } else {
                    e
                }
            })?;
            if available.is_empty() {
                return Err(IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF"));
            }
            let now = std::time::Instant::now();
            match self.head_deadline {
                None => {
                    self.head_deadline = Some(now + self.limits.header_timeout);
                    self.mark.busy();
                }
                Some(d) if now > d => {
                    return Err(IoError::new(ErrorKind::TimedOut, "request head too slow"))
                }
                Some(_) => {}
            }
            let mut end = None;
            for (i, &byte) in available.iter().enumerate() {
                if byte == b'\n' && prev_byte_was_cr {
                    end = Some(i);
                    break;
                }
                prev_byte_was_cr = byte == b'\r';
            }
            let take = end.unwrap_or(available.len());
            // No line may exceed `max_line` bytes (its CR counted, its LF not).
            if buf.len() + take > max_line || (end.is_some() && buf.len() + take >= max_line) {
                return Err(IoError::new(ErrorKind::InvalidData, "request head line too long"));
            }
            buf.extend_from_slice(&available[..take]);
            match end {
                Some(i) => {
                    self.next_header_source.consume(i + 1);
                    buf.pop(); // removing the '\r'
                    return AsciiString::from_ascii(buf).map_err(|_| {
                        IoError::new(ErrorKind::InvalidInput, "Header is not in ASCII")
                    });
                }
                None => self.next_header_source.consume(take),
            }
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        self.head_deadline = None;
        self.mark.idle();
        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let line = self
                    .read_next_line(self.limits.max_request_line)
                    .map_err(|e| match e.kind() {
                        ErrorKind::InvalidData => ReadError::UriTooLong,
                        _ => ReadError::ReadIoError(e),
                    })?;

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                let mut head_bytes = 0usize;
                loop {
                    let line = self
                        .read_next_line(self.limits.max_header_line)
                        .map_err(|e| match e.kind() {
                            ErrorKind::InvalidData => ReadError::HeadersTooLarge(version.clone()),
                            _ => ReadError::ReadIoError(e),
                        })?;

                    if line.is_empty() {
                        break;
                    };
                    head_bytes = head_bytes.saturating_add(line.len() + 2);
                    if headers.len() >= self.limits.max_headers
                        || head_bytes > self.limits.max_header_bytes
                    {
                        return Err(ReadError::HeadersTooLarge(version));
                    }
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        // building the writer for the request
        let writer = self.sink.next().unwrap();
        // raftdump: lets the request say whether its answer can be written at once
        let turn = writer.turn();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            *self.remote_addr.as_ref().unwrap(),
            data_source,
            writer,
        )
        .map(|mut r| {
            r.set_turn(turn);
            r
        })
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
                request::RequestCreationError::BadLength => ReadError::WrongHeader(version),
            }
        })?;

        // return the request
        Ok(request)
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        use crate::{Response, StatusCode};

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        loop {
            let rq = match self.read() {
                // raftdump: each refused head gets its status, then the connection is closed
                // gently (`refuse`): the original closed it with the client's bytes unread,
                // which resets the connection and could discard the answer on its way.
                Err(ReadError::WrongRequestLine) => {
                    // we don't know where the next request would start, so we have to close
                    self.refuse(400, HTTPVersion(1, 1), false);
                    return None;
                }
                Err(ReadError::UriTooLong) => {
                    self.refuse(414, HTTPVersion(1, 1), false);
                    return None;
                }
                Err(ReadError::HeadersTooLarge(ver)) => {
                    self.refuse(431, ver, false);
                    return None;
                }
                Err(ReadError::WrongHeader(ver)) => {
                    self.refuse(400, ver, false);
                    return None;
                }
                Err(ReadError::ReadIoError(ref err)) if err.kind() == ErrorKind::TimedOut => {
                    // request timeout
                    self.refuse(408, HTTPVersion(1, 1), false);
                    return None;
                }
                Err(ReadError::ExpectationFailed(ver)) => {
                    // TODO (upstream): should be recoverable, but needs handling in case of body
                    self.refuse(417, ver, true);
                    return None;
                }

                Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // checking HTTP version
            if *rq.http_version() > (1, 1) {
                // raftdump: answered through the request's own writer, then closed. The
                // original wrote to the next writer, which waits for this request's turn,
                // held by `rq` until after the write: the thread and its slot hung forever.
                let response = Response::from_string(
                    "This server only supports HTTP versions 1.0 and 1.1".to_owned(),
                )
                .with_status_code(StatusCode(505));
                let mut writer = rq.into_writer();
                let _ = response.raw_print(&mut writer, HTTPVersion(1, 1), &[], false, None);
                let _ = writer.flush();
                return None;
            }

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}

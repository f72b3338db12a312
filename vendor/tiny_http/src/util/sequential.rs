use std::io::Result as IoResult;
use std::io::{Read, Write};

use std::sync::{Arc, Condvar, Mutex};

// raftdump: a one-shot hand-off in place of a std channel per request. A std channel costs
// several allocations per request (one of about 2 KB for the reader's), and freeing them made
// glibc consolidate its free lists on every request; this is one small allocation.
struct Slot<T> {
    /// `Some(Some(v))`: sent; `Some(None)`: the sender was dropped without sending.
    value: Mutex<SlotState<T>>,
    ready: Condvar,
}

struct SlotState<T> {
    value: Option<Option<T>>,
    /// The receiver waits on `ready`: only then does the sender notify it (a notification
    /// is a system call even when no one waits, and most hand-offs find the value there).
    waiting: bool,
}

struct Sender<T>(Option<Arc<Slot<T>>>);

struct Receiver<T>(Arc<Slot<T>>);

/// The receiver's side saw the sender dropped without a value.
#[derive(Debug)]
struct RecvError;

fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Slot {
        value: Mutex::new(SlotState {
            value: None,
            waiting: false,
        }),
        ready: Condvar::new(),
    });
    (Sender(Some(slot.clone())), Receiver(slot))
}

impl<T> Sender<T> {
    fn put(&mut self, v: Option<T>) {
        if let Some(slot) = self.0.take() {
            let waiting = {
                let mut s = slot.value.lock().unwrap_or_else(|e| e.into_inner());
                s.value = Some(v);
                s.waiting
            };
            if waiting {
                slot.ready.notify_one();
            }
        }
    }

    fn send(&mut self, v: T) -> Result<(), ()> {
        self.put(Some(v));
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.put(None);
    }
}

impl<T> Receiver<T> {
    fn recv(&mut self) -> Result<T, RecvError> {
        let mut s = self.0.value.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match s.value.take() {
                Some(Some(x)) => return Ok(x),
                Some(None) => {
                    s.value = Some(None);
                    return Err(RecvError);
                }
                None => {
                    s.waiting = true;
                    s = self.0.ready.wait(s).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }
}

use std::mem;

/// raftdump: tells whether a writer's turn has come, that is whether every answer before
/// it on the connection was written (so writing it now does not wait for another thread).
pub struct Turn(Option<Arc<Slot<()>>>);

impl Turn {
    /// The answers before this one are all written.
    pub fn ready(&self) -> bool {
        match &self.0 {
            None => true,
            Some(slot) => slot
                .value
                .lock()
                .map(|s| s.value.is_some())
                .unwrap_or(false),
        }
    }
}

impl<W: Write + Send> SequentialWriter<W> {
    /// raftdump: a probe of this writer's turn.
    pub fn turn(&self) -> Turn {
        Turn(self.trigger.as_ref().map(|r| r.0.clone()))
    }
}

pub struct SequentialReaderBuilder<R>
where
    R: Read + Send,
{
    inner: SequentialReaderBuilderInner<R>,
}

enum SequentialReaderBuilderInner<R>
where
    R: Read + Send,
{
    First(R),
    NotFirst(Receiver<R>),
}

pub struct SequentialReader<R>
where
    R: Read + Send,
{
    inner: SequentialReaderInner<R>,
    next: Sender<R>,
}

enum SequentialReaderInner<R>
where
    R: Read + Send,
{
    MyTurn(R),
    Waiting(Receiver<R>),
    Empty,
}

pub struct SequentialWriterBuilder<W>
where
    W: Write + Send,
{
    writer: Arc<Mutex<W>>,
    next_trigger: Option<Receiver<()>>,
}

pub struct SequentialWriter<W>
where
    W: Write + Send,
{
    trigger: Option<Receiver<()>>,
    writer: Arc<Mutex<W>>,
    on_finish: Sender<()>,
}

impl<R: Read + Send> SequentialReaderBuilder<R> {
    pub fn new(reader: R) -> SequentialReaderBuilder<R> {
        SequentialReaderBuilder {
            inner: SequentialReaderBuilderInner::First(reader),
        }
    }
}

impl<W: Write + Send> SequentialWriterBuilder<W> {
    pub fn new(writer: W) -> SequentialWriterBuilder<W> {
        SequentialWriterBuilder {
            writer: Arc::new(Mutex::new(writer)),
            next_trigger: None,
        }
    }

    // raftdump: the connection's writer itself, to flush it and close its write side once
    // every answer is written (a gentle close, see `ClientConnection::refuse`).
    pub fn with_writer<T>(&self, f: impl FnOnce(&mut W) -> T) -> T {
        f(&mut self.writer.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl<R: Read + Send> Iterator for SequentialReaderBuilder<R> {
    type Item = SequentialReader<R>;

    fn next(&mut self) -> Option<SequentialReader<R>> {
        let (tx, rx) = channel();

        let inner = mem::replace(&mut self.inner, SequentialReaderBuilderInner::NotFirst(rx));

        match inner {
            SequentialReaderBuilderInner::First(reader) => Some(SequentialReader {
                inner: SequentialReaderInner::MyTurn(reader),
                next: tx,
            }),

            SequentialReaderBuilderInner::NotFirst(previous) => Some(SequentialReader {
                inner: SequentialReaderInner::Waiting(previous),
                next: tx,
            }),
        }
    }
}

impl<W: Write + Send> Iterator for SequentialWriterBuilder<W> {
    type Item = SequentialWriter<W>;
    fn next(&mut self) -> Option<SequentialWriter<W>> {
        let (tx, rx) = channel();
        let mut next_next_trigger = Some(rx);
        ::std::mem::swap(&mut next_next_trigger, &mut self.next_trigger);

        Some(SequentialWriter {
            trigger: next_next_trigger,
            writer: self.writer.clone(),
            on_finish: tx,
        })
    }
}

// raftdump: lets the request head be scanned in the buffer, instead of one `read` per byte.
impl<R: std::io::BufRead + Send> std::io::BufRead for SequentialReader<R> {
    fn fill_buf(&mut self) -> IoResult<&[u8]> {
        if let SequentialReaderInner::Waiting(ref mut recv) = self.inner {
            let reader = recv.recv().unwrap();
            self.inner = SequentialReaderInner::MyTurn(reader);
        }
        match self.inner {
            SequentialReaderInner::MyTurn(ref mut reader) => reader.fill_buf(),
            _ => unreachable!(),
        }
    }

    fn consume(&mut self, amt: usize) {
        if let SequentialReaderInner::MyTurn(ref mut reader) = self.inner {
            reader.consume(amt)
        }
    }
}

impl<R: Read + Send> Read for SequentialReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        let mut reader = match self.inner {
            SequentialReaderInner::MyTurn(ref mut reader) => return reader.read(buf),
            SequentialReaderInner::Waiting(ref mut recv) => recv.recv().unwrap(),
            SequentialReaderInner::Empty => unreachable!(),
        };

        let result = reader.read(buf);
        self.inner = SequentialReaderInner::MyTurn(reader);
        result
    }
}

impl<W: Write + Send> Write for SequentialWriter<W> {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        if let Some(v) = self.trigger.as_mut() {
            v.recv().unwrap()
        }
        self.trigger = None;

        self.writer.lock().unwrap().write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        if let Some(v) = self.trigger.as_mut() {
            v.recv().unwrap()
        }
        self.trigger = None;

        self.writer.lock().unwrap().flush()
    }
}

impl<R> Drop for SequentialReader<R>
where
    R: Read + Send,
{
    fn drop(&mut self) {
        let inner = mem::replace(&mut self.inner, SequentialReaderInner::Empty);

        match inner {
            SequentialReaderInner::MyTurn(reader) => {
                self.next.send(reader).ok();
            }
            SequentialReaderInner::Waiting(mut recv) => {
                let reader = recv.recv().unwrap();
                self.next.send(reader).ok();
            }
            SequentialReaderInner::Empty => (),
        }
    }
}

impl<W> Drop for SequentialWriter<W>
where
    W: Write + Send,
{
    fn drop(&mut self) {
        self.on_finish.send(()).ok();
    }
}

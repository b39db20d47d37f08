//! A server may refuse a large request before it has read all of it: it answers (413 for a
//! prompt too large, 401 for a bad token) and closes, so the rest of the upload fails with a
//! broken pipe or a reset. The answer is usually already in our receive buffer, and it says
//! what went wrong far better than "Broken pipe".
//!
//! So the transport that ureq writes through stops writing at the first such failure, discards
//! the rest of the body, and lets ureq go on to read the response. When none can be read, the
//! attempt's `Upload` says the connection was closed while the request was being sent.
//!
//! This builds on ureq's `unversioned` transport API, which may change in a minor release.

use std::cell::Cell;
use std::io;

use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, DefaultConnector, NextTimeout, Transport,
};

thread_local! {
    /// Whether the server stopped taking the request before all of it was sent, in this
    /// thread's current attempt. Per thread: ureq writes a request on the thread that sends it,
    /// and a batch's workers send theirs at the same time through one agent.
    static CUT: Cell<bool> = const { Cell::new(false) };
}

/// Forgets what this thread's earlier attempt saw.
pub fn start() {
    CUT.set(false);
}

/// Whether this thread's attempt was cut off while the request was being sent.
pub fn was_cut() -> bool {
    CUT.get()
}

/// ureq's own connectors (proxies, TCP, TLS), with the last transport wrapped so that an early
/// answer can still be read.
pub fn connector() -> impl Connector {
    DefaultConnector::new().chain(KeepReadingConnector)
}

#[derive(Debug)]
struct KeepReadingConnector;

impl<In: Transport> Connector<In> for KeepReadingConnector {
    type Out = KeepReading<In>;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(chained.map(|inner| KeepReading { inner, cut: false }))
    }
}

#[derive(Debug)]
struct KeepReading<T> {
    inner: T,
    /// The peer stopped reading: what is left to write is dropped.
    cut: bool,
}

impl<T: Transport> Transport for KeepReading<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        if self.cut {
            return Ok(());
        }
        match self.inner.transmit_output(amount, timeout) {
            Err(ureq::Error::Io(e)) if is_closed(&e) => {
                self.cut = true;
                CUT.set(true);
                Ok(())
            }
            other => other,
        }
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        !self.cut && self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

fn is_closed(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_cut_on_one_thread_is_not_another_threads() {
        start();
        CUT.set(true);
        let elsewhere = std::thread::spawn(|| {
            start();
            was_cut()
        });
        assert!(!elsewhere.join().unwrap());
        assert!(
            was_cut(),
            "the other thread's start does not forget this one's cut"
        );
    }
}

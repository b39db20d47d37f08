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

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, DefaultConnector, NextTimeout, Transport,
};

/// Whether the server stopped taking the request before all of it was sent, in the current
/// attempt. Shared by the connector's transports and the sender.
#[derive(Debug, Clone, Default)]
pub struct Upload(Arc<AtomicBool>);

impl Upload {
    /// Forgets what an earlier attempt saw.
    pub fn start(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    pub fn was_cut(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// ureq's own connectors (proxies, TCP, TLS), with the last transport wrapped so that an early
/// answer can still be read.
pub fn connector(upload: &Upload) -> impl Connector {
    DefaultConnector::new().chain(KeepReadingConnector(upload.clone()))
}

#[derive(Debug)]
struct KeepReadingConnector(Upload);

impl<In: Transport> Connector<In> for KeepReadingConnector {
    type Out = KeepReading<In>;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(chained.map(|inner| KeepReading {
            inner,
            upload: self.0.clone(),
            cut: false,
        }))
    }
}

#[derive(Debug)]
struct KeepReading<T> {
    inner: T,
    upload: Upload,
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
                self.upload.0.store(true, Ordering::Relaxed);
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

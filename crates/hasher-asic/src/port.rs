//! The byte link to a chain: a real serial port, or anything `Read + Write` with a read timeout
//! (a Unix socket pair in tests).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// What the driver needs from a link. `read` returns `Ok(0)` when nothing came within `timeout`.
pub trait Port: Send {
    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize>;
    fn write_all_bytes(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Switch the host side's baud rate (a no-op on links without one).
    fn set_baud(&mut self, baud: u32) -> io::Result<()>;
    /// Drop whatever is waiting in the input buffer.
    fn clear_input(&mut self) -> io::Result<()>;
    /// A name for messages.
    fn name(&self) -> String;
}

fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

/// A serial port opened with the `serialport` crate.
pub struct SerialLink {
    port: Box<dyn serialport::SerialPort>,
    timeout: Duration,
    name: String,
}

impl std::fmt::Debug for SerialLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialLink").field("name", &self.name).finish()
    }
}

impl SerialLink {
    /// Open `path` at `baud`, 8N1, no flow control.
    pub fn open(path: &str, baud: u32) -> Result<Self, serialport::Error> {
        let timeout = Duration::from_millis(2);
        let port = serialport::new(path, baud)
            .data_bits(serialport::DataBits::Eight)
            .parity(serialport::Parity::None)
            .stop_bits(serialport::StopBits::One)
            .flow_control(serialport::FlowControl::None)
            .timeout(timeout)
            .open()?;
        Ok(Self { port, timeout, name: path.to_owned() })
    }
}

impl Port for SerialLink {
    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        if timeout != self.timeout {
            self.port.set_timeout(timeout).map_err(io::Error::from)?;
            self.timeout = timeout;
        }
        match self.port.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if timed_out(&e) => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn write_all_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.port.write_all(bytes)?;
        self.port.flush()
    }

    fn set_baud(&mut self, baud: u32) -> io::Result<()> {
        self.port.set_baud_rate(baud).map_err(io::Error::from)
    }

    fn clear_input(&mut self) -> io::Result<()> {
        self.port.clear(serialport::ClearBuffer::Input).map_err(io::Error::from)
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

/// An in-memory link (one end of `UnixStream::pair()`): for tests with a scripted chip.
impl Port for UnixStream {
    fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        self.set_read_timeout(Some(timeout.max(Duration::from_micros(100))))?;
        match self.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if timed_out(&e) => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn write_all_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)
    }

    fn set_baud(&mut self, _baud: u32) -> io::Result<()> {
        Ok(())
    }

    fn clear_input(&mut self) -> io::Result<()> {
        self.set_nonblocking(true)?;
        let mut buf = [0u8; 4096];
        loop {
            match self.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        self.set_nonblocking(false)
    }

    fn name(&self) -> String {
        "in-memory pipe".to_owned()
    }
}

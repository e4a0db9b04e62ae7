//! One encrypted SV2 connection: TCP with TCP_NODELAY, the Noise NX handshake (initiator or, for
//! the test pool, responder), frames written one `write_all` each, and a reader that runs in a
//! task of its own (decoding is not cancel-safe, so it is never raced in a `select!`).
//!
//! The codec, the Noise state machine and the message types are the reference implementation's
//! (`codec_sv2`, `noise_sv2`, `parsers_sv2`); this module only moves bytes between them and the
//! socket.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stratum_core::codec_sv2::{Decoded, Decrypted, Handshake, NoiseDecoder, NoiseEncoder, TransportDecryptState, TransportEncryptState};
use stratum_core::framing_sv2::framing::MessageFrame;
use stratum_core::noise_sv2::{self, INITIATOR_EXPECTED_HANDSHAKE_MESSAGE_SIZE};
use stratum_core::parsers_sv2::{AnyMessage, AnyMessageOwned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use crate::Error;

/// The largest frame read (encrypted bytes of one frame). The biggest mining message a pool
/// sends is a `NewExtendedMiningJob`: two coinbase parts of at most 64 KiB each and a merkle path
/// of at most 255 hashes, about 136 KiB with the Noise MACs. 1 MiB leaves room and still stops a
/// peer that declares a 16 MiB frame.
pub const MAX_FRAME: usize = 1 << 20;

/// Every write has this long: a peer that stops reading is left, not waited for.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// The certificate clock leeway noise_sv2 allows (seconds either side).
const CERT_LEEWAY: u64 = 10;

/// What the reader task hands on.
#[derive(Debug)]
pub enum Inbound {
    Message(AnyMessageOwned),
    /// A frame whose type the parser does not know (kept out of the message path, not fatal).
    Unknown { msg_type: u8, ext_type: u16, len: usize },
    /// The connection is over (with why); nothing follows.
    Closed(Error),
}

/// The reading half: the reader task's messages. Dropping it stops the task (and so closes the
/// socket's read half), whatever the peer does.
#[derive(Debug)]
pub struct Reader {
    rx: mpsc::Receiver<Inbound>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    fn spawn(rd: OwnedReadHalf, dec: NoiseDecoder, state: TransportDecryptState) -> Reader {
        let (tx, rx) = mpsc::channel(256);
        Reader { rx, task: tokio::spawn(read_frames(rd, dec, state, tx)) }
    }

    /// The next message; `None` once the task has stopped (after its `Closed`).
    pub async fn recv(&mut self) -> Option<Inbound> {
        self.rx.recv().await
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The writing half: a Noise encoder over the socket's write half.
pub struct Writer {
    wr: OwnedWriteHalf,
    enc: NoiseEncoder,
    state: TransportEncryptState,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Encrypt one message and write it in one call (one segment with TCP_NODELAY).
    pub async fn send(&mut self, msg: AnyMessageOwned) -> Result<(), Error> {
        let frame: MessageFrame<AnyMessageOwned> =
            msg.try_into().map_err(|e| Error::Codec(format!("framing a message: {e:?}")))?;
        self.send_frame(frame).await
    }

    /// Encrypt and write any frame (the test pool uses it for unknown types).
    pub async fn send_frame<F: stratum_core::codec_sv2::EncodableFrame>(&mut self, frame: F) -> Result<(), Error> {
        let bytes = self.enc.encode_transport(frame, &mut self.state).map_err(|e| Error::Codec(format!("encrypting a frame: {e:?}")))?;
        match tokio::time::timeout(WRITE_DEADLINE, self.wr.write_all(bytes.as_ref())).await {
            Ok(r) => r.map_err(Error::Io),
            Err(_) => Err(Error::Timeout("a write to the peer (it stopped reading)")),
        }
    }

    /// Close the write side (the peer sees end of stream after what was written).
    pub async fn close(mut self) {
        let _ = self.wr.shutdown().await;
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Connect to `host:port` and run the Noise NX handshake as initiator, checking the server's
/// certificate against `authority`. Returns the writer and the reader task's channel.
pub async fn connect(host: &str, port: u16, authority: [u8; 32], timeout: Duration) -> Result<(Writer, Reader), Error> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| Error::Timeout("connecting"))?
        .map_err(Error::Io)?;
    stream.set_nodelay(true).map_err(Error::Io)?;
    tokio::time::timeout(timeout, initiate(stream, authority)).await.map_err(|_| Error::Timeout("the Noise handshake"))?
}

async fn initiate(stream: TcpStream, authority: [u8; 32]) -> Result<(Writer, Reader), Error> {
    let (mut rd, mut wr) = stream.into_split();
    let initiator = noise_sv2::Initiator::from_raw_k(authority).map_err(|e| Error::Handshake(format!("the authority key: {e:?}")))?;
    let (first, sent) = Handshake::initiator(initiator).step_0().map_err(|e| Error::Handshake(format!("{e:?}")))?;
    wr.write_all(first.payload()).await.map_err(Error::Io)?;
    let mut dec = NoiseDecoder::new();
    let reply = loop {
        match dec.next_handshake_frame::<stratum_core::codec_sv2::InitiatorSent>().map_err(|e| Error::Handshake(format!("{e:?}")))? {
            Decoded::Frame(m) => break m,
            Decoded::Incomplete(_) => {
                let buf = dec.writable();
                if !buf.is_empty() {
                    read_exact(&mut rd, buf).await.map_err(|e| match e {
                        Error::Closed => Error::Handshake("the pool closed the connection during the Noise handshake (is it an SV2 port?)".into()),
                        e => e,
                    })?;
                }
            }
        }
    };
    let reply: [u8; INITIATOR_EXPECTED_HANDSHAKE_MESSAGE_SIZE] =
        reply.payload().try_into().map_err(|_| Error::Handshake("the server's handshake message has the wrong size".into()))?;
    let now = now_secs();
    let transport = sent.step_2_with_now(reply, now as u32).map_err(|e| certificate_error(e, now))?;
    let (enc_state, dec_state) = transport.split();
    Ok((Writer { wr, enc: NoiseEncoder::new(), state: enc_state }, Reader::spawn(rd, dec, dec_state)))
}

/// A failed `step_2`: a certificate that would verify but for the clock names clock skew.
fn certificate_error(e: stratum_core::codec_sv2::Error, now: u64) -> Error {
    use stratum_core::codec_sv2::Error as C;
    match e {
        C::NoiseSv2Error(noise_sv2::Error::InvalidCertificate(cert)) => {
            let (from, until) = (cert.valid_from as u64, cert.not_valid_after as u64);
            if now + CERT_LEEWAY < from || now > until + CERT_LEEWAY {
                Error::CertificateWindow { valid_from: from, not_valid_after: until, now }
            } else {
                Error::AuthorityMismatch
            }
        }
        e => Error::Handshake(format!("{e:?}")),
    }
}

#[cfg(feature = "testkit")]
/// Accept one connection's handshake as responder (the test pool). `clock_offset` shifts the
/// certificate's validity window (negative: issued in the past).
pub async fn respond(
    stream: TcpStream,
    authority_public: [u8; 32],
    authority_secret: [u8; 32],
    cert_validity: Duration,
    clock_offset: i64,
) -> Result<(Writer, Reader), Error> {
    stream.set_nodelay(true).map_err(Error::Io)?;
    let (mut rd, mut wr) = stream.into_split();
    let responder = noise_sv2::Responder::from_authority_kp(&authority_public, &authority_secret, cert_validity)
        .map_err(|e| Error::Handshake(format!("the authority key pair: {e:?}")))?;
    let mut dec = NoiseDecoder::new();
    let first = loop {
        match dec.next_handshake_frame::<noise_sv2::Responder>().map_err(|e| Error::Handshake(format!("{e:?}")))? {
            Decoded::Frame(m) => break m,
            Decoded::Incomplete(_) => {
                let buf = dec.writable();
                if !buf.is_empty() {
                    read_exact(&mut rd, buf).await?;
                }
            }
        }
    };
    let first: [u8; noise_sv2::ELLSWIFT_ENCODING_SIZE] = first.payload().try_into().map_err(|_| Error::Handshake("bad first message".into()))?;
    let now = (now_secs() as i64 + clock_offset).max(0) as u32;
    let (reply, transport) = Handshake::responder(responder)
        .step_1_with_now_rng(first, now, &mut rand08::thread_rng())
        .map_err(|e| Error::Handshake(format!("{e:?}")))?;
    wr.write_all(reply.payload()).await.map_err(Error::Io)?;
    let (enc_state, dec_state) = transport.split();
    Ok((Writer { wr, enc: NoiseEncoder::new(), state: enc_state }, Reader::spawn(rd, dec, dec_state)))
}

async fn read_exact(rd: &mut OwnedReadHalf, buf: &mut [u8]) -> Result<(), Error> {
    match rd.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Error::Closed),
        Err(e) => Err(Error::Io(e)),
    }
}

/// The reader task: whole frames, decrypted and parsed, in order; then one `Closed`.
async fn read_frames(mut rd: OwnedReadHalf, mut dec: NoiseDecoder, mut state: TransportDecryptState, tx: mpsc::Sender<Inbound>) {
    loop {
        let mut frame_bytes = 0usize;
        let mut frame = loop {
            let n = dec.writable_len();
            if n > 0 {
                frame_bytes += n;
                if frame_bytes > MAX_FRAME {
                    let _ = tx.send(Inbound::Closed(Error::FrameTooLarge { limit: MAX_FRAME })).await;
                    return;
                }
                if let Err(e) = read_exact(&mut rd, dec.writable()).await {
                    let _ = tx.send(Inbound::Closed(e)).await;
                    return;
                }
            }
            match dec.next_transport_frame(state) {
                Ok(Decrypted::Frame(f, s)) => {
                    state = s;
                    break f;
                }
                Ok(Decrypted::Incomplete(_, s)) => state = s,
                Err(e) => {
                    let _ = tx.send(Inbound::Closed(Error::Codec(format!("decrypting a frame: {e:?}")))).await;
                    return;
                }
            }
        };
        let header = frame.header();
        let len = header.payload_length();
        let inbound = match AnyMessage::try_from((header, frame.payload())) {
            Ok(m) => Inbound::Message(m.into_owned()),
            Err(_) => Inbound::Unknown { msg_type: header.msg_type(), ext_type: header.ext_type(), len },
        };
        if tx.send(inbound).await.is_err() {
            return;
        }
    }
}

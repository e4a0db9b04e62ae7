//! Opening a connection: TCP, the Noise handshake, SetupConnection and the channel (extended or
//! standard), with the checks on what the pool grants.

use super::*;

/// Connect, handshake, SetupConnection, then open the configured channel kind.
pub(super) async fn open(cfg: &ClientConfig, url: &PoolUrl, user: &str, port: u16) -> Result<(Writer, Reader, ChannelInfo, Target), Error> {
    let (mut w, mut rx) = conn::connect(&url.host, port, url.authority, cfg.connect_timeout).await?;
    let kind = url.channel.unwrap_or(cfg.channel);
    let t = cfg.connect_timeout;
    let setup = SetupConnectionOwned {
        protocol: Protocol::MiningProtocol,
        min_version: 2,
        max_version: 2,
        flags: setup_flags(cfg.version_rolling, kind),
        endpoint_host: str0255(&url.host)?,
        endpoint_port: port,
        vendor: str0255(&cfg.device.vendor)?,
        hardware_version: str0255(&cfg.device.hardware)?,
        firmware: str0255(&cfg.device.firmware)?,
        device_id: str0255(&cfg.device.device_id)?,
    };
    w.send(AnyMessageOwned::Common(CommonMessagesOwned::SetupConnection(setup))).await?;
    let flags = match expect(&mut rx, t, "SetupConnection").await? {
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionSuccess(m)) => {
            if m.used_version != 2 {
                return Err(Error::Setup(format!("the pool chose protocol version {}, hashrig speaks 2", m.used_version)));
            }
            m.flags
        }
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionError(m)) => {
            return Err(Error::Setup(format!("the pool refused the connection setup: {} (flags {:#x})", text(m.error_code.as_bytes()), m.flags)));
        }
        m => return Err(Error::Protocol(format!("expected SetupConnection.Success, got {}", name(&m)))),
    };
    tracing::debug!(flags = format!("{flags:#x}"), "SetupConnection.Success");
    if kind == ChannelKind::Standard {
        return open_standard(cfg, user, w, rx).await;
    }
    let open = OpenExtendedMiningChannelOwned {
        request_id: 1,
        user_identity: str0255(user)?,
        nominal_hash_rate: cfg.nominal_hashrate,
        max_target: U256Owned::from([0xffu8; 32]),
        min_extranonce_size: cfg.min_extranonce_size,
    };
    w.send(AnyMessageOwned::Mining(MiningOwned::OpenExtendedMiningChannel(open))).await?;
    match expect(&mut rx, t, "OpenExtendedMiningChannel").await? {
        AnyMessageOwned::Mining(MiningOwned::OpenExtendedMiningChannelSuccess(m)) => {
            let prefix = m.extranonce_prefix.as_bytes().to_vec();
            check_extranonce(prefix.len(), m.extranonce_size, cfg.min_extranonce_size)?;
            let channel = ChannelInfo {
                kind: ChannelKind::Extended,
                channel_id: m.channel_id,
                extranonce_prefix: prefix,
                extranonce_size: m.extranonce_size,
                version_rolling: cfg.version_rolling,
            };
            let mut target = [0u8; 32];
            target.copy_from_slice(m.target.as_bytes());
            Ok((w, rx, channel, Target::from_le_bytes(target)))
        }
        AnyMessageOwned::Mining(MiningOwned::OpenMiningChannelError(m)) => {
            Err(Error::OpenChannel(text(m.error_code.as_bytes())))
        }
        m => Err(Error::Protocol(format!("expected OpenExtendedMiningChannel.Success, got {}", name(&m)))),
    }
}

/// The SetupConnection flags (mining protocol) hashrig asks for: version rolling when
/// configured, and standard jobs only when it opens a standard channel.
pub fn setup_flags(version_rolling: bool, kind: ChannelKind) -> u32 {
    let mut flags = if version_rolling { REQUIRES_VERSION_ROLLING } else { 0 };
    if kind == ChannelKind::Standard {
        flags |= REQUIRES_STANDARD_JOBS;
    }
    flags
}

/// OpenStandardMiningChannel: the pool builds the merkle root, hashrig rolls no extranonce.
pub(super) async fn open_standard(cfg: &ClientConfig, user: &str, mut w: Writer, mut rx: Reader) -> Result<(Writer, Reader, ChannelInfo, Target), Error> {
    let open = OpenStandardMiningChannelOwned {
        request_id: 1,
        user_identity: str0255(user)?,
        nominal_hash_rate: cfg.nominal_hashrate,
        max_target: U256Owned::from([0xffu8; 32]),
    };
    w.send(AnyMessageOwned::Mining(MiningOwned::OpenStandardMiningChannel(open))).await?;
    match expect(&mut rx, cfg.connect_timeout, "OpenStandardMiningChannel").await? {
        AnyMessageOwned::Mining(MiningOwned::OpenStandardMiningChannelSuccess(m)) => {
            let prefix = m.extranonce_prefix.as_bytes().to_vec();
            if prefix.len() > MAX_EXTRANONCE {
                return Err(Error::Extranonce(format!("an extranonce prefix of {} bytes, over the {MAX_EXTRANONCE} SV2 allows", prefix.len())));
            }
            let channel = ChannelInfo {
                kind: ChannelKind::Standard,
                channel_id: m.channel_id,
                extranonce_prefix: prefix,
                extranonce_size: 0,
                version_rolling: cfg.version_rolling,
            };
            let mut target = [0u8; 32];
            target.copy_from_slice(m.target.as_bytes());
            Ok((w, rx, channel, Target::from_le_bytes(target)))
        }
        AnyMessageOwned::Mining(MiningOwned::OpenMiningChannelError(m)) => Err(Error::OpenChannel(text(m.error_code.as_bytes()))),
        m => Err(Error::Protocol(format!("expected OpenStandardMiningChannel.Success, got {}", name(&m)))),
    }
}

/// The pool's extranonce grant, checked both ways: at least what hashrig asked for, and the
/// prefix and the rolled part together within the 32 bytes SV2 allows.
pub fn check_extranonce(prefix_len: usize, granted: u16, asked: u16) -> Result<(), Error> {
    if granted < asked {
        return Err(Error::Extranonce(format!("the pool grants {granted} extranonce bytes to roll, hashrig asked for at least {asked}")));
    }
    if granted == 0 {
        return Err(Error::Extranonce("the pool grants no extranonce bytes to roll on an extended channel".into()));
    }
    if prefix_len + granted as usize > MAX_EXTRANONCE {
        return Err(Error::Extranonce(format!(
            "extranonce prefix ({prefix_len} bytes) and rolled part ({granted} bytes) exceed the {MAX_EXTRANONCE} bytes SV2 allows"
        )));
    }
    Ok(())
}

pub(super) fn str0255(s: &str) -> Result<Str0255Owned, Error> {
    Str0255Owned::new(s.as_bytes().to_vec()).map_err(|_| Error::Protocol(format!("a string over 255 bytes: {s:.40}…")))
}

pub(super) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).chars().filter(|c| !c.is_control()).take(120).collect()
}

pub(super) fn name(m: &AnyMessageOwned) -> String {
    use stratum_core::parsers_sv2::IsSv2Message;
    stratum_core::parsers_sv2::message_type_to_name(m.message_type()).to_string()
}

pub(super) async fn expect(rx: &mut Reader, t: Duration, what: &'static str) -> Result<AnyMessageOwned, Error> {
    loop {
        match tokio::time::timeout(t, rx.recv()).await {
            Err(_) => return Err(Error::Timeout(what)),
            Ok(None) => return Err(Error::Closed),
            Ok(Some(Inbound::Closed(e))) => return Err(e),
            Ok(Some(Inbound::Unknown { msg_type, ext_type, .. })) => {
                tracing::warn!(msg_type, ext_type, "unknown SV2 message type during setup: ignored");
            }
            Ok(Some(Inbound::Message(m))) => return Ok(m),
        }
    }
}
